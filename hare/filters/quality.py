"""Quality consistency: a classifier that scores how much a document reads like a reference set.

The recipe names reference text (high quality, e.g. encyclopedic or textbook prose) and the
scorer is trained in seconds to tell it apart from a random sample of the raw input, as GPT-3's
and the Llama/FineWeb-Edu filters do: hashed word 1-2-gram features (no vocabulary kept, so memory
is fixed) and a logistic regression. A document's score is the probability that it belongs to the
reference side. Keeping documents inside a score band (``min_score``..``max_score``) makes the
kept set consistent in quality, the paper's second principle; the report shows the score
distribution per source before and after.

Nothing is downloaded: the features and the model come from scikit-learn, trained on the user's
own text.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Iterable

import numpy as np

from hare.core.io import atomic_path

log = logging.getLogger("hare.filters.quality")

N_FEATURES = 1 << 20  # 1M hashed features: 8 MB of coefficients, collisions negligible at this size


def _vectorizer():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=N_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2",
                             lowercase=True, dtype=np.float32)


class QualityScorer:
    """Probability that a text reads like the reference set; ``fit`` then ``score``."""

    def __init__(self, seed: int = 0, c: float = 4.0):
        from sklearn.linear_model import LogisticRegression

        self.vec = _vectorizer()
        self.clf = LogisticRegression(C=c, max_iter=1000, random_state=seed)
        self.seed = seed
        self.fitted = False

    def fit(self, reference: list[str], raw: list[str]) -> dict:
        """Train on reference (label 1) against raw input (label 0); returns held-out accuracy."""
        if len(reference) < 2 or len(raw) < 2:
            raise ValueError(f"a quality scorer needs at least 2 reference and 2 raw documents "
                             f"(got {len(reference)} and {len(raw)})")
        texts = reference + raw
        labels = np.array([1] * len(reference) + [0] * len(raw))
        order = list(range(len(texts)))
        random.Random(self.seed).shuffle(order)
        cut = max(1, len(order) // 10)  # a tenth held out to report how separable the two sides are
        test, train = order[:cut], order[cut:]
        X = self.vec.transform([texts[i] for i in train])
        # Balanced classes: the reference set is usually much smaller than the raw sample.
        self.clf.set_params(class_weight="balanced")
        self.clf.fit(X, labels[train])
        self.fitted = True
        acc = float((self.clf.predict(self.vec.transform([texts[i] for i in test])) == labels[test]).mean())
        log.info("quality scorer: %d reference and %d raw documents, held-out accuracy %.3f", len(reference),
                 len(raw), acc)
        return {"reference_docs": len(reference), "raw_docs": len(raw), "heldout_accuracy": round(acc, 4)}

    def score(self, texts: Iterable[str], batch: int = 256) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("QualityScorer.score before fit")
        out, buf = [], []
        for t in texts:
            buf.append(t)
            if len(buf) >= batch:
                out.append(self.clf.predict_proba(self.vec.transform(buf))[:, 1])
                buf = []
        if buf:
            out.append(self.clf.predict_proba(self.vec.transform(buf))[:, 1])
        return np.concatenate(out) if out else np.zeros(0)

    def explain(self, texts: list[str], k: int = 15) -> dict[str, list[str]]:
        """The words and bigrams of ``texts`` that weigh most towards each side (for the report)."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.utils import murmurhash3_32

        cv = CountVectorizer(ngram_range=(1, 2), lowercase=True, min_df=2)
        try:
            cv.fit(texts)
        except ValueError:  # too little text for any term to occur twice
            return {"reference": [], "raw": []}
        terms = cv.get_feature_names_out()
        # The same index HashingVectorizer gives a term (signed murmurhash3, folded to the table).
        idx = np.array([abs(murmurhash3_32(str(t), seed=0)) % N_FEATURES for t in terms])
        order = np.argsort(self.clf.coef_[0][idx])
        return {"reference": [str(terms[i]) for i in order[-k:][::-1]], "raw": [str(terms[i]) for i in order[:k]]}

    def save(self, path: str | Path) -> None:
        """Write the fitted model as plain arrays (a NumPy ``.npz`` archive, no pickled objects)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, coef=self.clf.coef_, intercept=self.clf.intercept_, classes=self.clf.classes_,
                     seed=np.array(self.seed))

    @classmethod
    def load(cls, path: str | Path) -> "QualityScorer":
        """A scorer written by ``save``; the file's arrays are read as data, never as code."""
        with np.load(path, allow_pickle=False) as z:
            s = cls(seed=int(z["seed"]))
            s.clf.coef_, s.clf.intercept_, s.clf.classes_ = z["coef"], z["intercept"], z["classes"]
        s.clf.n_features_in_ = s.clf.coef_.shape[1]
        s.fitted = True
        return s


def histogram(scores: np.ndarray, bins: int = 20) -> list[int]:
    """Counts of scores in ``bins`` equal bins over [0, 1] (for stats.json and the report)."""
    return np.histogram(scores, bins=bins, range=(0.0, 1.0))[0].astype(int).tolist()


def load_scorer(path: str | Path, threads: int = 0):
    """The scorer saved at ``path``: a ``QualityScorer`` (reference mode) or an
    ``hare.filters.annotated.AnnotatedScorer`` (annotator mode, ``threads`` > 0 caps its embedding
    model's threads); either has ``score(texts)`` in [0, 1]."""
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["kind"]) if "kind" in z.files else "reference"
    if kind == "annotator":
        from hare.filters.annotated import AnnotatedScorer

        return AnnotatedScorer.load(path, threads=threads)
    return QualityScorer.load(path)
