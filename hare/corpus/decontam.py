"""n-gram decontamination of the training documents against held-out documents and benchmark items.

Text is normalized before n-grams are taken: lowercased and split into runs of letters and digits,
so case, punctuation and spacing changes do not hide an overlap. Each word of the evaluation items
gets a stable 64-bit code; an n-gram is a polynomial rolling hash of its word codes, computed for a
whole document at once with numpy. The index is a sorted array of the evaluation n-gram hashes with
the first item each came from (12 bytes an n-gram: the six leaderboard benchmarks at n = 13 take
about 60 MB). A word that no evaluation item contains cannot be part of a match, so windows that
hold one are skipped before the lookup.

A training document's overlap rate is the share of its n-grams found in the index, after n-grams
that occur in more than ``max_ngram_doc_frequency`` training documents are ignored as ordinary
text (the GPT-3 and NeMo Curator cutoff). Policies: ``drop`` removes a document whose rate exceeds
``threshold`` (the paper: 50 %); ``cut`` removes each matching span with ``cut_margin`` characters
on both sides (GPT-3, appendix C).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hare.corpus.document import Document, ShardWriter, read_shards
from hare.evals.benchmarks import BenchmarkMissing, CustomBenchmark, load_benchmark, load_custom
from hare.io import write_json, write_jsonl
from hare.progress import progress
from hare.recipe import DecontamConfig

log = logging.getLogger("hare.corpus.decontam")

WORD_RE = re.compile(r"[^\W_]+")
_PRIME = np.uint64(1099511628211)  # FNV-1a's 64-bit prime: odd, so the rolling hash mixes every position


def words_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Normalized words (lowercase letters and digits) and their character spans in ``text``."""
    words, spans = [], []
    for m in WORD_RE.finditer(text):
        words.append(m.group().lower())
        spans.append(m.span())
    return words, spans


def normalized_words(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())


def word_code(word: str) -> int:
    """A stable, nonzero 64-bit code for a word (the same in every process and run)."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little") | 1


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


@dataclass
class EvalText:
    """One item that training text must not overlap: a held-out document or a benchmark item."""

    source: str  # "heldout" or a benchmark name
    id: str
    text: str


class _Codes(dict):
    """Word -> code; a word the index has never seen reads as 0 (without being added)."""

    def __missing__(self, key: str) -> int:
        return 0


FILTER_BITS = 27  # a 16 MB bit filter in front of the sorted array: most lookups end there


class NgramIndex:
    """Hashed n-grams of evaluation items: a sorted hash array and the first item of each n-gram.

    Lookups first test a bit filter addressed by the top bits of the hash (about 2 % false
    positives at 2.5M n-grams), so the binary search runs only for the few likely hits.
    """

    def __init__(self, n: int):
        self.n = n
        self.codes: _Codes = _Codes()
        self.items: list[EvalText] = []
        self.indexed: Counter[str] = Counter()
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.first_item = np.zeros(0, dtype=np.int32)
        self.filter = np.zeros(1 << (FILTER_BITS - 3), dtype=np.uint8)

    def _code(self, w: str) -> int:
        c = self.codes[w]
        if c == 0:
            c = self.codes[w] = word_code(w)
        return c

    def add(self, item: EvalText) -> None:
        words = normalized_words(item.text)
        if len(words) < self.n:
            return
        k = len(self.items)
        self.items.append(item)
        self.indexed[item.source] += 1
        h = np.unique(rolling_hashes(np.fromiter((self._code(w) for w in words), np.uint64, len(words)), self.n))
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

    def lookup(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(word positions, hashes) of the n-grams of ``words`` that are in the index."""
        n = self.n
        if len(words) < n or not len(self.hashes):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        codes = np.fromiter(map(self.codes.__getitem__, words), np.uint64, len(words))
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


