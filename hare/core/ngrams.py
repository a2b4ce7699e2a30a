"""The hashed n-gram index of evaluation items (held-out documents, benchmark items).

Words are ``match_words`` (lowercase runs of letters and digits); each word of an item gets its
``word_code`` and an n-gram is the ``rolling_hashes`` value of its codes, computed for a whole text at
once with numpy. The index is a sorted array of the items' n-gram hashes with the first item each
came from (12 bytes an n-gram: the six leaderboard benchmarks at n = 13 take about 60 MB). A word
that no item contains cannot be part of a match, so windows holding one are skipped before the
lookup. Decontamination and the leakage audit's clean-subset view both look text up here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from hare.core.text import WordCodes, match_words, rolling_hashes

FILTER_BITS = 27  # a 16 MB bit filter in front of the sorted array: most lookups end there


@dataclass
class EvalText:
    """One item that training text must not overlap: a held-out document or a benchmark item."""

    source: str  # "heldout" or a benchmark name
    id: str
    text: str


class NgramIndex:
    """Hashed n-grams of evaluation items: a sorted hash array and the first item of each n-gram.

    Lookups first test a bit filter addressed by the top bits of the hash (about 2 % false
    positives at 2.5M n-grams), so the binary search runs only for the few likely hits.
    """

    def __init__(self, n: int):
        self.n = n
        self.codes = WordCodes()
        self.items: list[EvalText] = []
        self.indexed: Counter[str] = Counter()
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.first_item = np.zeros(0, dtype=np.int32)
        self.filter = np.zeros(1 << (FILTER_BITS - 3), dtype=np.uint8)

    def add(self, item: EvalText) -> None:
        ws = match_words(item.text)
        if len(ws) < self.n:
            return
        k = len(self.items)
        self.items.append(item)
        self.indexed[item.source] += 1
        h = np.unique(rolling_hashes(self.codes.encode(ws), self.n))
        self._parts.append((h, np.full(len(h), k, dtype=np.int32)))

    def finalize(self) -> "NgramIndex":
        """Sort the n-grams; keep, for each, the first item it came from."""
        if self._parts:
            h = np.concatenate([p[0] for p in self._parts] + [self.hashes])
            it = np.concatenate([p[1] for p in self._parts] + [self.first_item])
            order = np.lexsort((it, h))
            h, it = h[order], it[order]
            keep = np.ones(len(h), dtype=bool)
            keep[1:] = h[1:] != h[:-1]
            self.hashes, self.first_item = h[keep], it[keep]
            self._parts = []
            slot = self.hashes >> np.uint64(64 - FILTER_BITS)
            np.bitwise_or.at(self.filter, (slot >> np.uint64(3)).astype(np.int64),
                             (np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8)))
        return self

    def __len__(self) -> int:
        return len(self.hashes)

    def lookup(self, ws: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(word positions, hashes) of the n-grams of the words ``ws`` that are in the index."""
        n = self.n
        if len(ws) < n or not len(self.hashes):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        codes = self.codes.known(ws)
        unknown = np.concatenate(([0], np.cumsum(codes == 0)))
        ok = (unknown[n:] - unknown[:-n]) == 0  # windows made only of words the index knows
        if not ok.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        h = rolling_hashes(codes, n)
        slot = h >> np.uint64(64 - FILTER_BITS)
        maybe = (self.filter[(slot >> np.uint64(3)).astype(np.int64)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1
        pos = np.flatnonzero(ok & maybe.astype(bool))
        h = h[pos]
        at = np.searchsorted(self.hashes, h)
        at[at == len(self.hashes)] = 0
        hit = self.hashes[at] == h
        return pos[hit], h[hit]

    def item_of(self, h: int) -> EvalText:
        return self.items[int(self.first_item[np.searchsorted(self.hashes, np.uint64(h))])]
