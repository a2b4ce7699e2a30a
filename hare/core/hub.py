"""The offline guard and the one way to lift it.

``import hare`` sets ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``/``TRANSFORMERS_OFFLINE`` to 1 unless
the user set them, so that no code path reaches the Hugging Face hub by accident. ``huggingface_hub``
and ``datasets`` read these variables once, when they are imported, so setting the environment
later changes nothing: ``hub_access`` flips the values those libraries consult at call time, for the
duration of one block (a source with ``allow_hub: true``), and puts everything back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_offline() -> bool:
    """Whether a hub request made now would be refused as offline."""
    import huggingface_hub.constants as hub

    return bool(hub.is_offline_mode())


@contextlib.contextmanager
def hub_access(allowed: bool = True) -> Iterator[None]:
    """Inside the block the hub may be reached (when ``allowed``); outside, the guard is as before."""
    if not allowed:
        yield
        return
    import huggingface_hub.constants as hub

    saved_env = {v: os.environ.get(v) for v in OFFLINE_VARS}
    saved: list[tuple[object, str, object]] = []

    def flip(module: object, name: str) -> None:
        if hasattr(module, name):
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, False)

    try:
        for v in OFFLINE_VARS:
            os.environ[v] = "0"
        flip(hub, "HF_HUB_OFFLINE")
        if "datasets" in sys.modules or _importable("datasets"):
            import datasets.config

            flip(datasets.config, "HF_HUB_OFFLINE")
            flip(datasets.config, "HF_DATASETS_OFFLINE")
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)
        for v, value in saved_env.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
