"""n-gram decontamination of the training documents against held-out documents and benchmark items.

Text is normalized before n-grams are taken: lowercased, split into runs of letters and digits, so
case, punctuation and spacing changes do not hide an overlap. Every n-gram of every evaluation item
goes into an index (hashed n-gram -> the items it came from). A training document's overlap rate
is the share of its n-grams found in the index, after n-grams that occur in more than
``max_ngram_doc_frequency`` training documents are ignored as ordinary English (the GPT-3 and NeMo
Curator cutoff). Policies: ``drop`` removes a document whose rate exceeds ``threshold`` (the paper:
50 %); ``cut`` removes each matching span with ``cut_margin`` characters on both sides (GPT-3).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from hare.corpus.document import Document, ShardWriter, read_shards
from hare.evals.benchmarks import BenchmarkMissing, load_benchmark
from hare.io import write_json, write_jsonl
from hare.progress import progress
from hare.recipe import DecontamConfig

log = logging.getLogger("hare.corpus.decontam")

WORD_RE = re.compile(r"[^\W_]+")
MAX_REFS = 4  # items remembered per n-gram: enough to show examples, bounded memory


def words_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Normalized words (lowercase letters and digits) and their character spans in ``text``."""
    words, spans = [], []
    for m in WORD_RE.finditer(text):
        words.append(m.group().lower())
        spans.append(m.span())
    return words, spans


def ngram_hashes(words: list[str], n: int) -> list[int]:
    return [hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1)]


@dataclass
class EvalText:
    """One item that training text must not overlap: a held-out document or a benchmark item."""

    source: str  # "heldout" or a benchmark name
    id: str
    text: str


class NgramIndex:
    """Hashed n-grams of evaluation items, each pointing at (up to MAX_REFS) items it came from."""

    def __init__(self, n: int):
        self.n = n
        self.refs: dict[int, list[int]] = {}
        self.items: list[EvalText] = []
        self.indexed: Counter[str] = Counter()

    def add(self, item: EvalText) -> None:
        words, _ = words_with_spans(item.text)
        hashes = ngram_hashes(words, self.n)
        if not hashes:
            return
        k = len(self.items)
        self.items.append(item)
        self.indexed[item.source] += 1
        for h in set(hashes):
            refs = self.refs.setdefault(h, [])
            if len(refs) < MAX_REFS:
                refs.append(k)

    def __len__(self) -> int:
        return len(self.refs)


def eval_texts(cfg: DecontamConfig, heldout_dir: Path | None) -> tuple[list[EvalText], dict[str, str]]:
    """The held-out documents and every benchmark item found; also the benchmarks that were missing."""
    out: list[EvalText] = []
    missing: dict[str, str] = {}
    if cfg.heldout and heldout_dir is not None:
        out.extend(EvalText("heldout", d.id, d.text) for d in read_shards(heldout_dir))
    if cfg.benchmarks_dir:
        for name in cfg.benchmarks:
            try:
                items = load_benchmark(name, cfg.benchmarks_dir)
            except BenchmarkMissing as e:
                missing[name] = f"no file found; expected {e}"
                log.warning("benchmark %s: no file found, expected %s", name, e)
                continue
            out.extend(EvalText(name, f"{it.split}/{it.id}", it.text()) for it in items)
            log.info("benchmark %s: %d items", name, len(items))
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
        self.index = index
        self.cfg = cfg
        self.min_words_after_cut = min_words_after_cut
        self.doc_freq: Counter[int] = Counter()

    def matches(self, doc: Document) -> list[tuple[int, int]]:
        """(word position, n-gram hash) of every n-gram of ``doc`` present in the index."""
        words, _ = words_with_spans(doc.text)
        return [(i, h) for i, h in enumerate(ngram_hashes(words, self.index.n)) if h in self.index.refs]

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
        items = sorted({k for _, h in live for k in self.index.refs[h]})
        rec = {"id": doc.id, "source": doc.source, "rate": round(rate, 4), "ngrams": len(live),
               "items": [{"source": self.index.items[k].source, "id": self.index.items[k].id} for k in items[:20]]}
        # The example shown to people is the longest run of consecutive matching n-grams.
        best = cur = (live[0][0], live[0][0], live[0][1])
        for (i, h), (j, _) in zip(live[1:], live):
            cur = (cur[0], i, cur[2]) if i == j + 1 else (i, i, h)
            if cur[1] - cur[0] > best[1] - best[0]:
                best = cur
        a, b, h = best
        item = self.index.items[self.index.refs[h][0]]
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
    index = NgramIndex(cfg.ngram)
    for it in progress(items, desc="index evaluation n-grams", total=len(items), unit="item"):
        index.add(it)
    log.info("index: %d distinct %d-grams from %d items", len(index), cfg.ngram, len(index.items))
    dec = Decontaminator(index, cfg, min_words_after_cut=r.corpus.clean.min_words)

    matched: dict[int, list[tuple[int, int]]] = {}  # by position in the corpus stream
    n_docs = 0
    for k, doc in enumerate(progress(read_shards(corpus / "train"), desc="find overlaps", unit="doc")):
        n_docs += 1
        m = dec.matches(doc)
        if m:
            matched[k] = m
            dec.count(m)

    actions: Counter[str] = Counter()
    per_source: dict[str, Counter] = defaultdict(Counter)
    found_items: dict[str, set[str]] = defaultdict(set)
    records = []
    chars_in = chars_out = 0
    with ShardWriter(ctx.out / "train", r.corpus.shard_docs) as train, \
            ShardWriter(ctx.out / "removed", r.corpus.shard_docs, prefix="removed") as removed:
        for k, doc in enumerate(progress(read_shards(corpus / "train"), desc="decontaminate", total=n_docs,
                                         unit="doc")):
            chars_in += len(doc.text)
            kept, rec = dec.decide(doc, matched.get(k, []))
            if rec is not None:
                records.append(rec)
                actions[rec["action"]] += 1
                for it in rec["items"]:
                    found_items[it["source"]].add(it["id"])
                for src in {it["source"] for it in rec["items"]}:
                    per_source[src][rec["action"]] += 1
            if kept is None:
                removed.write({**doc.to_record(), "reason": f"decontam_{rec['action']}"})
                continue
            chars_out += len(kept.text)
            train.write(kept)
    write_jsonl(ctx.out / "matches.jsonl", records)
    benchmarks = {}
    for src, n in sorted(index.indexed.items()):
        benchmarks[src] = {"items_indexed": n, "items_found": len(found_items.get(src, ())),
                           **dict(per_source.get(src, {}))}
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
        "index_ngrams": len(index),
        "ignored_common_ngrams": sum(1 for c in dec.doc_freq.values()
                                     if cfg.max_ngram_doc_frequency and c > cfg.max_ngram_doc_frequency),
        "benchmarks": benchmarks,
        "missing_benchmarks": missing,
    }
    write_json(ctx.out / "stats.json", summary)
    log.info("decontam: %d docs in, %d dropped, %d cut; chars %d -> %d", n_docs, removed.docs,
             actions.get("cut", 0), chars_in, chars_out)
    return {k: v for k, v in summary.items() if k not in ("benchmarks", "missing_benchmarks")}
