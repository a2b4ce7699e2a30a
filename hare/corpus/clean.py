"""Heuristic cleaning: line-level formatters, then document-level filters, each with a reason.

The contract follows datatrove: a formatter rewrites ``doc.text``; a filter returns ``True`` to keep
a document or ``(False, reason)`` to drop it. ``Cleaner`` runs them in order and counts every
outcome, so the step's stats add up: documents in = kept + removed by reason.

Thresholds are the Gopher rules (Rae et al. 2021, "Scaling Language Models", appendix A), the C4
line rules (Raffel et al. 2020) and the paper's own D1 rules (personal information and links).
"""

from __future__ import annotations

import re
from collections import Counter

from hare.corpus.document import Document
from hare.recipe import CleanConfig

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

WORD_RE = re.compile(r"\S+")
EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IPV4_RE = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
PHONE_RE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}[ .-])?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?![\w.])")
URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
BULLETS = ("●", "•", "*", "-", "‣", "◦", "▪")
POLICY_WORDS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                "use cookies")


def _words(text: str) -> list[str]:
    return WORD_RE.findall(text)


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


class GopherRepetitionFilter(Filter):
    """Gopher repetition rule on lines: the fraction of lines that repeat an earlier line."""

    name = "gopher_repetition"

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg

    def filter(self, doc: Document):
        lines = [l.strip() for l in doc.text.split("\n") if l.strip()]
        if not lines:
            return False, "empty"
        counts = Counter(lines)
        dup = sum(v - 1 for v in counts.values())
        if dup / len(lines) > self.cfg.max_duplicate_line_fraction:
            return False, "gopher_duplicate_lines"
        return True


class C4BadContentFilter(Filter):
    """C4 document rules: placeholder text ("lorem ipsum") and curly-brace code dumps."""

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

