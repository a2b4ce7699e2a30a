"""Nothing in the corpus step can hang: the pydoc renderer under a slow reader, a module that never
renders, a renderer that goes silent, and the local pool started beside other threads."""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import hare.corpus.read as read
from hare.corpus import pydoc_render
from hare.corpus.read import Quarantine, pydoc_modules, read_source
from hare.corpus.config import SourceConfig
from tests.conftest import ROOT

SCRIPT = Path(pydoc_render.__file__)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, killed and not yet reaped by init, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _subset(n: int = 40) -> list[str]:
    """``n`` modules spread over the whole list, large pages among them."""
    names = pydoc_modules()
    return names[:: max(1, len(names) // n)][:n]


def _read_slowly(proc: subprocess.Popen, bound: float) -> tuple[int, bool]:
    """Lines read from ``proc``'s stdout through a one-page pipe, 4 KiB at a time with a pause after
    each (a reader busy with each page, as the corpus step is: the renderer's writes block most of
    the time), and whether the renderer ended within ``bound`` seconds."""
    fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 4096)
    deadline = time.monotonic() + bound
    lines = 0
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return lines, False
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                return lines, True
            lines += chunk.count(b"\n")
            time.sleep(0.002)


@pytest.mark.slow
def test_the_pydoc_renderer_finishes_every_run_under_a_slow_reader():
    """30 runs of the real renderer over 40 modules, read slowly. A pool that forked its workers from
    a helper thread while the main thread held the stdout lock (blocked writing to the reader) hung
    in three to five runs of ten this way."""
    names = json.dumps(_subset()).encode()
    for run in range(30):
        proc = subprocess.Popen([sys.executable, "-I", str(SCRIPT), "2", "60"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={}, start_new_session=True)
        try:
            proc.stdin.write(names)
            proc.stdin.close()
            lines, ended = _read_slowly(proc, bound=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            proc.wait()
            proc.stdout.close()
        assert ended, f"run {run + 1}: the renderer hung after {lines} of 40 modules"
        assert lines == 40 and proc.returncode == 0, (run, lines, proc.returncode)


def test_a_module_past_its_bound_is_killed_reported_and_skipped(tmp_path):
    """A module whose rendering never ends is killed at its bound; the modules around it are rendered
    and every record comes back in order."""
    pids = tmp_path / "pids"
    code = textwrap.dedent(f"""
        import os, sys, time
        from hare.corpus.pydoc_render import render_all

        def render(name):
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{name}} {{os.getpid()}}\\n")
            if name == "stuck":
                time.sleep(3600)
            return name, "page of " + name, None

        render_all(["a", "stuck", "b", "c"], 2, 1.0, sys.stdout.fileno(), render=render)
    """)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT, check=True)
    assert time.monotonic() - start < 30
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r[0] for r in recs] == ["a", "stuck", "b", "c"]
    assert recs[0] == ["a", "page of a", None] and recs[3] == ["c", "page of c", None]
    assert recs[1][1] is None and recs[1][2] == f"{pydoc_render.TIMEOUT_PREFIX}not rendered within 1 s; killed"
    stuck = int(next(line.split()[1] for line in pids.read_text().splitlines() if line.startswith("stuck ")))
    assert not _running(stuck)


def test_modules_past_their_bound_are_quarantined_by_name_and_the_source_reads_on(monkeypatch):
    monkeypatch.setattr(read, "pydoc_modules", lambda: ["json", "email.message"])
    q = Quarantine()
    docs = list(read_source(SourceConfig(name="pydoc", kind="pydoc", render_timeout_s=1e-4), q))
    assert docs == []
    assert [(r["file"], r["reason"]) for r in q.records] == [
        (f"pydoc:{m}", "not rendered within 0.0001 s; killed and skipped") for m in ("json", "email.message")]
    q = Quarantine()
    assert len(list(read_source(SourceConfig(name="pydoc", kind="pydoc"), q))) > 5 and q.total == 0


def test_a_silent_renderer_is_killed_and_reported(monkeypatch, tmp_path):
    """A renderer that stops writing (whatever the cause) is killed with the processes it started,
    and the reader says after which module it stopped, instead of waiting forever."""
    fake = tmp_path / "render.py"
    pid_file = tmp_path / "pid"
    fake.write_text(textwrap.dedent(f"""
        import json, os, sys, time
        names = json.loads(sys.stdin.read())
        if os.fork() == 0:
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(3600)
        print(json.dumps([names[0], "page", None]), flush=True)
        time.sleep(3600)
    """))
    monkeypatch.setattr(pydoc_render, "__file__", str(fake))
    monkeypatch.setattr(read, "_RENDER_START_S", 0.0)
    start = time.monotonic()
    got = []
    with pytest.raises(RuntimeError, match=r"no module came back within 2 s after 1 of 3 modules \(the next: b\)"):
        for rec in read._render_in_fresh_interpreter(["a", "b", "c"], 1, 2.0):
            got.append(rec)
    assert got == [("a", "page", None)] and time.monotonic() - start < 30
    time.sleep(0.2)
    assert not _running(int(pid_file.read_text()))


def test_the_local_corpus_pool_never_forks_from_a_process_with_threads(tmp_path, monkeypatch):
    """The corpus step's local workers are not forked from this process while it has other threads
    (a child can inherit a lock one of them holds, and wait on it forever)."""
    from hare.corpus.workers import run_local
    from hare.filters.config import CleanConfig, MinHashConfig

    forks = []
    real_fork = os.fork

    def spy():
        forks.append(threading.active_count())
        return real_fork()

    monkeypatch.setattr(os, "fork", spy)
    stop = threading.Event()
    beside = threading.Thread(target=stop.wait, daemon=True)  # as a progress bar's monitor would be
    beside.start()
    try:
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps({"text": f"document number {i} " + "words of prose " * 30}) + "\n"
                               for i in range(60)))
        work = tmp_path / "work"
        work.mkdir()
        units = [(0, SourceConfig(name="s", kind="jsonl", path=str(src)))]
        shards = list(run_local(units, [], (str(work), 20, 1 << 20),
                                (str(work), CleanConfig(), "minhash", MinHashConfig(), None), 2))
    finally:
        stop.set()
    assert len(shards) == 3
    assert all(n == 1 for n in forks), f"forked with {max(forks)} threads running"
