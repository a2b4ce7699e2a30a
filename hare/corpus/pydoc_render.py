"""The rendering half of the pydoc source, run as a script: render modules' documentation as plain text.

``hare.corpus.read.read_pydoc_source`` starts this file as a fresh interpreter in isolated mode
(``python -I``, no environment) and sends it the module names on stdin; it renders each module in a
process forked from itself, one process per module, and writes ``[name, text, error]`` as one JSON
line per module, in order. It imports nothing but the standard library and nothing of hare: what
pydoc prints depends on what is imported (the subclasses of ``object``, logging's handlers), so the
renderers must start from the same state on every run, whatever the reading process had imported.

The loop that forks is single-threaded and never blocks anywhere but in ``select``: a process forked
from a process with other threads can inherit a lock one of them holds (a ``multiprocessing`` pool
with ``maxtasksperchild`` forks from its helper thread while the main thread holds the stdout lock,
and the child then waits on that lock forever). Each module has a time bound: a renderer that runs
past it is killed and its module reported as ``[name, null, "timeout: ..."]``.

Usage: ``python -I pydoc_render.py PROCESSES [TIMEOUT_S] < names.json``.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sys
import time
import warnings
from typing import Callable, Iterable, Iterator

TIMEOUT_PREFIX = "timeout: "

# Default values print with their memory address ("<object object at 0x7f6c0e34c160>", ctypes'
# "<PyDLL 'None', handle 7eff570332e0>"), which changes from run to run; the documents keep
# "<object object>" and "<PyDLL 'None'>".
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+\b|, handle [0-9a-fA-F]+(?=>)")


def _machine_paths() -> list[tuple[str, str]]:
    """Paths of this Python installation that default arguments print (``platform.architecture``'s
    ``executable=sys.executable``, ``xmlrpc.server``'s ``basedir``), with the neutral names the
    documents show instead: the documents are then the same wherever Python and the virtual
    environment live."""
    import sysconfig

    paths = {sys.executable: "<python>"}
    for key in ("stdlib", "platstdlib"):
        paths.setdefault(sysconfig.get_paths()[key], "<stdlib>")
    if sys.prefix != sys.base_prefix:  # a virtual environment's folder (an installation's own, /usr say, is kept)
        paths.setdefault(sys.prefix, "<venv>")
        paths.setdefault(sys.exec_prefix, "<venv>")
    return sorted(((p, n) for p, n in paths.items() if len(p) > 4), key=lambda pn: -len(pn[0]))


def _render_module(name: str) -> tuple[str, str | None, str | None]:
    """Render one module's documentation as plain text; (name, text, error)."""
    import contextlib
    import io
    import pydoc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                obj, _ = pydoc.resolve(name)
                text = pydoc.render_doc(obj, title="%s", renderer=pydoc.plaintext)
            text = _ADDRESS.sub("", text)
            for path, neutral in _machine_paths():
                text = text.replace(path, neutral)
            return name, text, None
        except BaseException as e:  # noqa: BLE001 - a module that cannot be documented is reported, not fatal
            return name, None, f"{type(e).__name__}: {e}"


class _Job:
    __slots__ = ("index", "name", "pid", "deadline", "chunks")

    def __init__(self, index: int, name: str, pid: int, deadline: float):
        self.index, self.name, self.pid, self.deadline = index, name, pid, deadline
        self.chunks: list[bytes] = []


def _child(name: str, fd: int, timeout: float, render: Callable) -> None:
    """In the forked process: render ``name`` with an empty environment, write the JSON record to
    ``fd`` and leave without running any exit handler or flushing any inherited buffer."""
    code = 1
    try:
        # pydoc prints default arguments, and some are ``os.environ`` itself
        # (``cgi.parse(environ=os.environ)``): with the real environment the documents would carry
        # this machine's variables, secrets included, and differ from machine to machine.
        os.environ.clear()
        # Bound the renderer even when the loop that forked it is gone (killed with its reader).
        signal.alarm(int(timeout) + 5)
        data = json.dumps(render(name)).encode("ascii")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        code = 0
    finally:
        os._exit(code)


def render_all(names: Iterable[str], processes: int, timeout: float, out: int,
               render: Callable[[str], tuple] = _render_module) -> None:
    """Write ``[name, text, error]`` per module to the file descriptor ``out``, one JSON line each,
    in the order of ``names``: each rendered by ``render`` in a process forked for it, at most
    ``processes`` at once, each killed after ``timeout`` seconds.

    Must be called from a single-threaded process (the renderer script is one). It waits only in
    ``select``: writing to ``out`` never blocks (a slow reader of ``out`` neither stalls the
    renderers' pipes nor eats into their time), so the bound measures the rendering alone."""
    pending = list(enumerate(names))[::-1]
    running: dict[int, _Job] = {}
    done: dict[int, tuple] = {}
    next_out = 0
    buffer = bytearray()
    os.set_blocking(out, False)
    while pending or running or done or buffer:
        while next_out in done:
            buffer += json.dumps(done.pop(next_out)).encode("ascii") + b"\n"
            next_out += 1
        while pending and len(running) < processes:
            index, name = pending.pop()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                os.close(r)
                _child(name, w, timeout, render)
            os.close(w)
            running[r] = _Job(index, name, pid, time.monotonic() + timeout)
        wait = max(0.0, min(j.deadline for j in running.values()) - time.monotonic()) if running else None
        ready, writable, _ = select.select(list(running), [out] if buffer else [], [], wait)
        if writable:
            try:
                del buffer[:os.write(out, buffer)]
            except BlockingIOError:
                pass
        for fd in ready:
            job = running[fd]
            chunk = os.read(fd, 1 << 16)
            if chunk:
                job.chunks.append(chunk)
                continue
            del running[fd]
            os.close(fd)
            _, status = os.waitpid(job.pid, 0)
            try:
                rec = tuple(json.loads(b"".join(job.chunks)))
            except ValueError:
                code = os.waitstatus_to_exitcode(status)
                how = f"signal {-code}" if code < 0 else f"exit {code}"
                rec = (job.name, None, f"the renderer ended without a result ({how})")
            done[job.index] = rec
        now = time.monotonic()
        for fd, job in list(running.items()):
            if now >= job.deadline and fd not in ready:
                os.kill(job.pid, signal.SIGKILL)
                os.waitpid(job.pid, 0)
                os.close(fd)
                del running[fd]
                done[job.index] = (job.name, None, f"{TIMEOUT_PREFIX}not rendered within {timeout:g} s; killed")
    os.set_blocking(out, True)


def _render_one_per_interpreter(names: list[str], timeout: float) -> Iterator[tuple]:
    """Where there is no fork: each module in its own fresh interpreter, one after the other."""
    import subprocess

    for name in names:
        try:
            out = subprocess.run([sys.executable, "-I", __file__, "--one", name], capture_output=True,
                                 timeout=timeout, env={}, check=False)
            yield tuple(json.loads(out.stdout))
        except subprocess.TimeoutExpired:
            yield name, None, f"{TIMEOUT_PREFIX}not rendered within {timeout:g} s; killed"
        except ValueError:
            yield name, None, "the renderer ended without a result"


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        os.environ.clear()
        sys.stdout.write(json.dumps(_render_module(sys.argv[2])))
        return
    names = json.loads(sys.stdin.buffer.read())
    processes = max(1, int(sys.argv[1]))
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    if hasattr(os, "fork"):
        render_all(names, processes, timeout, sys.stdout.fileno())
        return
    for rec in _render_one_per_interpreter(names, timeout):
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
