"""Words, normalization, word codes and n-gram hashes: the one place where text is split and hashed.

Each method counts words the way its source defines them, so there are three views of a text:

- ``words``: whitespace-separated tokens, as the Gopher rules count them (Rae et al. 2021); the
  cleaning rules use them;
- ``normalize_for_dedup``: lowercase, punctuation removed, digits folded to 0, whitespace collapsed
  (datatrove's simplification); exact dedup hashes it (``text_hash``) and MinHash shingles its words;
- ``match_words`` and ``words_with_spans``: runs of letters and digits of the text's *match form*
  (``match_form``: invisible format characters removed, NFKC, case folding, accents dropped), so
  case, punctuation, spacing, compatibility forms (full-width letters, ligatures), accents and
  zero-width characters cannot hide an overlap; decontamination and the leakage audit use them,
  for the evaluation items and the training documents alike.

A word's code (``word_code``) is a stable nonzero 64-bit hash; an n-gram's hash is a polynomial
rolling hash of its word codes (``rolling_hashes``). MinHash signatures and the decontamination
index are both built on these two functions: changing either changes near-duplicate and
decontamination results alike.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from functools import lru_cache

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


@lru_cache(maxsize=1 << 16)
def _kind(c: str) -> str:
    """'f' for a format character (category Cf: zero-width spaces and joiners, soft hyphens,
    bidirectional marks, the byte-order mark), which a reader never sees; 'm' for a combining mark
    (category M), which belongs to the character before it; '' for any other."""
    cat = unicodedata.category(c)
    return "f" if cat == "Cf" else ("m" if cat[0] == "M" else "")


# Pieces of text that need more than ASCII lowercasing: a run of non-ASCII characters with the
# character before it (the base of a combining mark that follows it).
_NON_ASCII_RE = re.compile(r".?[^\x00-\x7f]+", re.S)


def _fold_text(piece: str) -> str:
    """Compatibility forms to their letters, case folded, format characters, accents and other
    combining marks dropped."""
    d = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", piece).casefold())
    if not d.isascii():
        drop = {ord(c): None for c in set(d) if not c.isascii() and _kind(c)}
        if drop:
            d = d.translate(drop)
    return unicodedata.normalize("NFC", d)


_fold = lru_cache(maxsize=1 << 16)(_fold_text)  # the same pieces (quotes, dashes, accented words) recur


def _identity(n: int, with_map: bool) -> tuple[list[int] | None, list[int] | None]:
    return (list(range(n)), list(range(1, n + 1))) if with_map else (None, None)


def match_form(text: str, with_map: bool = False) -> tuple[str, list[int] | None, list[int] | None]:
    """The text every overlap is looked for in, and (``with_map``) where each of its characters came
    from: ``starts[j]``/``ends[j]`` delimit the characters of ``text`` that character j of the match
    form was made from.

    The match form: ASCII lowercased; any other character without the format characters, then
    NFKC (compatibility forms: full-width letters, ligatures), case folding, and without combining
    marks (accents: "Café", "café" and "cafe" + U+0301 are one word, and "İ" folds to "i"). Where
    that changes the number of characters, each base character is folded with its marks, so that
    positions map back. One function for the items and the documents: a leaked item is found
    however either is encoded.
    """
    if text.isascii():
        return (text.lower(), *_identity(len(text), with_map))
    kinds = {_kind(c) for c in set(text) if not c.isascii()}
    if not kinds - {""}:
        whole = _fold_text(text)
        if len(whole) == len(text):  # the usual case: curly quotes, dashes, composed accents
            return (whole, *_identity(len(text), with_map))
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for m in _NON_ASCII_RE.finditer(text):
        a, b = m.span()
        if a > pos:
            out.append(text[pos:a].lower())
            if with_map:
                starts.extend(range(pos, a))
                ends.extend(range(pos + 1, a + 1))
        i = a
        while i < b:  # each base character with the marks and format characters after it
            j = i + 1
            while j < b and _kind(text[j]):
                j += 1
            f = _fold(text[i:j])
            out.append(f)
            if with_map:
                starts.extend([i] * len(f))
                ends.extend([j] * len(f))
            i = j
        pos = b
    if pos < len(text):
        out.append(text[pos:].lower())
        if with_map:
            starts.extend(range(pos, len(text)))
            ends.extend(range(pos + 1, len(text) + 1))
    return "".join(out), (starts if with_map else None), (ends if with_map else None)


def match_words(text: str) -> list[str]:
    """Runs of letters and digits of the text's match form (decontamination's words)."""
    return MATCH_WORD_RE.findall(match_form(text)[0])


def words_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """``match_words`` and each word's character span in the original ``text``."""
    if text.isascii():  # the match form is the text lowercased, character for character
        found = list(MATCH_WORD_RE.finditer(text.lower()))
        return [m.group() for m in found], [m.span() for m in found]
    form, starts, ends = match_form(text, with_map=True)
    out, spans = [], []
    for m in MATCH_WORD_RE.finditer(form):
        out.append(m.group())
        spans.append((starts[m.start()], ends[m.end() - 1]))
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

    def words(self) -> list[str]:
        """The words encoded so far."""
        return list(self._memo)

    def known(self, ws: list[str]) -> np.ndarray:
        return np.fromiter(map(self._memo.get, ws, itertools.repeat(0)), dtype=np.uint64, count=len(ws))


