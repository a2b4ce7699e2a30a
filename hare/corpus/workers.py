"""The corpus step's workers: passes 0 and 1 on a process pool here, or on Ray Data (``hare.core.execution``).

Both take the same work: ``units`` (files to split into input shards, read by the workers) and
``ready`` (shards already split by the main process), and yield each shard's name once it is
cleaned. Which worker cleans which shard never changes the output: every shard is cleaned on its
own, and the passes after these read the shards in order.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from hare.core.execution import ordered_map, process_pool, ray_map, ray_session
from hare.core.progress import progress
from hare.corpus.passes import ShardCleaner, split_unit
from hare.corpus.ranges import part_from_json
from hare.corpus.config import SourceConfig

log = logging.getLogger("hare.corpus")

_WORKER: dict = {}


def _init_worker(split_args: tuple, clean_args: tuple) -> None:
    _WORKER["split"] = split_args
    _WORKER["clean"] = ShardCleaner(*clean_args)


def _split_unit(task: tuple[int, SourceConfig]) -> list[str]:
    work, shard_docs, max_line_bytes = _WORKER["split"]
    return split_unit(Path(work), task[0], task[1], shard_docs, max_line_bytes)


def _clean_shard(shard: str) -> str:
    return _WORKER["clean"](shard)


def run_local(units: list, ready: list[str], split_args: tuple, clean_args: tuple, procs: int) -> Iterator[str]:
    """Passes 0 and 1 with this machine's cores: a process pool splits the ``units`` (files) and cleans
    the shards as they come, after the ``ready`` ones; yields each shard's name when it is cleaned."""
    work, shard_docs, max_line_bytes = split_args
    if procs <= 1:
        clean = ShardCleaner(*clean_args)
        yield from map(clean, ready)
        for unit, src in units:
            yield from map(clean, split_unit(Path(work), unit, src, shard_docs, max_line_bytes))
        return
    with process_pool(procs, "the corpus step's cleaning", preload=("hare.corpus.passes",), initializer=_init_worker,
                      initargs=(split_args, clean_args)) as pool:
        # the files are split ahead of the cleaning (a window of four per process), the shards cleaned as they come
        split = (s for names in ordered_map(pool, _split_unit, units, 4 * procs) for s in names)
        yield from ordered_map(pool, _clean_shard, itertools.chain(ready, split), 2 * procs)


class _RayShardCleaner:
    """``ShardCleaner`` as a Ray Data callable class: a batch of shard names in, the same out."""

    def __init__(self, *args):
        self.clean = ShardCleaner(*args)

    def __call__(self, batch: dict) -> dict:
        return {"shard": np.array([self.clean(str(s)) for s in batch["shard"]], dtype=object)}


def _ray_split(row: dict, work: str, shard_docs: int, max_line_bytes: int) -> list[dict]:
    src = part_from_json(row["source"])
    src._id_root = row.get("id_root")  # a private attribute: not in the JSON
    return [{"shard": s} for s in split_unit(Path(work), int(row["unit"]), src, shard_docs, max_line_bytes)]


def run_ray(units: list, ready: list[str], split_args: tuple, clean_args: tuple, procs: int,
            address: str | None) -> Iterator[str]:
    """Passes 0 and 1 on a Ray cluster through Ray Data: the units (files) are a dataset flat-mapped
    into their shards by Ray tasks; then the shards are a dataset cleaned by a pool of ``procs``
    actors (0: one per CPU of the cluster). Without ``address`` a local Ray instance is started for the step and
    stopped after it. On a cluster the step folder must be on storage every node sees (the workers
    read and write the shards there), and hare must be installed on every node."""
    with ray_session(address, "corpus: the ray executor", num_cpus=procs or None) as ray:
        shards = list(ready)
        if units:  # split first: actors that hold every CPU would leave none to tasks that feed them
            log.info("corpus: splitting %d input files with Ray Data", len(units))
            items = [{"unit": u, "source": src.model_dump_json(), "id_root": src._id_root} for u, src in units]
            split = ray.data.from_items(items, override_num_blocks=len(items)).flat_map(
                _ray_split, fn_args=split_args, num_cpus=1)
            shards += [str(row["shard"]) for row in split.take_all()]
        if not shards:
            return
        size = procs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        for row in ray_map([{"shard": s} for s in shards], _RayShardCleaner, clean_args, batch_size=1,
                           concurrency=size, num_cpus=1):
            yield str(row["shard"])


class _RayTask:
    """A task function as a Ray Data callable class: a batch of JSON-encoded tasks in, their results out."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, batch: dict) -> dict:
        return {"at": batch["at"],
                "result": np.array([json.dumps(self.fn(json.loads(str(t)))) for t in batch["task"]], dtype=object)}


def run_tasks(fn: Callable[[dict], dict], tasks: list[dict], executor: str = "local", workers: int = 0,
              address: str | None = None) -> list[dict]:
    """``fn(task)`` of every task (a JSON-able dict; ``fn`` a module-level function), in the tasks'
    order, run where passes 0 and 1 run: on ``workers`` local processes (0: one per core; 1: here)
    or on Ray actors (0: one per CPU of the cluster). The deduplication pass's partitions run so."""
    if not tasks:
        return []
    if executor == "ray":
        with ray_session(address, "corpus: the ray executor", num_cpus=workers or None) as ray:
            size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            rows = ray_map([{"at": i, "task": json.dumps(t)} for i, t in enumerate(tasks)], _RayTask, (fn,),
                           batch_size=1, concurrency=min(size, len(tasks)), num_cpus=1)
            out = {int(r["at"]): json.loads(str(r["result"])) for r in rows}
        return [out[i] for i in range(len(tasks))]
    procs = min(workers or (os.cpu_count() or 1), len(tasks))
    if procs <= 1:
        return [fn(t) for t in progress(tasks, desc=f"dedup: {fn.__name__}", total=len(tasks), unit="task")]
    with process_pool(procs, "the corpus step's deduplication", preload=(fn.__module__,)) as pool:
        return list(progress(ordered_map(pool, fn, tasks, 2 * procs), desc=f"dedup: {fn.__name__}",
                             total=len(tasks), unit="task"))
