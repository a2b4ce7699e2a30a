"""Heuristic cleaning: line-level formatters, then document-level filters, each with a reason.

The contract follows datatrove: a formatter rewrites ``doc.text``; a filter returns ``True`` to keep
a document or ``(False, reason)`` to drop it. ``Cleaner`` runs them in order and counts every
outcome, so the step's stats add up: documents in = kept + removed by reason.

Thresholds are the Gopher rules (Rae et al. 2021, "Scaling Language Models", appendix A), the C4
line rules (Raffel et al. 2020) and the paper's own D1 rules (personal information and links). The
language filter is fastText's lid.176 (``hare.filters.langid``, FineWeb's) or a cheap word-list check.

Speed: a document is split into words once (``WordView``); each distinct word is looked up once per
process in a ``WordTable`` that holds what every rule needs to know about it (length, letters, stop
word, lowercase code), so the word-level rules are NumPy reductions over one integer array, and
repeated n-grams are found by sorting their rolling hashes (``np.unique``) instead of Python sets of
tuples. The decisions are those of the per-word Python rules they replaced (checked document by
document in tests/corpus/test_clean_parity.py).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from hare.core.documents import Document
from hare.core.text import _PRIME, rolling_hashes, word_code
from hare.filters.config import CleanConfig
from hare.filters.words import ENGLISH_WORDS, STOP_WORDS

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IPV4_RE = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
PHONE_RE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}[ .-])?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w.])")
URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
_IPV4_PART = re.compile(r"\d\.\d")
_PHONE_PART = re.compile(r"[\d)][ .-]\d{3}[ .-]\d{4}")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Lines (split on "\n") that hold a non-space, start with a bullet, end with an ellipsis, whitespace aside.
_NONBLANK_LINE = re.compile(r"^[^\S\n]*\S", re.MULTILINE)
_ELLIPSIS_LINE = re.compile(r"(?:\.\.\.|…)[^\S\n]*$", re.MULTILINE)
BULLETS = ("●", "•", "*", "-", "‣", "◦", "▪")
_BULLET_LINE = re.compile(r"^[^\S\n]*[" + re.escape("".join(BULLETS)) + "]", re.MULTILINE)
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ";", ")")
POLICY_WORDS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                "use cookies")


class Rule:
    """What every formatter and filter has: its registry ``name`` and ``from_config``."""

    name = "rule"

    @classmethod
    def from_config(cls, cfg: CleanConfig):
        """The rule as the recipe's ``corpus.clean`` sets it up, or None when it is off there (a rule
        of the user's: on when ``cfg.extra`` names it, with its keyword arguments)."""
        return cls(**cfg.extra[cls.name]) if cls.name in cfg.extra else None


class Formatter(Rule):
    """Rewrites a document's text; ``changes`` counts how many documents it altered."""

    name = "formatter"

    def __init__(self) -> None:
        self.changes = 0

    def format(self, text: str) -> str:
        raise NotImplementedError

    def __call__(self, doc: Document) -> None:
        new = self.format(doc.text)
        if new != doc.text:
            self.changes += 1
            doc.text = new


class PIIFormatter(Formatter):
    """Replace e-mail addresses, IPv4 addresses and phone numbers with neutral placeholders.

    Placeholders (rather than deletion) keep sentences grammatical, as datatrove's PIIFormatter does.
    """

    name = "pii"

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "PIIFormatter | None":
        return cls() if cfg.remove_pii else None

    def format(self, text: str) -> str:
        # Each pattern runs only where a cheap search finds a part every match of it contains.
        if "@" in text:
            text = EMAIL_RE.sub("email@example.com", text)
        if _IPV4_PART.search(text):
            text = IPV4_RE.sub("0.0.0.0", text)
        if _PHONE_PART.search(text):
            text = PHONE_RE.sub("555-0100", text)
        return text


