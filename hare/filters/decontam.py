"""Decontamination (the decontam step's work): remove training text that overlaps held-out documents
and benchmark items.

Text is normalized before n-grams are taken (``hare.core.text.match_words``: runs of letters and
digits of the match form, with format characters removed, NFKC, case folding and accents dropped;
the same function for items and documents, whose word spans map back to the original text), so
case, punctuation, spacing and Unicode encoding do not hide an overlap; the n-grams of every
evaluation item, and items shorter than n words whole, go into a ``hare.core.ngrams.NgramIndex``.

A training document's overlap rate is the share of its n-grams found in the index, after n-grams
that occur in more than ``max_ngram_doc_frequency`` training documents are ignored as ordinary
text (the GPT-3 and NeMo Curator cutoff). The cutoff never applies in a document that holds an
item's whole text (every n-gram of the item): an item quoted on many pages is still removed from
each. Policies: ``drop`` removes a document whose rate exceeds ``threshold`` (the paper: 50 %);
``cut`` removes each matching span with ``cut_margin`` characters on both sides (GPT-3, appendix C).

Outputs: train/ (the decontaminated documents), removed/, matches.jsonl (per affected document: the
overlap rate, the items it matches, the longest matching passage beside the item; then one record
per benchmark n-gram the cutoff ignored, with its words, its item and its document count) and
stats.json.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator

from hare.core.evalsets import BenchmarkMissing, load_benchmark, load_custom
from hare.core.documents import Document, ShardWriter, read_shards
from hare.core.io import read_jsonl, write_jsonl
from hare.core.ngrams import EvalText, NgramIndex
from hare.core.progress import progress
from hare.core.text import MATCH_WORD_RE, words_with_spans
from hare.filters.config import DecontamConfig
from hare.filters.stats import BenchmarkOverlap, DecontamStats

log = logging.getLogger("hare.filters.decontam")


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
            log.debug("benchmark %s: no file found, expected %s", name, e)
            continue
        out.extend(EvalText(name, f"{it.split}/{it.id}", it.text()) for it in items)
        log.info("benchmark %s: %d items", name, len(items))
    if missing:
        log.warning("benchmarks found nowhere, so not decontaminated against: %s (%s; the paths each was looked "
                    "for at are in stats.json and the report)", ", ".join(missing),
                    f"in {cfg.benchmarks_dir} and the hub cache" if cfg.benchmarks_dir else
                    "decontam.benchmarks_dir is not set; the hub cache was searched")
    for cb in cfg.custom_benchmarks:
        items = load_custom(cb)
        out.extend(EvalText(cb.name, f"{it.split}/{it.id}", it.text()) for it in items)
        log.info("benchmark %s (custom): %d items", cb.name, len(items))
    return out, missing


SCAN_BATCH_CHARS = 1 << 21  # documents scanned together: enough to amortize numpy's calls, bounded memory


def scan_batches(docs: Iterable[Document], max_chars: int = SCAN_BATCH_CHARS) -> Iterator[list[Document]]:
    """The documents in order, in lists of about ``max_chars`` characters (a longer document alone)."""
    batch: list[Document] = []
    size = 0
    for doc in docs:
        if batch and size + len(doc.text) > max_chars:
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += len(doc.text)
    if batch:
        yield batch


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

    def __init__(self, index: NgramIndex, policy: str = "drop", threshold: float = 0.5, cut_margin: int = 200,
                 min_document_ngrams: int = 1, max_ngram_doc_frequency: int | None = 10,
                 min_words_after_cut: int = 1):
        self.index = index.finalize()
        self.policy, self.threshold, self.cut_margin = policy, threshold, cut_margin
        self.min_document_ngrams = min_document_ngrams
        self.max_ngram_doc_frequency = max_ngram_doc_frequency
        self.min_words_after_cut = min_words_after_cut
        self.doc_freq: Counter[int] = Counter()

    @classmethod
    def from_config(cls, index: NgramIndex, cfg: DecontamConfig, min_words_after_cut: int = 1) -> "Decontaminator":
        return cls(index, cfg.policy, cfg.threshold, cfg.cut_margin, cfg.min_document_ngrams,
                   cfg.max_ngram_doc_frequency, min_words_after_cut)

    def matches(self, doc: Document) -> list[tuple[int, int]]:
        """(word position, n-gram hash) of every n-gram of ``doc`` present in the index."""
        pos, h = self.index.lookup_text(doc.text)
        return list(zip(pos.tolist(), h.tolist()))

    def matches_many(self, docs: list[Document]) -> list[list[tuple[int, int]]]:
        """``matches`` of each document, all looked up in one pass (``NgramIndex.lookup_texts``)."""
        return [list(zip(pos.tolist(), h.tolist())) if len(pos) else []
                for pos, h in self.index.lookup_texts([d.text for d in docs])]

    def count(self, matched: list[tuple[int, int]]) -> None:
        """First pass: how many training documents contain each matched n-gram."""
        self.doc_freq.update({h for _, h in matched})

    def whole_items(self, matched: list[tuple[int, int]]) -> set[int]:
        """Items whose every n-gram (those the index attributes to them) is among ``matched``."""
        per: dict[int, set[int]] = defaultdict(set)
        for _, h in matched:
            per[self.index.item_index(h)].add(h)
        return {k for k, hs in per.items() if len(hs) >= self.index.item_ngrams[k] > 0}

    def decide(self, doc: Document, matched: list[tuple[int, int]]) -> tuple[Document | None, dict | None]:
        """Second pass: (the document to keep or None, a record of what matched and what was done)."""
        cut = self.max_ngram_doc_frequency
        self.index.prefetch([h for _, h in matched])
        live = [(i, h) for i, h in matched if cut is None or self.doc_freq[h] <= cut]
        if len(live) < len(matched):  # the cutoff never hides an item found whole in this document
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
        width = {h: self.index.window(h) for _, h in live}  # n, or a short item's length
        items = {}
        for _, h in live:
            it = self.index.item_of(h)
            items.setdefault((it.source, it.id), None)
        rec = {"id": doc.id, "source": doc.source, "rate": round(rate, 4), "ngrams": len(live),
               "items": [{"source": s, "id": i} for s, i in list(items)[:20]]}
        if len(live) < len(matched):
            rec["ignored_common_ngrams"] = len(matched) - len(live)
        rescued = sorted({h for _, h in live if cut is not None and self.doc_freq[h] > cut})
        if rescued:  # common n-grams counted because their item is whole here (taken out of the record later)
            rec["_whole_hashes"] = rescued
        # The example shown to people is the longest run of consecutive matching n-grams.
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


def ignored_ngrams(indexes: dict[int, NgramIndex], by_n: dict[int, Counter], cutoff: int | None,
                   records: list[dict]) -> list[dict]:
    """One record per evaluation n-gram that the frequency cutoff ignored: its words, the first item
    holding it, how many items hold it, in how many training documents it occurs, and in how many of
    those it was counted anyway because its item was found whole; most frequent first."""
    if cutoff is None:
        return []
    whole_docs: Counter = Counter()
    for rec in records:
        for h in rec.get("_whole_hashes", ()):
            whole_docs[h] += 1
        rec.pop("_whole_hashes", None)
    out = []
    for n, freq in by_n.items():
        index = indexes[n]
        for h, docs in freq.items():
            if docs <= cutoff:
                continue
            item = index.item_of(h)
            out.append({"kind": "ignored_ngram", "action": "ignored_common_ngram", "ngram": index.window_text(h),
                        "n": index.window(h), "item_source": item.source, "item_id": item.id,
                        "items_holding": index.items_holding(h), "documents": docs,
                        "documents_where_item_found_whole": whole_docs.get(h, 0)})
    out.sort(key=lambda r: (-r["documents"], r["item_source"], r["item_id"], r["ngram"]))
    return out


def decontaminate(corpus_dir: Path, out: Path, cfg: DecontamConfig, sources: list[str], min_words_after_cut: int,
                  shard_docs: int) -> DecontamStats:
    """Decontaminate the documents of ``corpus_dir/train`` against ``corpus_dir/heldout`` (with
    ``cfg.heldout``) and the evaluation sets ``cfg`` names, each source with its part's settings;
    writes ``out/train``, ``out/removed`` and ``out/matches.jsonl`` (the module docstring)."""
    items, missing = eval_texts(cfg, corpus_dir / "heldout")
    per_source = {name: cfg.for_source(name) for name in sources}
    indexes = build_indexes(items, sorted({p.ngram for p in per_source.values()}), cfg.min_item_words)
    decs = {name: Decontaminator.from_config(indexes[p.ngram], p, min_words_after_cut=min_words_after_cut)
            for name, p in per_source.items()}

    matched: dict[int, list[tuple[int, int]]] = {}  # by position in the corpus stream
    n_docs = 0
    for batch in scan_batches(progress(read_shards(corpus_dir / "train"), desc="find overlaps", unit="doc")):
        by_source: dict[str, list[int]] = defaultdict(list)
        for k, doc in enumerate(batch, start=n_docs):
            by_source[doc.source].append(k)
        for source, ks in by_source.items():
            dec = decs[source]
            for k, m in zip(ks, dec.matches_many([batch[k - n_docs] for k in ks])):
                if m:
                    matched[k] = m
                    dec.count(m)
        n_docs += len(batch)
    # Document frequencies are counted across all sources that share an index.
    by_n: dict[int, Counter] = defaultdict(Counter)
    for dec in decs.values():
        by_n[dec.index.n].update(dec.doc_freq)
    for dec in decs.values():
        dec.doc_freq = by_n[dec.index.n]

    t = _Tally()
    with ShardWriter(out / "train", shard_docs) as train, \
            ShardWriter(out / "removed", shard_docs, prefix="removed") as removed:
        for k, doc in enumerate(progress(read_shards(corpus_dir / "train"), desc="decontaminate", total=n_docs,
                                         unit="doc")):
            t.chars_in += len(doc.text)
            kept, rec = decs[doc.source].decide(doc, matched.get(k, []))
            if rec is not None:
                t.add(rec)
            if kept is None:
                removed.write({**doc.to_record(), "reason": f"decontam_{rec['action']}"})
                continue
            t.chars_out += len(kept.text)
            train.write(kept)
    cutoff = cfg.max_ngram_doc_frequency
    ignored = ignored_ngrams(indexes, by_n, cutoff, t.records)
    write_jsonl(out / "matches.jsonl", t.records + ignored)
    any_index = indexes[cfg.ngram] if cfg.ngram in indexes else next(iter(indexes.values()))
    log.info("decontam: %d docs in, %d dropped, %d cut; chars %d -> %d", n_docs, removed.docs,
             t.actions.get("cut", 0), t.chars_in, t.chars_out)
    return DecontamStats(
        docs_in=n_docs, docs_out=train.docs, docs_dropped=removed.docs, docs_cut=t.actions.get("cut", 0),
        chars_in=t.chars_in, chars_out=t.chars_out, actions=dict(t.actions), ngram=cfg.ngram, policy=cfg.policy,
        parts={k: v.model_dump(exclude_none=True) for k, v in cfg.parts.items()},
        index_ngrams=sum(len(i) for i in indexes.values()),
        index_filter_fill=round(any_index.filter_fill(), 4),
        short_items_indexed=any_index.short_items,
        ignored_common_ngrams=sum(1 for n in by_n[cfg.ngram].values() if cutoff and n > cutoff),
        ignored_benchmark_ngrams=[{k: r[k] for k in ("ngram", "item_source", "item_id", "items_holding",
                                                     "documents", "documents_where_item_found_whole")}
                                  for r in ignored[:50]],
        benchmarks={src: BenchmarkOverlap(items_indexed=n, items_found=len(t.found_items.get(src, ())),
                                          documents=dict(t.per_bench.get(src, {})))
                    for src, n in sorted(any_index.indexed.items())},
        missing_benchmarks=missing)


def build_indexes(items: list[EvalText], ns: list[int], min_item_words: int) -> dict[int, NgramIndex]:
    """One n-gram index of the evaluation items per n in use (parts may ask for a shorter n, e.g.
    for short task samples)."""
    indexes: dict[int, NgramIndex] = {}
    for n in ns:
        index = NgramIndex(n, min_item_words)
        for it in progress(items, desc=f"index {n}-grams", total=len(items), unit="item"):
            index.add(it)
        indexes[n] = index.finalize()
        log.info("index: %d distinct %d-grams from %d items", len(index), n, len(index.items))
    return indexes


class _Tally:
    """What the decisions did: actions, affected documents per evaluation set, items found, records."""

    def __init__(self) -> None:
        self.actions: Counter[str] = Counter()
        self.per_bench: dict[str, Counter] = defaultdict(Counter)
        self.found_items: dict[str, set[str]] = defaultdict(set)
        self.records: list[dict] = []
        self.chars_in = self.chars_out = 0

    def add(self, rec: dict) -> None:
        self.records.append(rec)
        self.actions[rec["action"]] += 1
        for it in rec["items"]:
            self.found_items[it["source"]].add(it["id"])
        for src in {it["source"] for it in rec["items"]}:
            self.per_bench[src][rec["action"]] += 1


def overlap_examples(folder: Path) -> dict[str, list[dict]]:
    """The longest overlaps of a decontamination's ``matches.jsonl``, at most three per evaluation set."""
    path = folder / "matches.jsonl"
    acted = [m for m in read_jsonl(path) if m["action"] in ("dropped", "cut", "dropped_after_cut")] \
        if path.exists() else []
    by_source: dict[str, list[dict]] = {}
    for m in sorted(acted, key=lambda m: -m["example"].get("matched_words", 0)):
        group = by_source.setdefault(m["example"]["item_source"], [])
        if len(group) < 3:
            group.append(m)
    return by_source
