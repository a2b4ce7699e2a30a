"""The decontamination scan as it was before documents were scanned in batches, kept verbatim as the
reference the batched scan is checked against (tests/filters/test_decontam_parity.py): one document
at a time, its ASCII words hashed from prefix sums of the bytes, coded through a table slotted by the
hash's top bits, its windows hashed by ``n - 1`` multiply-adds. It reads the index built by hare
(``NgramIndex``: tables, bit filter, word codes) and only replaces the scan. Not used by hare."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from hare.core.documents import Document
from hare.core.ngrams import NgramIndex
from hare.core.text import MATCH_WORD_RE, match_form
from hare.filters.decontam import cut_spans

_PRIME = np.uint64(1099511628211)
_WORD_BYTE = np.zeros(256, dtype=bool)
for _lo, _hi in ((b"a", b"z"), (b"A", b"Z"), (b"0", b"9")):
    _WORD_BYTE[_lo[0]:_hi[0] + 1] = True
_BYTE_PRIME = 0x100000001B3
_powers = np.ones(1, dtype=np.uint64)
_inverse_powers = np.ones(1, dtype=np.uint64)


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _powers, _inverse_powers
    if len(_powers) < n:
        size = max(n, 2 * len(_powers))
        tables = []
        for base in (_BYTE_PRIME, pow(_BYTE_PRIME, -1, 1 << 64)):
            t = np.ones(size, dtype=np.uint64)
            with np.errstate(over="ignore"):
                np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=t[1:])
            tables.append(t)
        _powers, _inverse_powers = tables
    return _powers[:n], _inverse_powers[:n]


def ascii_word_hashes(form: str) -> np.ndarray:
    b = np.frombuffer(form.encode("ascii"), dtype=np.uint8)
    n = len(b)
    inside = np.zeros(n + 2, dtype=np.int8)
    inside[1:-1] = _WORD_BYTE[b]
    edges = np.diff(inside)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    powers, inverse = _power_tables(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum(b * powers[:n], out=prefix[1:])
        return (prefix[ends] - prefix[starts]) * inverse[starts]


def rolling_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    m = len(codes) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = codes[:m].copy()
    for k in range(1, n):
        h *= _PRIME
        h += codes[k:k + m]
    return h


def words_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    form, starts, ends = match_form(text, with_map=True)
    out, spans = [], []
    for m in MATCH_WORD_RE.finditer(form):
        out.append(m.group())
        spans.append((starts[m.start()], ends[m.end() - 1]))
    return out, spans


def find(table, h: np.ndarray) -> np.ndarray:
    if not len(table.hashes):
        return np.full(len(h), -1, dtype=np.int64)
    at = np.searchsorted(table.hashes, h)
    at[at == len(table.hashes)] = 0
    return np.where(table.hashes[at] == h, at, -1)


class _WordTable:
    def __init__(self, keys: np.ndarray, codes: np.ndarray, words: int):
        self.words = words
        self.bits = max(4, int(np.ceil(np.log2(max(1, len(keys)) * 8))))
        slot = (keys >> np.uint64(64 - self.bits)).astype(np.int64)
        self.keys = np.zeros(1 << self.bits, dtype=np.uint64)
        self.codes = np.zeros(1 << self.bits, dtype=np.uint64)
        self.keys[slot], self.codes[slot] = keys, codes
        self.shared = np.bincount(slot, minlength=1 << self.bits) > 1
        order = np.argsort(keys, kind="stable")
        self.sorted_keys, self.sorted_codes = keys[order], codes[order]

    def codes_of(self, h: np.ndarray) -> np.ndarray:
        slot = (h >> np.uint64(64 - self.bits)).astype(np.int64)
        out = np.where(self.keys[slot] == h, self.codes[slot], np.uint64(0))
        again = np.flatnonzero(self.shared[slot] & (out == 0))
        if len(again):
            at = np.minimum(np.searchsorted(self.sorted_keys, h[again]), len(self.sorted_keys) - 1)
            out[again] = np.where(self.sorted_keys[at] == h[again], self.sorted_codes[at], np.uint64(0))
        return out


class ReferenceScan:
    """``NgramIndex.lookup_text`` and ``lookup_codes`` as they were, over a finalized index."""

    def __init__(self, index: NgramIndex):
        self.index = index
        words = [w for w in index.codes.words() if w.isascii()]
        keys = ascii_word_hashes(" ".join(words)) if words else np.zeros(0, dtype=np.uint64)
        self.known = _WordTable(keys, index.codes.known(words), len(index.codes))

    def lookup_text(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        form = match_form(text)[0]
        if not form.isascii():
            return self.lookup_codes(self.index.codes.known(MATCH_WORD_RE.findall(form)))
        return self.lookup_codes(self.known.codes_of(ascii_word_hashes(form)))

    def lookup_codes(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = self.index
        if not len(index):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        unknown = np.concatenate(([0], np.cumsum(codes == 0)))
        pos_out, h_out = [], []
        for length, table in index.tables.items():
            if len(codes) < length or not len(table.hashes):
                continue
            ok = (unknown[length:] - unknown[:-length]) == 0
            if not ok.any():
                continue
            h = rolling_hashes(codes, length)
            if length == index.n:
                slot = h >> np.uint64(64 - index.filter_bits)
                maybe = (index.filter[(slot >> np.uint64(3)).astype(np.int64)]
                         >> (slot & np.uint64(7)).astype(np.uint8)) & 1
                ok &= maybe.astype(bool)
            pos = np.flatnonzero(ok)
            hit = find(table, h[pos]) >= 0
            pos_out.append(pos[hit])
            h_out.append(h[pos][hit])
        if not pos_out:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        pos, h = np.concatenate(pos_out), np.concatenate(h_out)
        order = np.argsort(pos, kind="stable")
        return pos[order], h[order]


class ReferenceDecontaminator:
    """``hare.filters.decontam.Decontaminator``'s scan and decisions as they were."""

    def __init__(self, index: NgramIndex, policy: str = "drop", threshold: float = 0.5, cut_margin: int = 200,
                 min_document_ngrams: int = 1, max_ngram_doc_frequency: int | None = 10,
                 min_words_after_cut: int = 1):
        self.index = index.finalize()
        self.scan = ReferenceScan(self.index)
        self.policy, self.threshold, self.cut_margin = policy, threshold, cut_margin
        self.min_document_ngrams = min_document_ngrams
        self.max_ngram_doc_frequency = max_ngram_doc_frequency
        self.min_words_after_cut = min_words_after_cut
        self.doc_freq: Counter[int] = Counter()

    def matches(self, doc: Document) -> list[tuple[int, int]]:
        pos, h = self.scan.lookup_text(doc.text)
        return list(zip(pos.tolist(), h.tolist()))

    def count(self, matched: list[tuple[int, int]]) -> None:
        self.doc_freq.update({h for _, h in matched})

    def whole_items(self, matched: list[tuple[int, int]]) -> set[int]:
        per: dict[int, set[int]] = defaultdict(set)
        for _, h in matched:
            per[self.index.item_index(h)].add(h)
        return {k for k, hs in per.items() if len(hs) >= self.index.item_ngrams[k] > 0}

    def decide(self, doc: Document, matched: list[tuple[int, int]]) -> tuple[Document | None, dict | None]:
        cut = self.max_ngram_doc_frequency
        self.index.prefetch([h for _, h in matched])
        live = [(i, h) for i, h in matched if cut is None or self.doc_freq[h] <= cut]
        if len(live) < len(matched):
            whole = self.whole_items(matched)
            if whole:
                live = [(i, h) for i, h in matched if cut is None or self.doc_freq[h] <= cut
                        or self.index.item_index(h) in whole]
        if not live:
            return doc, None
        words, spans = words_with_spans(doc.text)
        n = self.index.n
        total = max(1, len(words) - n + 1)
        rate = min(1.0, len(live) / total)
        width = {h: self.index.window(h) for _, h in live}
        items = {}
        for _, h in live:
            it = self.index.item_of(h)
            items.setdefault((it.source, it.id), None)
        rec = {"id": doc.id, "source": doc.source, "rate": round(rate, 4), "ngrams": len(live),
               "items": [{"source": s, "id": i} for s, i in list(items)[:20]]}
        if len(live) < len(matched):
            rec["ignored_common_ngrams"] = len(matched) - len(live)
        rescued = sorted({h for _, h in live if cut is not None and self.doc_freq[h] > cut})
        if rescued:
            rec["_whole_hashes"] = rescued
        best = cur = (live[0][0], live[0][0], live[0][1])
        for (i, h), (j, _) in zip(live[1:], live):
            cur = (cur[0], i, cur[2]) if i == j + 1 else (i, i, h)
            if cur[1] - cur[0] > best[1] - best[0]:
                best = cur
        a, b, h = best
        item = self.index.item_of(h)
        end = min(b + width[h], len(spans)) - 1
        rec["example"] = {"corpus": doc.text[spans[a][0]: spans[end][1]][:600],
                          "item": item.text[:600], "item_source": item.source, "item_id": item.id,
                          "matched_words": end - a + 1}
        if total < self.min_document_ngrams:
            rec["action"] = "kept_short"
            return doc, rec
        if self.policy == "drop":
            if rate > self.threshold:
                rec["action"] = "dropped"
                return None, rec
            rec["action"] = "kept_below_threshold"
            return doc, rec
        char_spans = [(spans[i][0], spans[min(i + width[h], len(spans)) - 1][1]) for i, h in live]
        text, removed = cut_spans(doc.text, char_spans, self.cut_margin)
        rec["chars_cut"] = removed
        if len(MATCH_WORD_RE.findall(text)) < self.min_words_after_cut:
            rec["action"] = "dropped_after_cut"
            return None, rec
        rec["action"] = "cut"
        return Document(text, doc.id, doc.source, doc.metadata), rec