class URLFormatter(Formatter):
    """Remove web links; the paper removes them from its open-data part."""

    name = "urls"

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "URLFormatter | None":
        return cls() if cfg.remove_urls else None

    def format(self, text: str) -> str:
        if "://" not in text and "www." not in text.lower():  # every link holds one of these
            return text
        text = re.sub(r"<\s*(?:https?://|www\.)[^>]*>", "", text, flags=re.IGNORECASE)
        return URL_RE.sub("", text)


class LineFormatter(Formatter):
    """C4 line rules: drop lines that mention javascript or cookie/privacy policies, and short lines."""

    name = "lines"

    def __init__(self, boilerplate: bool = True, min_line_chars: int = 0):
        super().__init__()
        self.boilerplate = boilerplate
        self.min_line_chars = min_line_chars

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "LineFormatter":
        return cls(cfg.boilerplate_lines, cfg.min_line_chars)

    def format(self, text: str) -> str:
        if not self.min_line_chars:
            low = text.lower()  # lowercasing is per character, so the whole text shows what any line holds
            if not self.boilerplate or not ("javascript" in low and "enable" in low or any(w in low for w in POLICY_WORDS)):
                return text
        out = []
        for line in text.split("\n"):
            low = line.lower()
            if self.boilerplate and ("javascript" in low and "enable" in low or any(w in low for w in POLICY_WORDS)):
                continue
            if self.min_line_chars and line.strip() and len(line.strip()) < self.min_line_chars:
                continue
            out.append(line)
        return "\n".join(out)


class Filter(Rule):
    """A document-level rule: ``filter(doc)`` returns True or (False, reason).

    ``view`` is the document's ``WordView`` when the caller (``Cleaner``) has made one, so that every
    rule shares one split of the text into words; a rule called on its own makes its own."""

    name = "filter"

    def filter(self, doc: Document, view: "WordView | None" = None) -> bool | tuple[bool, str]:
        raise NotImplementedError


GOPHER_STRIP = ".,;:!?\"'()"  # what Gopher's stop-word check strips from a word
ENGLISH_STRIP = ".,;:!?\"'()[]"  # ... and the English check
_STOP_INDEX = {w: i for i, w in enumerate(sorted(STOP_WORDS), 1)}


class WordTable:
    """What the word-level rules need to know about each distinct word, worked out once per word.

    Words get consecutive row numbers; each column is a NumPy array indexed by row, so a document's
    words become one integer array (``encode``) and every rule is a NumPy reduction over it. Real
    text repeats a small vocabulary (Zipf), so the per-word Python work is paid once per word, not
    once per occurrence. With more than ``max_size`` words the table starts again empty (between two
    documents), so memory stays bounded."""

    COLUMNS = {
        "length": np.int32,  # characters of the word
        "lower_length": np.int32,  # characters of its lowercase form (which can differ: "İ")
        "lower_code": np.uint64,  # word_code of the lowercase form: repetition n-grams hash these
        "alpha": np.int32,  # alphabetic characters
        "alpha_non_ascii": np.int32,  # ... outside ASCII
        "stop": np.int8,  # 1..8: which Gopher stop word it is once stripped of punctuation; 0: none
        "english_alpha": np.bool_,  # stripped of punctuation, all letters (counts for the English check)
        "english_word": np.bool_,  # ... and a common English word
    }

    def __init__(self, max_size: int = 1 << 20):
        self.max_size = max_size
        self.rows = _Rows()
        self._alloc(1024)

    def _alloc(self, cap: int) -> None:
        for name, dtype in self.COLUMNS.items():
            old = getattr(self, name, None)
            col = np.zeros(cap, dtype=dtype)
            if old is not None:
                col[:len(old)] = old
            setattr(self, name, col)
        self.cap = cap

    def _fill(self, start: int, new: list[str]) -> None:
        """The columns of the words ``new``, which were given rows ``start``, ``start + 1``, ..."""
        rows = slice(start, start + len(new))
        low = [w.lower() for w in new]
        self.length[rows] = list(map(len, new))
        self.lower_length[rows] = list(map(len, low))
        self.lower_code[rows] = list(map(word_code, low))
        self.alpha[rows] = [sum(map(str.isalpha, w)) for w in new]
        self.alpha_non_ascii[rows] = [0 if w.isascii() else sum(ch.isalpha() and not ch.isascii() for ch in w)
                                      for w in new]
        self.stop[rows] = [_STOP_INDEX.get(w.strip(GOPHER_STRIP), 0) for w in low]
        stripped = [w.strip(ENGLISH_STRIP) for w in low]
        self.english_alpha[rows] = [w.isalpha() for w in stripped]
        self.english_word[rows] = [w.isalpha() and w in ENGLISH_WORDS for w in stripped]

    def encode(self, ws: list[str]) -> np.ndarray:
        """The row of every word; a new word gets the next row, and its columns are filled once the
        document's words are all numbered."""
        if len(self.rows) > self.max_size:
            self.rows = _Rows()
        rows = self.rows
        start = len(rows)
        out = np.fromiter(map(rows.__getitem__, ws), dtype=np.int64, count=len(ws))
        if rows.new:
            if len(rows) > self.cap:
                self._alloc(max(2 * self.cap, len(rows)))
            self._fill(start, rows.new)
            rows.new = []
        return out


