"""Progress bars with rate and ETA, the run's loggers, and a quiet console.

hare's own log lines and progress bars go to the console (``console()``, the terminal's stderr).
While a step runs, ``step_output`` sends everything else that would reach the terminal (third-party
loggers and their progress bars, warnings, the output of child processes such as ``git``) to the
step's ``log.txt`` instead, together with a copy of hare's own lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("hare")

_FMT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
_console: list[IO[str]] = []  # the terminal while step_output redirects stderr; empty otherwise


def console() -> IO[str]:
    """The stream hare's own lines and bars are written to: the terminal's stderr."""
    return _console[-1] if _console else sys.stderr


class _TqdmHandler(logging.StreamHandler):
    """Writes log lines above the progress bars instead of through them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=console())
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_console(level: int = logging.INFO) -> None:
    """Log to the console once per process (idempotent)."""
    root = logging.getLogger("hare")
    root.setLevel(level)
    if not any(getattr(h, "_hare_console", False) for h in root.handlers):
        h = _TqdmHandler(sys.stderr)
        h.setFormatter(_FMT)
        h._hare_console = True  # type: ignore[attr-defined]
        root.addHandler(h)


class FileLog:
    """Context manager that copies a logger's records (``hare``'s by default) into ``path`` while open."""

    def __init__(self, path: str | Path, logger: str = "hare"):
        self.path = Path(path)
        self.logger = logger
        self.handler: logging.Handler | None = None

    def __enter__(self) -> "FileLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(_FMT)
        logging.getLogger(self.logger).addHandler(self.handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.handler is not None:
            logging.getLogger(self.logger).removeHandler(self.handler)
            self.handler.close()


def _fd_backed(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def step_output(path: str | Path) -> Iterator[None]:
    """Within the block, every log record (hare's and third-party loggers') and everything written to
    file descriptors 1 and 2 (third-party progress bars, warnings, child processes) goes to ``path``;
    hare's own log lines and progress bars still reach the terminal."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for s in (sys.stdout, sys.stderr):
        s.flush()
    try:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
    except OSError:  # no terminal descriptors to redirect (a daemon): the log gets the log records only
        with FileLog(path, logger=""):
            yield
        return
    # Nested blocks keep the terminal found by the outermost one.
    term = _console[-1] if _console else (
        os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
        if _fd_backed(sys.stderr) else sys.stderr)
    _console.append(term)
    warnings_captured = logging.captureWarnings
    with FileLog(path, logger=""), open(path, "ab", buffering=0) as sink:
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        warnings_captured(True)
        try:
            yield
        finally:
            warnings_captured(False)
            for s in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    s.flush()
            for fd, old in saved.items():
                os.dup2(old, fd)
                os.close(old)
            _console.pop()
            if term is not sys.stderr and not _console:
                term.close()


class Progress(tqdm):
    """tqdm bar (rate and ETA on the console) that logs a one-line summary with the rate when closed."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("file", console())
        # On a terminal, redraw twice a second; in a log file or CI, a line every 30 s is enough.
        tty = getattr(kwargs["file"], "isatty", lambda: False)()
        kwargs.setdefault("mininterval", 0.5 if tty else 30.0)
        kwargs.setdefault("dynamic_ncols", True)
        kwargs.setdefault("leave", False)
        self._t0 = time.perf_counter()
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        if not getattr(self, "_hare_closed", False):
            self._hare_closed = True
            dt = max(time.perf_counter() - self._t0, 1e-9)
            if self.n and not self.disable:
                log.info("%s: %s %s in %.1fs (%.1f %s/s)", self.desc or "progress", f"{self.n:,}",
                         self.unit, dt, self.n / dt, self.unit)
        super().close()


def progress(it: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate with a progress bar showing rate and ETA; logs the final rate."""
    bar = Progress(it, desc=desc, total=total, unit=unit)
    try:
        yield from bar
    finally:
        bar.close()
