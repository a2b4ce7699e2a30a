"""Progress bars with rate and ETA, and the run's loggers."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("hare")

_FMT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")


class _TqdmHandler(logging.StreamHandler):
    """Writes log lines above the progress bars instead of through them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_console(level: int = logging.INFO) -> None:
    """Log to stderr once per process (idempotent)."""
    root = logging.getLogger("hare")
    root.setLevel(level)
    if not any(getattr(h, "_hare_console", False) for h in root.handlers):
        h = _TqdmHandler(sys.stderr)
        h.setFormatter(_FMT)
        h._hare_console = True  # type: ignore[attr-defined]
        root.addHandler(h)


class FileLog:
    """Context manager that copies the ``hare`` log into ``path`` while it is open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handler: logging.Handler | None = None

    def __enter__(self) -> "FileLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(_FMT)
        logging.getLogger("hare").addHandler(self.handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.handler is not None:
            logging.getLogger("hare").removeHandler(self.handler)
            self.handler.close()


class Progress(tqdm):
    """tqdm bar (rate and ETA on stderr) that logs a one-line summary with the rate when closed."""

    def __init__(self, *args, **kwargs):
        # On a terminal, redraw twice a second; in a log file or CI, a line every 30 s is enough.
        kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 30.0)
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