class _Rows(dict):
    """Word -> row; a missing word gets the next row and is remembered in ``new``."""

    def __init__(self):
        super().__init__()
        self.new: list[str] = []

    def __missing__(self, w: str) -> int:
        i = self[w] = len(self)
        self.new.append(w)
        return i


_TABLE = WordTable()  # one per process: the rules of every Cleaner share it


class WordView:
    """A text split once into whitespace words (Gopher's words), as rows of a ``WordTable``; the split
    happens on first use and each column the rules read is gathered once per document."""

    def __init__(self, text: str, table: WordTable | None = None):
        self.text = text
        self.table = table or _TABLE
        self._rows: np.ndarray | None = None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            # str.split() gives the words of \S+: Python's whitespace is the same in both
            self._rows = self.table.encode(self.text.split())
        return self._rows

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        col = self._cache.get(name)
        if col is None:
            rows = self.rows  # first: encoding may grow the table's columns
            col = self._cache[name] = getattr(self.table, name)[rows]
        return col


def _view(doc: Document, view: WordView | None) -> WordView:
    return view if view is not None and view.text is doc.text else WordView(doc.text)


class GopherQualityFilter(Filter):
    """Gopher quality rules (Rae et al. 2021, A.1.1), each with its own reason."""

    name = "gopher_quality"

    def __init__(self, min_words: int = 50, max_words: int = 100_000, min_mean_word_length: float = 3.0,
                 max_mean_word_length: float = 10.0, max_symbol_word_ratio: float = 0.1,
                 min_alpha_word_fraction: float = 0.6, min_stop_words: int = 2):
        self.min_words, self.max_words = min_words, max_words
        self.min_mean_word_length, self.max_mean_word_length = min_mean_word_length, max_mean_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.min_alpha_word_fraction = min_alpha_word_fraction
        self.min_stop_words = min_stop_words

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "GopherQualityFilter":
        return cls(cfg.min_words, cfg.max_words, cfg.min_mean_word_length, cfg.max_mean_word_length,
                   cfg.max_symbol_word_ratio, cfg.min_alpha_word_fraction, cfg.min_stop_words)

    def filter(self, doc: Document, view: WordView | None = None):
        c = self
        v = _view(doc, view)
        n = len(v)
        if n < c.min_words:
            return False, "gopher_short_document"
        if n > c.max_words:
            return False, "gopher_long_document"
        mean_len = int(v.column("length").sum()) / n
        if not c.min_mean_word_length <= mean_len <= c.max_mean_word_length:
            return False, "gopher_mean_word_length"
        text = doc.text
        symbols = text.count("#") + text.count("...") + text.count("…")
        if symbols / n > c.max_symbol_word_ratio:
            return False, "gopher_symbol_word_ratio"
        lines = len(_NONBLANK_LINE.findall(text))
        if lines and len(_BULLET_LINE.findall(text)) / lines > 0.9:
            return False, "gopher_bullet_lines"
        if lines and len(_ELLIPSIS_LINE.findall(text)) / lines > 0.3:
            return False, "gopher_ellipsis_lines"
        if int(np.count_nonzero(v.column("alpha"))) / n < c.min_alpha_word_fraction:
            return False, "gopher_alpha_words"
        if int(np.count_nonzero(np.bincount(v.column("stop"), minlength=1)[1:])) < c.min_stop_words:
            return False, "gopher_stop_words"
        return True