_BYTE_PRIME = 0x100000001B3  # FNV's 64-bit prime again (= _PRIME): odd, so invertible modulo 2^64
_powers = np.ones(1, dtype=np.uint64)  # _BYTE_PRIME**i and its inverse**i modulo 2^64, grown on demand
_inverse_powers = np.ones(1, dtype=np.uint64)


def power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i modulo 2^64 for i < n (P = ``_PRIME``), from tables kept between calls."""
    global _powers, _inverse_powers
    if len(_powers) < n:
        size = max(n, 2 * len(_powers))
        tables = []
        for base in (_BYTE_PRIME, pow(_BYTE_PRIME, -1, 1 << 64)):
            t = np.ones(size, dtype=np.uint64)  # filled in uint64 throughout: wrapping, never float
            with np.errstate(over="ignore"):
                np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=t[1:])
            tables.append(t)
        _powers, _inverse_powers = tables
    return _powers[:n], _inverse_powers[:n]


# The bytes of MATCH_WORD_RE's words in an ASCII text kept, every other byte made 0 (one bytes.translate).
_WORD_BYTES = bytes(c if chr(c).isascii() and chr(c).isalnum() else 0 for c in range(256))
_LOW_BYTES = np.array([(1 << 8 * k) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)  # k low bytes
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd
_CHUNKED = 64  # longer words (rare) are keyed by blake2b in Python


def ascii_words(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(first byte, key) of every word of an ASCII match form given as bytes, in order, computed for
    the whole text at once (no Python per word). A word of up to 8 bytes is its own key: its bytes
    read as one 64-bit integer (the bytes after it zeroed), so two such words never share a key; a
    longer one folds in each further 8 bytes (key * _MIX after an xor-shift, plus the next 8), and
    one of more than ``_CHUNKED`` bytes gets a 64-bit blake2b. The same function of the word's text
    wherever it stands, so it keys a table of known words (``NgramIndex``)."""
    n = len(data)
    b = np.zeros(n + 8, dtype=np.uint8)  # 8 zero bytes past the end: every 8-byte read stays inside
    b[:n] = np.frombuffer(data.translate(_WORD_BYTES), dtype=np.uint8)
    inside = np.zeros(n + 2, dtype=bool)
    inside[1:-1] = b[:n] != 0
    edges = np.flatnonzero(inside[1:] != inside[:-1])
    starts, length = edges[0::2], edges[1::2] - edges[0::2]
    eight = np.ndarray((n + 1,), dtype=np.uint64, buffer=b, strides=(1,))  # the 8 bytes from each position
    key = eight[starts] & _LOW_BYTES[np.minimum(length, 8)]
    longer = np.flatnonzero(length > 8)
    k = 8
    while len(longer) and k < _CHUNKED:
        x = key[longer]
        x ^= x >> np.uint64(31)
        x *= _MIX
        x += eight[starts[longer] + k] & _LOW_BYTES[np.minimum(length[longer] - k, 8)]
        key[longer] = x
        k += 8
        longer = longer[length[longer] > k]
    for i in longer.tolist():
        word = data[starts[i]:starts[i] + length[i]]
        key[i] = int.from_bytes(hashlib.blake2b(word, digest_size=8).digest(), "little")
    return starts, key


def ascii_word_keys(form: str) -> np.ndarray:
    """The key of every word of an ASCII match form, in order (``ascii_words``)."""
    return ascii_words(form.encode("ascii"))[1]


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


def prefix_hashes(codes: np.ndarray) -> np.ndarray:
    """Prefix sums of code[i] * P^-i modulo 2^64, from which ``window_hashes`` takes any window's
    ``rolling_hashes`` value with one subtraction and one multiplication."""
    prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes * power_tables(len(codes))[1], out=prefix[1:])
    return prefix


def window_hashes(prefix: np.ndarray, n: int, at: np.ndarray) -> np.ndarray:
    """``rolling_hashes(codes, n)[at]`` from ``prefix_hashes(codes)``: the window of n codes from i
    is sum of code[i+k] * P^(n-1-k) = (prefix[i+n] - prefix[i]) * P^(i+n-1), modulo 2^64."""
    return (prefix[at + n] - prefix[at]) * power_tables(len(prefix))[0][at + n - 1]
