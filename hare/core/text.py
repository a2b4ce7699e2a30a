"""Words, normalization, word codes and n-gram hashes: the one place where text is split and hashed.

Each method counts words the way its source defines them, so there are three views of a text:

- ``words``: whitespace-separated tokens, as the Gopher rules count them (Rae et al. 2021); the
  cleaning rules use them;
- ``normalize_for_dedup``: lowercase, punctuation removed, digits folded to 0, whitespace collapsed
  (datatrove's simplification); exact dedup hashes it (``text_hash``) and MinHash shingles its words;
- ``match_words`` and ``words_with_spans``: lowercase runs of letters and digits, so case,
  punctuation and spacing cannot hide an overlap; decontamination and the leakage audit use them.

A word's code (``word_code``) is a stable nonzero 64-bit hash; an n-gram's hash is a polynomial
rolling hash of its word codes (``rolling_hashes``). MinHash signatures and the decontamination
index are both built on these two functions: changing either changes near-duplicate and
decontamination results alike.
"""

from __future__ import annotations

import hashlib
import itertools
import re

import numpy as np

WHITESPACE_WORD_RE = re.compile(r"\S+")
MATCH_WORD_RE = re.compile(r"[^\W_]+")
_PUNCT_RE = re.compile(r"[^\w\s]")
_DIGIT_RE = re.compile(r"\d")
_SPACE_RE = re.compile(r"\s+")
_PRIME = np.uint64(1099511628211)  # FNV-1a's 64-bit prime: odd, so the rolling hash mixes every position


def words(text: str) -> list[str]:
    """Whitespace-separated words (Gopher's definition)."""
    return WHITESPACE_WORD_RE.findall(text)


# The same normalization for ASCII text as one bytes.translate: uppercase to lowercase, digits to 0,
# the separators \x1c-\x1f (whitespace to Python, not to bytes.split) to spaces, punctuation deleted.
_ASCII = [chr(c) for c in range(128)]
_ASCII_MAP = bytes.maketrans(
    bytes(c for c in range(128) if _ASCII[c].isupper() or _ASCII[c].isdigit() or 0x1c <= c <= 0x1f),
    bytes(ord("0") if _ASCII[c].isdigit() else ord(" ") if 0x1c <= c <= 0x1f else ord(_ASCII[c].lower())
          for c in range(128) if _ASCII[c].isupper() or _ASCII[c].isdigit() or 0x1c <= c <= 0x1f))
_ASCII_PUNCT = bytes(c for c in range(128) if not (_ASCII[c].isalnum() or _ASCII[c] == "_" or _ASCII[c].isspace()))


def normalize_for_dedup(text: str) -> str:
    """Lowercase, punctuation removed, digits folded to 0, whitespace collapsed (datatrove's simplification)."""
    if text.isascii():  # most text: one C pass instead of three regular expressions
        return b" ".join(text.encode().translate(_ASCII_MAP, _ASCII_PUNCT).split()).decode()
    text = _PUNCT_RE.sub("", text.lower())
    text = _DIGIT_RE.sub("0", text)
    return _SPACE_RE.sub(" ", text).strip()


def text_hash(text: str, normalized: bool = False) -> bytes:
    """128-bit hash of a text's normalized form (exact dedup); ``normalized``: already normalized."""
    return hashlib.blake2b((text if normalized else normalize_for_dedup(text)).encode(), digest_size=16).digest()


def match_words(text: str) -> list[str]:
    """Lowercase runs of letters and digits (decontamination's words)."""
    return MATCH_WORD_RE.findall(text.lower())


def words_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """``match_words`` and each word's character span in ``text``."""
    out, spans = [], []
    for m in MATCH_WORD_RE.finditer(text):
        out.append(m.group().lower())
        spans.append(m.span())
    return out, spans


def word_code(word: str) -> int:
    """A stable, nonzero 64-bit code for a word (the same in every process and run)."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little") | 1


class _Memo(dict):
    def __missing__(self, word: str) -> int:
        c = self[word] = word_code(word)
        return c


class WordCodes:
    """``word_code`` memoized. ``encode`` codes words and remembers new ones; ``known`` gives 0 for a
    word never encoded (in the decontamination index: a word that no evaluation item contains).
    With ``max_size``, the memo is emptied once it holds more words, so memory stays bounded."""

    def __init__(self, max_size: int | None = None):
        self.max_size = max_size
        self._memo = _Memo()

    def __len__(self) -> int:
        return len(self._memo)

    def encode(self, ws: list[str]) -> np.ndarray:
        if self.max_size is not None and len(self._memo) > self.max_size:
            self._memo.clear()
        return np.fromiter(map(self._memo.__getitem__, ws), dtype=np.uint64, count=len(ws))

    def known(self, ws: list[str]) -> np.ndarray:
        return np.fromiter(map(self._memo.get, ws, itertools.repeat(0)), dtype=np.uint64, count=len(ws))


def rolling_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    """Hash of every window of ``n`` codes: sum of code[i+k] * P^(n-1-k), modulo 2^64."""
    m = len(codes) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = codes[:m].copy()
    for k in range(1, n):
        h *= _PRIME
        h += codes[k:k + m]
    return h