def _max_count(h: np.ndarray) -> int:
    """How often the most frequent value of ``h`` occurs (0 for an empty array)."""
    if len(h) < 2:
        return len(h)
    srt = np.sort(h)
    same = srt[1:] == srt[:-1]
    if not same.any():
        return 1
    ends = np.concatenate(([-1], np.flatnonzero(~same), [len(h) - 1]))  # last index of each run
    return int((ends[1:] - ends[:-1]).max())


def _window_chars(csum: np.ndarray, start: int, n: int) -> int:
    return int(csum[start + n] - csum[start])


def _duplicate_chars(h: np.ndarray, csum: np.ndarray, n: int) -> int | None:
    """``duplicate_ngram_chars`` on the n-gram hashes ``h`` (``csum``: prefix sums of word lengths).

    Only positions whose n-gram occurs more than once can be repeats; between two of them the scan
    moves one word at a time, so it is enough to walk those positions in order, skipping the ones a
    repeat jumped over. None when no n-gram occurs twice."""
    if _max_count(h) < 2:
        return None
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse] > 1)
    seen: set[int] = set()
    dup = 0
    nxt = 0  # the next position the scan visits
    for j, g in zip(candidates.tolist(), inverse[candidates].tolist()):
        if j < nxt:
            continue  # inside a repeat the scan jumped past
        if g in seen:
            dup += _window_chars(csum, j, n)
            nxt = j + n
        else:
            seen.add(g)
            nxt = j + 1
    return dup


def duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters in word n-grams that repeat an earlier n-gram, each counted once (Gopher's rule:
    after a repeat, the scan jumps past it so overlapping repeats are not counted twice)."""
    if len(words) < n:
        return 0
    codes = np.array([word_code(w) for w in words], dtype=np.uint64)
    csum = np.concatenate([[0], np.cumsum([len(w) for w in words])])
    return _duplicate_chars(rolling_hashes(codes, n), csum, n) or 0


def _distinct(units: list[str]) -> tuple[int, int]:
    """How many of ``units`` repeat an earlier one, and their characters."""
    once = set(units)
    return len(units) - len(once), sum(map(len, units)) - sum(map(len, once))


class GopherRepetitionFilter(Filter):
    """Gopher repetition rules (Rae et al. 2021, table A1): repeated lines and paragraphs, the most
    frequent 2-4-grams, and repeated 5-10-grams, each with its own reason.

    N-grams are compared by a 64-bit rolling hash of their lowercase words' codes
    (``hare.core.text.rolling_hashes``), found and counted with ``np.unique``; two different
    n-grams of one document would have to collide in 64 bits to change a verdict."""

    name = "gopher_repetition"

    def __init__(self, max_duplicate_line_fraction: float = 0.3, max_duplicate_paragraph_fraction: float = 0.3,
                 max_duplicate_line_char_fraction: float = 0.2, max_duplicate_paragraph_char_fraction: float = 0.2,
                 max_top_ngram_char_fraction: dict[int, float] | None = None,
                 max_duplicate_ngram_char_fraction: dict[int, float] | None = None):
        self.max_duplicate_line_fraction = max_duplicate_line_fraction
        self.max_duplicate_paragraph_fraction = max_duplicate_paragraph_fraction
        self.max_duplicate_line_char_fraction = max_duplicate_line_char_fraction
        self.max_duplicate_paragraph_char_fraction = max_duplicate_paragraph_char_fraction
        self.max_top_ngram_char_fraction = ({2: 0.20, 3: 0.18, 4: 0.16} if max_top_ngram_char_fraction is None
                                            else max_top_ngram_char_fraction)
        self.max_duplicate_ngram_char_fraction = ({5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
                                                  if max_duplicate_ngram_char_fraction is None
                                                  else max_duplicate_ngram_char_fraction)

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "GopherRepetitionFilter":
        return cls(cfg.max_duplicate_line_fraction, cfg.max_duplicate_paragraph_fraction,
                   cfg.max_duplicate_line_char_fraction, cfg.max_duplicate_paragraph_char_fraction,
                   cfg.max_top_ngram_char_fraction, cfg.max_duplicate_ngram_char_fraction)

    def filter(self, doc: Document, view: WordView | None = None):
        c = self
        text = doc.text
        lines = [l for l in map(str.strip, text.split("\n")) if l]
        if not lines:
            return False, "empty"
        total_chars = max(1, len(text))
        for units, frac, char_frac, what in (
            (lines, c.max_duplicate_line_fraction, c.max_duplicate_line_char_fraction, "lines"),
            ([p for p in map(str.strip, _PARAGRAPH_BREAK.split(text)) if p], c.max_duplicate_paragraph_fraction,
             c.max_duplicate_paragraph_char_fraction, "paragraphs"),
        ):
            dup, dup_chars = _distinct(units)
            if units and dup / len(units) > frac:
                return False, f"gopher_duplicate_{what}"
            if dup_chars / total_chars > char_frac:
                return False, f"gopher_duplicate_{what}_chars"
        v = _view(doc, view)
        m = len(v)
        codes = v.column("lower_code")
        lengths = v.column("lower_length")
        csum = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(lengths, out=csum[1:])
        word_chars = max(1, int(csum[-1]))
        top = sorted(c.max_top_ngram_char_fraction.items())
        repeat = sorted(c.max_duplicate_ngram_char_fraction.items())
        hashes = _NgramHashes(codes)
        for n, limit in top:
            if m < n:
                continue
            h = hashes(n)
            count = _max_count(h)
            if count < 2:
                continue
            window = csum[n:] - csum[:-n]  # characters of the n-gram at each position
            if count * int(window.max()) / word_chars <= limit:
                continue  # not even the longest n-gram that often would break the rule
            # Counter.most_common(1) of the previous rule: of the most frequent, the first seen
            _, first, counts = np.unique(h, return_index=True, return_counts=True)
            start = int(first[counts == count].min())
            if count * int(window[start]) / word_chars > limit:
                return False, f"gopher_top_{n}gram"
        for n, limit in repeat:
            if m < n:
                continue
            dup = _duplicate_chars(hashes(n), csum, n)
            if dup is None:
                break  # no n-gram occurs twice, so no longer one does either
            if dup / word_chars > limit:
                return False, f"gopher_duplicate_{n}grams"
        return True


class _NgramHashes:
    """``rolling_hashes(codes, n)`` for growing n, each from the one before (one multiply-add per n)."""

    def __init__(self, codes: np.ndarray):
        self.codes = codes
        self.n = 1
        self.h = codes

    def __call__(self, n: int) -> np.ndarray:
        if n < self.n:
            return rolling_hashes(self.codes, n)
        while self.n < n:
            m = len(self.codes) - self.n
            self.h = self.h[:m] * _PRIME + self.codes[self.n:self.n + m]
            self.n += 1
        return self.h


class FineWebQualityFilter(Filter):
    """FineWeb's line rules for web text (Penedo et al. 2024): ending punctuation, short lines,
    characters in repeated lines."""

    name = "fineweb"

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "FineWebQualityFilter | None":
        return cls() if cfg.fineweb_rules else None

    def filter(self, doc: Document, view: WordView | None = None):
        lines = [l.strip() for l in doc.text.split("\n") if l.strip()]
        if not lines:
            return False, "empty"
        if sum(l.endswith(TERMINAL) for l in lines) / len(lines) < 0.12:
            return False, "fineweb_line_punctuation"
        if sum(len(l) < 30 for l in lines) / len(lines) > 0.67:
            return False, "fineweb_short_lines"
        seen: set[str] = set()
        dup_chars = 0
        for l in lines:
            if l in seen:
                dup_chars += len(l)
            seen.add(l)
        if dup_chars / max(1, sum(len(l) for l in lines)) > 0.01:
            return False, "fineweb_duplicate_line_chars"
        return True


class IncompleteFilter(Filter):
    """The paper's removal of semantically incomplete samples: prose that stops mid-sentence."""

    name = "incomplete"

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "IncompleteFilter | None":
        return cls() if cfg.require_complete_ending else None

    def filter(self, doc: Document, view: WordView | None = None):
        last = doc.text.rstrip().rsplit("\n", 1)[-1].strip()
        if len(last.split()) >= 8 and not last.endswith(TERMINAL):
            return False, "incomplete_ending"
        return True