def eval_texts(cfg: DecontamConfig, heldout_dir: Path | None) -> tuple[list[EvalText], dict[str, str]]:
    """The held-out documents and every benchmark item found; also the benchmarks found nowhere."""
    out: list[EvalText] = []
    missing: dict[str, str] = {}
    if cfg.heldout and heldout_dir is not None:
        out.extend(EvalText("heldout", d.id, d.text) for d in read_shards(heldout_dir))
    for name in cfg.benchmarks:
        try:
            items = load_benchmark(name, cfg.benchmarks_dir)
        except BenchmarkMissing as e:
            missing[name] = f"no file found; expected {e}"
            log.warning("benchmark %s: no file found, expected %s", name, e)
            continue
        out.extend(EvalText(name, f"{it.split}/{it.id}", it.text()) for it in items)
        log.info("benchmark %s: %d items", name, len(items))
    for cb in cfg.custom_benchmarks:
        items = load_custom(CustomBenchmark(**cb.model_dump()))
        out.extend(EvalText(cb.name, f"{it.split}/{it.id}", it.text()) for it in items)
        log.info("benchmark %s (custom): %d items", cb.name, len(items))
    return out, missing


def cut_spans(text: str, spans: list[tuple[int, int]], margin: int) -> tuple[str, int]:
    """Remove the character spans (widened by ``margin``) from ``text``; returns (text, chars removed)."""
    merged: list[list[int]] = []
    for a, b in sorted((max(0, a - margin), min(len(text), b + margin)) for a, b in spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    pieces, pos = [], 0
    for a, b in merged:
        pieces.append(text[pos:a])
        pos = b
    pieces.append(text[pos:])
    kept = "\n".join(p.strip() for p in pieces if p.strip())
    return kept, sum(b - a for a, b in merged)


class Decontaminator:
    """Finds and removes overlap between training documents and an ``NgramIndex``."""

    def __init__(self, index: NgramIndex, cfg: DecontamConfig, min_words_after_cut: int = 1):
        self.index = index.finalize()
        self.cfg = cfg
        self.min_words_after_cut = min_words_after_cut
        self.doc_freq: Counter[int] = Counter()

    def matches(self, doc: Document) -> list[tuple[int, int]]:
        """(word position, n-gram hash) of every n-gram of ``doc`` present in the index."""
        pos, h = self.index.lookup(normalized_words(doc.text))
        return list(zip(pos.tolist(), h.tolist()))

    def count(self, matched: list[tuple[int, int]]) -> None:
        """First pass: how many training documents contain each matched n-gram."""
        self.doc_freq.update({h for _, h in matched})

    def decide(self, doc: Document, matched: list[tuple[int, int]]) -> tuple[Document | None, dict | None]:
        """Second pass: (the document to keep or None, a record of what matched and what was done)."""
        cut = self.cfg.max_ngram_doc_frequency
        live = [(i, h) for i, h in matched if cut is None or self.doc_freq[h] <= cut]
        if not live:
            return doc, None
        words, spans = words_with_spans(doc.text)
        n = self.index.n
        total = max(1, len(words) - n + 1)
        rate = len(live) / total
        items = {}
        for _, h in live:
            it = self.index.item_of(h)
            items.setdefault((it.source, it.id), None)
        rec = {"id": doc.id, "source": doc.source, "rate": round(rate, 4), "ngrams": len(live),
               "items": [{"source": s, "id": i} for s, i in list(items)[:20]]}
        # The example shown to people is the longest run of consecutive matching n-grams.
        best = cur = (live[0][0], live[0][0], live[0][1])
        for (i, h), (j, _) in zip(live[1:], live):
            cur = (cur[0], i, cur[2]) if i == j + 1 else (i, i, h)
            if cur[1] - cur[0] > best[1] - best[0]:
                best = cur
        a, b, h = best
        item = self.index.item_of(h)
        rec["example"] = {"corpus": doc.text[spans[a][0]: spans[min(b + n, len(spans)) - 1][1]][:600],
                          "item": item.text[:600], "item_source": item.source, "item_id": item.id,
                          "matched_words": b - a + n}
        if total < self.cfg.min_document_ngrams:
            rec["action"] = "kept_short"
            return doc, rec
        if self.cfg.policy == "drop":
            if rate > self.cfg.threshold:
                rec["action"] = "dropped"
                return None, rec
            rec["action"] = "kept_below_threshold"
            return doc, rec
        char_spans = [(spans[i][0], spans[i + n - 1][1]) for i, _ in live]
        text, removed = cut_spans(doc.text, char_spans, self.cfg.cut_margin)
        rec["chars_cut"] = removed
        if len(WORD_RE.findall(text)) < self.min_words_after_cut:
            rec["action"] = "dropped_after_cut"
            return None, rec
        rec["action"] = "cut"
        return Document(text, doc.id, doc.source, doc.metadata), rec


def run_decontam(ctx) -> dict:
    r = ctx.recipe
    cfg = r.decontam
    corpus = ctx.deps["corpus"]
    items, missing = eval_texts(cfg, corpus / "heldout")
    # One index per n in use (parts may ask for a shorter n, e.g. for short task samples).
    per_source = {s.name: cfg.for_source(s.name) for s in r.sources}
    indexes: dict[int, NgramIndex] = {}
    for n in sorted({c.ngram for c in per_source.values()}):
        index = NgramIndex(n)
        for it in progress(items, desc=f"index {n}-grams", total=len(items), unit="item"):
            index.add(it)
        indexes[n] = index.finalize()
        log.info("index: %d distinct %d-grams from %d items", len(index), n, len(index.items))
    min_words = r.corpus.clean.min_words
    decs = {name: Decontaminator(indexes[c.ngram], c, min_words_after_cut=min_words) for name, c in per_source.items()}

    matched: dict[int, list[tuple[int, int]]] = {}  # by position in the corpus stream
    n_docs = 0
    for k, doc in enumerate(progress(read_shards(corpus / "train"), desc="find overlaps", unit="doc")):
        n_docs += 1
        dec = decs[doc.source]
        m = dec.matches(doc)
        if m:
            matched[k] = m
            dec.count(m)
    # Document frequencies are counted across all sources that share an index.
    by_n: dict[int, Counter] = defaultdict(Counter)
    for name, dec in decs.items():
        by_n[dec.index.n].update(dec.doc_freq)
    for dec in decs.values():
        dec.doc_freq = by_n[dec.index.n]

    actions: Counter[str] = Counter()
    per_bench: dict[str, Counter] = defaultdict(Counter)
    found_items: dict[str, set[str]] = defaultdict(set)
    records = []
    chars_in = chars_out = 0
    with ShardWriter(ctx.out / "train", r.corpus.shard_docs) as train, \
            ShardWriter(ctx.out / "removed", r.corpus.shard_docs, prefix="removed") as removed:
        for k, doc in enumerate(progress(read_shards(corpus / "train"), desc="decontaminate", total=n_docs,
                                         unit="doc")):
            chars_in += len(doc.text)
            kept, rec = decs[doc.source].decide(doc, matched.get(k, []))
            if rec is not None:
                records.append(rec)
                actions[rec["action"]] += 1
                for it in rec["items"]:
                    found_items[it["source"]].add(it["id"])
                for src in {it["source"] for it in rec["items"]}:
                    per_bench[src][rec["action"]] += 1
            if kept is None:
                removed.write({**doc.to_record(), "reason": f"decontam_{rec['action']}"})
                continue
            chars_out += len(kept.text)
            train.write(kept)
    write_jsonl(ctx.out / "matches.jsonl", records)
    benchmarks = {}
    any_index = next(iter(indexes.values()))
    for src, n in sorted(any_index.indexed.items()):
        benchmarks[src] = {"items_indexed": n, "items_found": len(found_items.get(src, ())),
                           **dict(per_bench.get(src, {}))}
    cutoff = cfg.max_ngram_doc_frequency
    summary = {
        "docs_in": n_docs,
        "docs_out": train.docs,
        "docs_dropped": removed.docs,
        "docs_cut": actions.get("cut", 0),
        "chars_in": chars_in,
        "chars_out": chars_out,
        "actions": dict(actions),
        "ngram": cfg.ngram,
        "policy": cfg.policy,
        "parts": {k: v.model_dump(exclude_none=True) for k, v in cfg.parts.items()},
        "index_ngrams": sum(len(i) for i in indexes.values()),
        "ignored_common_ngrams": sum(1 for c in by_n[cfg.ngram].values() if cutoff and c > cutoff),
        "benchmarks": benchmarks,
        "missing_benchmarks": missing,
    }
    write_json(ctx.out / "stats.json", summary)
    log.info("decontam: %d docs in, %d dropped, %d cut; chars %d -> %d", n_docs, removed.docs,
             actions.get("cut", 0), chars_in, chars_out)
    return {k: v for k, v in summary.items() if k not in ("benchmarks", "missing_benchmarks", "parts")}
