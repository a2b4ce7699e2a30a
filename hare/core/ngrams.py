"""The hashed n-gram index of evaluation items (held-out documents, benchmark items).

Words are ``match_words`` (runs of letters and digits of the text's match form: format characters
removed, NFKC, case folded, accents dropped); each word of an item gets its ``word_code`` and an
n-gram is the ``rolling_hashes`` value of its codes, computed for a whole text at once with numpy.
The index is a sorted array of the items' n-gram hashes with the first item each came from and how
many items hold it (16 bytes an n-gram). An item shorter than n words but of at least
``min_item_words`` is indexed whole, as one window of its own length (NeMo Curator's task
decontamination does the same between its min and max n-gram sizes), so short questions are caught
too. A word that no item contains cannot be part of a match, so windows holding one are skipped
before the lookup (and, for short items, windows that do not start with a short item's first
word); a bit filter sized from the number of n-grams answers most other lookups, and a directory
of the sorted hashes by their top bits the rest, in one or two reads. ``lookup_texts`` scans many
documents in one numpy pass. Decontamination and the leakage audit's clean-subset view both look
text up here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from hare.core.text import (MATCH_WORD_RE, WordCodes, ascii_word_keys, ascii_words, match_form, match_words,
                            prefix_hashes, rolling_hashes, window_hashes)

FILTER_BITS_PER_NGRAM = 32  # 1 - exp(-1/32): about 3 % of lookups of absent n-grams pass the filter
MIN_FILTER_BITS, MAX_FILTER_BITS = 16, 40


def _bit_filter(hashes: np.ndarray) -> tuple[int, np.ndarray]:
    """(log2 of its size, the filter) of a one-hash bit filter of ``hashes``: bit i is set when
    some hash's top ``filter_bits`` bits are i."""
    bits = filter_bits(len(hashes))
    out = np.zeros(1 << (bits - 3), dtype=np.uint8)
    if len(hashes):
        slot = hashes >> np.uint64(64 - bits)
        np.bitwise_or.at(out, (slot >> np.uint64(3)).astype(np.intp),
                         np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8))
    return bits, out


def filter_bits(ngrams: int) -> int:
    """log2 of the bit filter's size for ``ngrams`` n-grams: at least 32 bits an n-gram, so that the
    share of set bits (the false-positive rate of a one-hash filter) stays near 3 % at any size."""
    need = max(1, ngrams) * FILTER_BITS_PER_NGRAM
    return int(min(MAX_FILTER_BITS, max(MIN_FILTER_BITS, (need - 1).bit_length())))


@dataclass
class EvalText:
    """One item that training text must not overlap: a held-out document or a benchmark item."""

    source: str  # "heldout" or a benchmark name
    id: str
    text: str


_NOTHING = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64))  # no match (read-only)
_NOTHING[0].flags.writeable = _NOTHING[1].flags.writeable = False