class C4BadContentFilter(Filter):
    """C4's document rule for placeholder text ("lorem ipsum"). C4's curly-brace rule is left out: it
    would drop every document that shows code, which documentation and technical text are full of."""

    name = "c4"

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "C4BadContentFilter":
        return cls()

    def filter(self, doc: Document, view: WordView | None = None):
        low = doc.text.lower()
        if "lorem ipsum" in low:
            return False, "c4_lorem_ipsum"
        return True


class EnglishFilter(Filter):
    """Offline English check: mostly ASCII letters and a minimum share of common English words."""

    name = "language"

    def __init__(self, max_non_ascii_fraction: float = 0.3, min_english_word_fraction: float = 0.1):
        self.max_non_ascii_fraction = max_non_ascii_fraction
        self.min_english_word_fraction = min_english_word_fraction

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "EnglishFilter | None":
        if cfg.language_id != "wordlist":
            return None
        return cls(cfg.max_non_ascii_fraction, cfg.min_english_word_fraction)

    def filter(self, doc: Document, view: WordView | None = None):
        v = _view(doc, view)
        letters = int(v.column("alpha").sum())  # every letter is inside a (whitespace) word
        if not letters:
            return False, "non_english"
        non_ascii = int(v.column("alpha_non_ascii").sum()) / letters
        if non_ascii > self.max_non_ascii_fraction:
            return False, "non_english"
        # Function words among alphabetic words only: code and numbers neither help nor hurt.
        alpha = v.column("english_alpha")
        n = int(np.count_nonzero(alpha))
        if n >= 20 and int(np.count_nonzero(v.column("english_word"))) / n < self.min_english_word_fraction:
            return False, "non_english"
        return True


class Cleaner:
    """Applies the formatters then the filters; counts changes and removals by reason.

    ``Cleaner.from_config(cfg)`` builds the registry's formatters and filters (``hare.filters.registry``)
    that ``corpus.clean`` turns on, in the registry's order."""

    def __init__(self, formatters: list[Formatter], filters: list):
        self.formatters, self.filters = list(formatters), list(filters)
        self.removed: Counter[str] = Counter()

    @classmethod
    def from_config(cls, cfg: CleanConfig) -> "Cleaner":
        from hare.filters.registry import FILTERS, FORMATTERS

        if not cfg.enabled:
            return cls([], [])
        # (an unknown name in cfg.extra was refused when the config was made: CleanConfig checks it)
        return cls([f for c in FORMATTERS if (f := c.from_config(cfg)) is not None],
                   [f for c in FILTERS if (f := c.from_config(cfg)) is not None])

    def __call__(self, doc: Document) -> tuple[bool, str | None]:
        """Clean ``doc`` in place; returns (keep, reason)."""
        for f in self.formatters:
            f(doc)
        view = WordView(doc.text)  # one split into words, shared by every rule
        for flt in self.filters:
            verdict = flt.filter(doc, view)
            if verdict is not True:
                reason = verdict[1] if isinstance(verdict, tuple) else flt.name
                self.removed[reason] += 1
                return False, reason
        return True, None

    @property
    def changes(self) -> dict[str, int]:
        return {f.name: f.changes for f in self.formatters}

