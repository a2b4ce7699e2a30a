"""The cleaning rules as they were before their NumPy rewrite, kept verbatim as the reference the
rewrite is checked against (tests/corpus/test_clean_parity.py). Not used by hare."""
from __future__ import annotations

import re
from collections import Counter

from hare.core.documents import Document
from hare.core.text import words as _words
from hare.filters.config import CleanConfig

# Gopher's stop-word list (Rae et al. 2021, A.1.1).
STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
# A wider English function-word list for the language check (offline, no model).
ENGLISH_WORDS = frozenset(
    "the be to of and a in that have i it for not on with he as you do at this but his by from they we "
    "say her she or an will my one all would there their what so up out if about who get which go me when "
    "make can like time no just him know take people into year your good some could them see other than "
    "then now look only come its over think also back after use two how our work first well way even new "
    "want because any these give day most us is are was were has had been".split()
)

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IPV4_RE = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
PHONE_RE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}[ .-])?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w.])")
URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
BULLETS = ("●", "•", "*", "-", "‣", "◦", "▪")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ";", ")")
POLICY_WORDS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                "use cookies")


class Formatter:
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

    def format(self, text: str) -> str:
        text = EMAIL_RE.sub("email@example.com", text)
        text = IPV4_RE.sub("0.0.0.0", text)
        return PHONE_RE.sub("555-0100", text)


class URLFormatter(Formatter):
    """Remove web links; the paper removes them from its open-data part."""

    name = "urls"

    def format(self, text: str) -> str:
        text = re.sub(r"<\s*(?:https?://|www\.)[^>]*>", "", text, flags=re.IGNORECASE)
        return URL_RE.sub("", text)


class LineFormatter(Formatter):
    """C4 line rules: drop lines that mention javascript or cookie/privacy policies, and short lines."""

    name = "lines"

    def __init__(self, boilerplate: bool = True, min_line_chars: int = 0):
        super().__init__()
        self.boilerplate = boilerplate
        self.min_line_chars = min_line_chars

    def format(self, text: str) -> str:
        out = []
        for line in text.split("\n"):
            low = line.lower()
            if self.boilerplate and ("javascript" in low and "enable" in low or any(w in low for w in POLICY_WORDS)):
                continue
            if self.min_line_chars and line.strip() and len(line.strip()) < self.min_line_chars:
                continue
            out.append(line)
        return "\n".join(out)


class Filter:
    """A document-level rule: ``filter(doc)`` returns True or (False, reason)."""

    name = "filter"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        raise NotImplementedError


class GopherQualityFilter(Filter):
    """Gopher quality rules (Rae et al. 2021, A.1.1), each with its own reason."""

    name = "gopher_quality"

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg

    def filter(self, doc: Document):
        c = self.cfg
        words = _words(doc.text)
        n = len(words)
        if n < c.min_words:
            return False, "gopher_short_document"
        if n > c.max_words:
            return False, "gopher_long_document"
        mean_len = sum(len(w) for w in words) / n
        if not c.min_mean_word_length <= mean_len <= c.max_mean_word_length:
            return False, "gopher_mean_word_length"
        symbols = doc.text.count("#") + doc.text.count("...") + doc.text.count("…")
        if symbols / n > c.max_symbol_word_ratio:
            return False, "gopher_symbol_word_ratio"
        lines = [l for l in doc.text.split("\n") if l.strip()]
        if lines and sum(l.lstrip().startswith(BULLETS) for l in lines) / len(lines) > 0.9:
            return False, "gopher_bullet_lines"
        if lines and sum(l.rstrip().endswith(("...", "…")) for l in lines) / len(lines) > 0.3:
            return False, "gopher_ellipsis_lines"
        if sum(any(ch.isalpha() for ch in w) for w in words) / n < c.min_alpha_word_fraction:
            return False, "gopher_alpha_words"
        lower = {w.lower().strip(".,;:!?\"'()") for w in words}
        if len(lower & STOP_WORDS) < c.min_stop_words:
            return False, "gopher_stop_words"
        return True


def _char_len(words) -> int:
    return sum(len(w) for w in words)


def duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters in word n-grams that repeat an earlier n-gram, each counted once (Gopher's rule:
    after a repeat, the scan jumps past it so overlapping repeats are not counted twice)."""
    seen: set[tuple[str, ...]] = set()
    dup = 0
    i = 0
    last = len(words) - n
    while i <= last:
        gram = tuple(words[i:i + n])
        if gram in seen:
            dup += _char_len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return dup


class GopherRepetitionFilter(Filter):
    """Gopher repetition rules (Rae et al. 2021, table A1): repeated lines and paragraphs, the most
    frequent 2-4-grams, and repeated 5-10-grams, each with its own reason."""

    name = "gopher_repetition"

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg

    def filter(self, doc: Document):
        c = self.cfg
        text = doc.text
        lines = [l.strip() for l in text.split("\n") if l.strip()]
        if not lines:
            return False, "empty"
        total_chars = max(1, len(text))
        for units, frac, char_frac, what in (
            (lines, c.max_duplicate_line_fraction, c.max_duplicate_line_char_fraction, "lines"),
            ([p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()], c.max_duplicate_paragraph_fraction,
             c.max_duplicate_paragraph_char_fraction, "paragraphs"),
        ):
            seen: set[str] = set()
            dup = dup_chars = 0
            for u in units:
                if u in seen:
                    dup += 1
                    dup_chars += len(u)
                seen.add(u)
            if units and dup / len(units) > frac:
                return False, f"gopher_duplicate_{what}"
            if dup_chars / total_chars > char_frac:
                return False, f"gopher_duplicate_{what}_chars"
        words = [w.lower() for w in _words(text)]
        word_chars = max(1, _char_len(words))
        for n, limit in sorted(c.max_top_ngram_char_fraction.items()):
            if len(words) < n:
                continue
            counts = Counter(zip(*(words[k:] for k in range(n))))
            gram, count = counts.most_common(1)[0]
            if count > 1 and count * _char_len(gram) / word_chars > limit:
                return False, f"gopher_top_{n}gram"
        for n, limit in sorted(c.max_duplicate_ngram_char_fraction.items()):
            if len(words) >= n and duplicate_ngram_chars(words, n) / word_chars > limit:
                return False, f"gopher_duplicate_{n}grams"
        return True


class FineWebQualityFilter(Filter):
    """FineWeb's line rules for web text (Penedo et al. 2024): ending punctuation, short lines,
    characters in repeated lines."""

    name = "fineweb"

    def filter(self, doc: Document):
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

    def filter(self, doc: Document):
        last = doc.text.rstrip().rsplit("\n", 1)[-1].strip()
        if len(last.split()) >= 8 and not last.endswith(TERMINAL):
            return False, "incomplete_ending"
        return True


class C4BadContentFilter(Filter):
    """C4's document rule for placeholder text ("lorem ipsum"). C4's curly-brace rule is left out: it
    would drop every document that shows code, which documentation and technical text are full of."""

    name = "c4"

    def filter(self, doc: Document):
        low = doc.text.lower()
        if "lorem ipsum" in low:
            return False, "c4_lorem_ipsum"
        return True


class EnglishFilter(Filter):
    """Offline English check: mostly ASCII letters and a minimum share of common English words."""

    name = "language"

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg

    def filter(self, doc: Document):
        letters = [ch for ch in doc.text if ch.isalpha()]
        if not letters:
            return False, "non_english"
        non_ascii = sum(not ch.isascii() for ch in letters) / len(letters)
        if non_ascii > self.cfg.max_non_ascii_fraction:
            return False, "non_english"
        # Function words among alphabetic words only: code and numbers neither help nor hurt.
        words = [w for w in (t.lower().strip(".,;:!?\"'()[]") for t in _words(doc.text)) if w.isalpha()]
        if len(words) >= 20 and sum(w in ENGLISH_WORDS for w in words) / len(words) < self.cfg.min_english_word_fraction:
            return False, "non_english"
        return True


class Cleaner:
    """Applies the formatters then the filters; counts changes and removals by reason."""

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg
        self.formatters: list[Formatter] = [LineFormatter(cfg.boilerplate_lines, cfg.min_line_chars)]
        if cfg.remove_urls:
            self.formatters.append(URLFormatter())
        if cfg.remove_pii:
            self.formatters.append(PIIFormatter())
        # Language first (as datatrove's pipelines do): rules below are tuned for English.
        self.filters: list[Filter] = [
            EnglishFilter(cfg),
            GopherRepetitionFilter(cfg),
            GopherQualityFilter(cfg),
            C4BadContentFilter(),
        ]
        if cfg.fineweb_rules:
            self.filters.append(FineWebQualityFilter())
        if cfg.require_complete_ending:
            self.filters.append(IncompleteFilter())
        self.removed: Counter[str] = Counter()

    def __call__(self, doc: Document) -> tuple[bool, str | None]:
        """Clean ``doc`` in place; returns (keep, reason)."""
        for f in self.formatters:
            f(doc)
        for flt in self.filters:
            verdict = flt.filter(doc)
            if verdict is not True:
                reason = verdict[1] if isinstance(verdict, tuple) else flt.name
                self.removed[reason] += 1
                return False, reason
        return True, None

    @property
    def changes(self) -> dict[str, int]:
        return {f.name: f.changes for f in self.formatters}

