"""Where a step's parallel work runs: processes on this machine, or Ray Data on a cluster.

One recipe section (``execution``) and one layer for every step that spreads work: the corpus step
(splitting and cleaning shards), the tokenize step (tokenizing shards) and the synthetic-data steps
(sending the teacher's requests). What runs where never changes a step's outputs: every setting
here is ``EXECUTION``.

- ``worker_context()``: the start method of local process pools. Never ``fork``: by the time a
  pool starts, the process has other threads (progress bars, torch's, a server's), and a child
  forked while one of them holds a lock inherits the lock held and can wait on it forever.
- ``process_pool(procs, what)`` and ``ordered_map``: a local pool (``concurrent.futures``'
  ``ProcessPoolExecutor``) and an in-order map over it with a bounded number of tasks in flight. A
  worker that dies (killed, out of memory, failing at start) ends the work with an error that
  names it: ``multiprocessing.Pool`` would start another worker in its place and wait for the lost
  task forever, or, when every new worker dies at start, start workers forever.
- ``ray_session(address)``: joins the Ray cluster at ``address``, or starts a local Ray instance,
  which it stops when the work is done.
- ``ray_map(items, worker, ...)``: Ray Data's ``map_batches`` over a pool of stateful actors, fed by a
  streaming dataset, the rows streamed back as they finish (Ray Data's batch-inference shape).
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Literal

from pydantic import Field

from hare.core.config import EXECUTION, Config


class ExecutionConfig(Config):
    """Where the steps' parallel work runs (the recipe key ``execution``); the outputs do not depend on it."""

    executor: Literal["local", "ray"] = Field(
        "local", description="local: processes on this machine (the corpus and tokenize steps) and this process "
        "(the teacher's requests); ray: Ray Data actors on a Ray cluster (pip install 'hare[ray]'; the run folder must "
        "be on storage every node sees, and hare installed on every node).", json_schema_extra=EXECUTION)
    workers: int = Field(
        0, ge=0, description="Processes (local) or actors (ray) that clean the corpus's shards and tokenize the mix's "
        "(0: one per core here, or one per CPU of the Ray cluster).", json_schema_extra=EXECUTION)
    teacher_actors: int = Field(
        0, ge=0, description="executor: ray: actors that send the teacher's requests (0: one per endpoint, or one "
        "for a local teacher). With endpoints they share teacher.concurrency, so an endpoint's load is the same.",
        json_schema_extra=EXECUTION)
    ray_address: str | None = Field(
        None, description="executor: ray: the Ray cluster to join ('auto': the cluster this machine belongs to); "
        "null starts a local Ray instance for each step.", json_schema_extra=EXECUTION)


def worker_context(preload: tuple[str, ...] = ()) -> mp.context.BaseContext:
    """The start method of local worker pools: ``forkserver`` (``spawn`` where there is none); the
    fork server is a fresh, single-threaded interpreter that imports the ``preload`` modules (the
    workers' code) once, so the workers start quickly and from the same state on every run."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(list(preload))
    return ctx


class WorkerDied(RuntimeError):
    """A worker process of a local pool ended without finishing its task."""


@contextlib.contextmanager
def process_pool(procs: int, what: str, preload: tuple[str, ...] = (), start: str = "forkserver",
                 initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[Executor]:
    """A pool of ``procs`` worker processes for ``what`` (the words of the error if one dies).
    ``start``: ``forkserver`` (``worker_context(preload)``) or ``spawn``. A worker that dies raises
    ``WorkerDied``, the other workers are stopped and no task is waited on forever."""
    ctx = worker_context(preload) if start == "forkserver" else mp.get_context(start)
    pool = ProcessPoolExecutor(procs, mp_context=ctx, initializer=initializer, initargs=initargs)
    try:
        yield pool
    except BrokenProcessPool as e:
        raise WorkerDied(f"{what}: a worker process died before finishing its task ({e}). It was killed (out of "
                         "memory?) or failed at start (in a script read from stdin, `python -`, workers cannot "
                         "start: run a file instead).") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def ordered_map(pool: Executor, fn: Callable, items: Iterable, window: int) -> Iterator[Any]:
    """``fn(item)`` of every item, in order, computed in ``pool`` with at most ``window`` tasks in
    flight; ``items`` is read lazily (it may itself wait on the pool's other work)."""
    pending: collections.deque = collections.deque()
    it = iter(items)

    def fill() -> None:
        while len(pending) < window:
            try:
                pending.append(pool.submit(fn, next(it)))
            except StopIteration:
                return

    fill()
    while pending:
        result = pending.popleft().result()
        fill()
        yield result


def import_ray(what: str):
    """``ray`` (and ``ray.data``), or an error that says ``what`` needs it and how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"{what} runs on Ray but Ray is not installed: pip install 'hare[ray]'") from e
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, what: str, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, joined at ``address`` or, without one, a local instance started now (with ``num_cpus``)
    and stopped at the end; a session already open in this process is used as it is."""
    ray = import_ray(what)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def ray_map(items: list[dict], worker: type, args: tuple, *, batch_size: int, concurrency: int,
            blocks: int | None = None, **remote: Any) -> Iterator[dict]:
    """The rows ``worker(*args)(batch)`` returns for ``items``, streamed as batches finish: a Ray
    Dataset of ``items`` in ``blocks`` blocks, ``map_batches`` over ``concurrency`` actors of
    ``worker`` (each built once, holding its state: a cleaner, a model, an HTTP client), with the
    ``remote`` resources each asks for. Call inside ``ray_session``."""
    import ray.data

    ds = ray.data.from_items(items, override_num_blocks=blocks or len(items))
    ds = ds.map_batches(worker, fn_constructor_args=args, batch_size=batch_size, concurrency=concurrency, **remote)
    yield from ds.iter_rows()