class _Table:
    """Sorted hashes of one window length, the first item each came from and how many items hold it;
    a directory of where each range of hashes (by their top bits, about two hashes a range) starts,
    so that finding a hash reads one or two of them instead of a binary search's twenty-odd."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.first_item = np.zeros(0, dtype=np.int32)
        self.item_count = np.zeros(0, dtype=np.int32)
        self.shift = np.uint64(63)
        self.directory = np.zeros(3, dtype=np.int64)
        self.filter_bits = MIN_FILTER_BITS
        self.filter = np.zeros(1 << (MIN_FILTER_BITS - 3), dtype=np.uint8)
        self.first_codes: list[int] = []  # a table of short items: the code of each one's first word...
        self.first_words: np.ndarray | None = None  # ...by its top 16 bits (a window can match only there)

    def finalize(self) -> None:
        if not self.parts:
            return
        h = np.concatenate([p[0] for p in self.parts])
        it = np.concatenate([p[1] for p in self.parts])
        order = np.lexsort((it, h))
        h, it = h[order], it[order]
        first = np.ones(len(h), dtype=bool)
        first[1:] = h[1:] != h[:-1]
        starts = np.flatnonzero(first)
        new_h, new_it = h[first], it[first]
        counts = np.diff(np.append(starts, len(h))).astype(np.int32)
        if len(self.hashes):  # merge with an earlier finalize
            h = np.concatenate([self.hashes, new_h])
            it = np.concatenate([self.first_item, new_it])
            c = np.concatenate([self.item_count, counts])
            order = np.lexsort((it, h))
            h, it, c = h[order], it[order], c[order]
            first = np.ones(len(h), dtype=bool)
            first[1:] = h[1:] != h[:-1]
            c = np.add.reduceat(c, np.flatnonzero(first)).astype(np.int32)
            new_h, new_it, counts = h[first], it[first], c
        self.hashes, self.first_item, self.item_count = new_h, new_it, counts
        self.parts = []
        bits = max(1, (len(self.hashes) // 2).bit_length())
        self.shift = np.uint64(64 - bits)
        starts = np.searchsorted(self.hashes, np.arange(1 << bits, dtype=np.uint64) << self.shift)
        kind = np.int32 if len(self.hashes) < 1 << 31 else np.int64
        self.directory = np.append(starts, len(self.hashes)).astype(kind)

    def find(self, h: np.ndarray) -> np.ndarray:
        """Positions of ``h`` in ``hashes`` (-1 where absent): each is looked for from the start of
        its range onwards, all at once, until found or passed (a range holds a few hashes)."""
        out = np.full(len(h), -1, dtype=np.int64)
        r = (h >> self.shift).astype(np.intp)
        at, end = self.directory[r].astype(np.int64), self.directory[r + 1]
        todo = np.flatnonzero(at < end)
        while len(todo):
            a, q = at[todo], h[todo]
            v = self.hashes[a]
            hit = v == q
            out[todo[hit]] = a[hit]
            todo = todo[(v < q) & (a + 1 < end[todo])]
            at[todo] += 1
        return out


_SLOT_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: moves every bit of a key into the top bits


class _WordTable:
    """Known words' ``ascii_word_keys`` -> their word codes, as a direct-addressed table of at least
    eight slots a word (one probe finds almost every word) and, for the words that lost their slot
    to another, a small sorted array searched only for keys whose slot several words share. A
    word's slot is the top bits of its key times ``_SLOT_MIX`` (a short word's key is its bytes,
    whose top bits are zero)."""

    def __init__(self, keys: np.ndarray, codes: np.ndarray, words: int):
        self.words = words
        self.bits = max(4, int(np.ceil(np.log2(max(1, len(keys)) * 8))))
        slot = self.slots(keys)
        self.table = np.zeros((1 << self.bits, 2), dtype=np.uint64)  # (key, code): one cache line a probe
        self.table[slot] = np.stack([keys, codes], axis=1)  # a shared slot keeps one of its words...
        self.shared = np.bincount(slot, minlength=1 << self.bits) > 1
        rest = self.table[slot, 0] != keys  # ...and the others are in the sorted array
        order = np.argsort(keys[rest], kind="stable")
        self.rest_keys, self.rest_codes = keys[rest][order], codes[rest][order]

    def slots(self, h: np.ndarray) -> np.ndarray:
        """The slot of each key."""
        return ((h * _SLOT_MIX) >> np.uint64(64 - self.bits)).astype(np.intp)

    def codes_of(self, h: np.ndarray) -> np.ndarray:
        """The word code of each key, 0 for a word no item contains."""
        slot = self.slots(h)
        entry = np.take(self.table, slot, axis=0)
        out = np.where(entry[:, 0] == h, entry[:, 1], np.uint64(0))
        again = np.flatnonzero(self.shared[slot] & (out == 0))
        if len(again) and len(self.rest_keys):
            at = np.minimum(np.searchsorted(self.rest_keys, h[again]), len(self.rest_keys) - 1)
            out[again] = np.where(self.rest_keys[at] == h[again], self.rest_codes[at], np.uint64(0))
        return out


class NgramIndex:
    """Hashed n-grams of evaluation items (and short items whole): sorted hash tables, the first
    item of each n-gram and how many items hold it.

    Lookups of n-grams first test a bit filter (one a window length) addressed by the top bits of
    the hash, sized from the number of n-grams (``filter_bits``), so the table is read only for the
    few likely hits.
    """

    def __init__(self, n: int, min_item_words: int | None = None):
        self.n = n
        self.min_item_words = n if min_item_words is None else min(n, min_item_words)
        self.codes = WordCodes()
        self.items: list[EvalText] = []
        self.indexed: Counter[str] = Counter()
        self.short_items = 0
        self.tables: dict[int, _Table] = {n: _Table()}  # window length -> table
        self.filter_bits = MIN_FILTER_BITS
        self.filter = np.zeros(1 << (MIN_FILTER_BITS - 3), dtype=np.uint8)
        self.item_ngrams = np.zeros(0, dtype=np.int32)  # per item: n-grams it is the first item of
        self._entries: dict[int, tuple[int, int]] = {}  # hash -> (window length, position), as looked up
        self._known: _WordTable | None = None  # the known ASCII words, for lookup_text

    @property
    def hashes(self) -> np.ndarray:
        """The n-gram hashes (sorted), without the short items' windows."""
        return self.tables[self.n].hashes

    @property
    def first_item(self) -> np.ndarray:
        return self.tables[self.n].first_item

    def add(self, item: EvalText) -> None:
        ws = match_words(item.text)
        length = self.n if len(ws) >= self.n else len(ws)
        if length < self.min_item_words or length == 0:
            return
        k = len(self.items)
        self.items.append(item)
        self.indexed[item.source] += 1
        codes = self.codes.encode(ws)
        table = self.tables.setdefault(length, _Table())
        if length < self.n:
            self.short_items += 1
            table.first_codes.append(int(codes[0]))
        h = np.unique(rolling_hashes(codes, length))
        table.parts.append((h, np.full(len(h), k, dtype=np.int32)))

    def finalize(self) -> "NgramIndex":
        """Sort the n-grams; keep, for each, the first item it came from; size and fill the filter."""
        self._entries.clear()
        for t in self.tables.values():
            t.finalize()
        main = self.tables[self.n]
        for t in self.tables.values():
            t.filter_bits, t.filter = _bit_filter(t.hashes)
            if t.first_codes:
                t.first_words = np.zeros(1 << 16, dtype=bool)
                t.first_words[np.array(t.first_codes, dtype=np.uint64) >> np.uint64(48)] = True
        self.filter_bits, self.filter = main.filter_bits, main.filter
        firsts = [t.first_item for t in self.tables.values() if len(t.first_item)]
        self.item_ngrams = np.bincount(np.concatenate(firsts), minlength=len(self.items)).astype(np.int32) \
            if firsts else np.zeros(len(self.items), dtype=np.int32)
        return self

    def __len__(self) -> int:
        return sum(len(t.hashes) for t in self.tables.values())

    def filter_fill(self) -> float:
        """The share of set filter bits: the rate at which absent n-grams pass the filter."""
        return float(np.unpackbits(self.filter).mean()) if len(self.filter) else 0.0

    def lookup_text(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``lookup`` of the words of ``text`` (``match_words``); ``lookup_texts`` of one text."""
        return self.lookup_texts([text])[0]

    def lookup_texts(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``lookup`` of the words of each text, the texts whose match form is ASCII (most text) in
        one numpy pass: their forms joined by a line break (no word spans two texts), every word's
        ``ascii_words`` key looked up among the known words' (a hash table), every window hashed
        from one prefix sum (``window_hashes``), windows that cross from one text into the next
        left out; no Python per word or per window, and a few dozen numpy calls for all the texts."""
        out: list[tuple[np.ndarray, np.ndarray]] = [_NOTHING] * len(texts)
        forms, where = [], []
        for k, text in enumerate(texts):
            form = text.lower() if text.isascii() else match_form(text)[0]
            if form.isascii():
                forms.append(form)
                where.append(k)
            elif len(self):
                out[k] = self.lookup(MATCH_WORD_RE.findall(form))
        if forms and len(self):
            for k, found in zip(where, self._lookup_ascii(forms)):
                out[k] = found
        return out

    def _lookup_ascii(self, forms: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``lookup_texts`` of ASCII match forms."""
        starts, keys = ascii_words("\n".join(forms).encode("ascii"))
        first_byte = np.zeros(len(forms) + 1, dtype=np.int64)
        np.cumsum([len(f) + 1 for f in forms], out=first_byte[1:])
        first_word = np.searchsorted(starts, first_byte)  # of each text, and the number of words last
        text_of = np.repeat(np.arange(len(forms)), np.diff(first_word))  # the text of each word
        pos, h = self.lookup_codes(self._known_words().codes_of(keys), text_of)
        at = text_of[pos]
        pos = pos - first_word[at]
        bounds = np.searchsorted(at, np.arange(len(forms) + 1)).tolist()
        return [(pos[a:b], h[a:b]) if b > a else _NOTHING for a, b in zip(bounds, bounds[1:])]

    def _known_words(self) -> "_WordTable":
        """The known ASCII words' table, rebuilt when words were added since."""
        if self._known is None or self._known.words != len(self.codes):
            words = [w for w in self.codes.words() if w.isascii()]
            keys = ascii_word_keys(" ".join(words)) if words else np.zeros(0, dtype=np.uint64)
            self._known = _WordTable(keys, self.codes.known(words), len(self.codes))
        return self._known

    def lookup(self, ws: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(word positions, hashes) of the windows of the words ``ws`` that are in the index: n-grams
        and whole short items, in position order (``window`` gives a hash's length in words)."""
        return self.lookup_codes(self.codes.known(ws))

    def lookup_codes(self, codes: np.ndarray, text_of: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``lookup`` of words given by their codes (0: a word no item contains); with ``text_of``
        (the text each word belongs to, non-decreasing), only windows within one text."""
        if not len(self):
            return _NOTHING
        unknown = np.concatenate(([0], np.cumsum(codes == 0)))
        prefix = top = None
        pos_out, h_out = [], []
        for length, table in self.tables.items():
            if len(codes) < length or not len(table.hashes):
                continue
            if table.first_words is not None:  # short items: only windows that start as one of them does
                if top is None:
                    top = (codes >> np.uint64(48)).astype(np.intp)
                pos = np.flatnonzero(table.first_words[top[:len(codes) - length + 1]])
                pos = pos[unknown[pos + length] == unknown[pos]]
                if text_of is not None:
                    pos = pos[text_of[pos + length - 1] == text_of[pos]]
            else:
                ok = (unknown[length:] - unknown[:-length]) == 0  # windows made only of words the index knows
                if text_of is not None:
                    ok &= text_of[length - 1:] == text_of[:len(text_of) - length + 1]
                pos = np.flatnonzero(ok)
            if not len(pos):
                continue
            if prefix is None:
                prefix = prefix_hashes(codes)
            h = window_hashes(prefix, length, pos)
            slot = h >> np.uint64(64 - table.filter_bits)
            keep = np.flatnonzero((table.filter[(slot >> np.uint64(3)).astype(np.intp)]
                                   >> (slot & np.uint64(7)).astype(np.uint8)) & 1)
            pos, h = pos[keep], h[keep]
            hit = table.find(h) >= 0
            pos_out.append(pos[hit])
            h_out.append(h[hit])
        if not pos_out:
            return _NOTHING
        pos, h = np.concatenate(pos_out), np.concatenate(h_out)
        if len(pos_out) > 1:
            order = np.argsort(pos, kind="stable")
            pos, h = pos[order], h[order]
        return pos, h

    def prefetch(self, hs: list[int]) -> None:
        """Look the entries of the indexed hashes ``hs`` up at once (a search per table, not per hash):
        ``window``, ``item_index`` and ``item_of`` then answer them from memory."""
        todo = np.array([h for h in set(hs) if h not in self._entries], dtype=np.uint64)
        for length, table in self.tables.items():
            if not len(todo):
                break
            at = table.find(todo)
            for h, a in zip(todo[at >= 0].tolist(), at[at >= 0].tolist()):
                self._entries[h] = (length, a)
            todo = todo[at < 0]

    def _entry(self, h: int) -> tuple[int, int]:
        """(window length, position in its table) of an indexed hash."""
        if h not in self._entries:
            self.prefetch([h])
            if h not in self._entries:
                raise KeyError(h)
        return self._entries[h]

    def window(self, h: int) -> int:
        """How many words the indexed window of hash ``h`` spans (n, or a short item's length)."""
        return self._entry(h)[0]

    def item_index(self, h: int) -> int:
        length, at = self._entry(h)
        return int(self.tables[length].first_item[at])

    def item_of(self, h: int) -> EvalText:
        return self.items[self.item_index(h)]

    def items_holding(self, h: int) -> int:
        """How many indexed items hold the window of hash ``h``."""
        length, at = self._entry(h)
        return int(self.tables[length].item_count[at])

    def window_text(self, h: int) -> str:
        """The words of an indexed window, as found in its first item (for people to read)."""
        length, at = self._entry(h)
        ws = match_words(self.items[int(self.tables[length].first_item[at])].text)
        hs = rolling_hashes(self.codes.encode(ws), length)
        i = np.flatnonzero(hs == np.uint64(h))
        return " ".join(ws[int(i[0]):int(i[0]) + length]) if len(i) else ""
