"""The corpus step: read every source, clean, deduplicate, hold out the evaluation slice.

Outputs (in the step folder):
  train/shard-*.jsonl.zst     documents kept for training (before decontamination)
  heldout/shard-*.jsonl.zst   the held-out evaluation documents
  removed/removed-*.jsonl.zst every removed document with its reason (a near-duplicate also names,
                              in its metadata, the document kept in its place)
  quarantine.jsonl            malformed input records: file, line, reason
  stats.json                  per source: documents and characters in, removed by reason, out
For every source: read = kept + held out + removed (by reason) + quarantined.

With ``dedup: minhash`` near-duplicates are found across all sources, so the step runs in three
passes: (1) read, clean and drop exact duplicates, writing the survivors to ``cleaned/`` and their
MinHash signatures to a spill folder; (2) cluster the signatures (``hare.corpus.minhash``); (3) read
``cleaned/`` again, remove every near-duplicate but the first of its cluster in read order, and split
the rest into train and held out. ``cleaned/`` and the spill folder are deleted when the step ends.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from hare.corpus.clean import Cleaner
from hare.corpus.document import Document, ShardWriter, read_shards
from hare.corpus.minhash import NearDuplicateIndex, normalize_for_dedup
from hare.corpus.quality import QualityScorer, histogram
from hare.corpus.read import Quarantine, read_source
from hare.io import write_json, write_jsonl
from hare.progress import progress

log = logging.getLogger("hare.corpus")


def text_hash(text: str, normalized: bool = False) -> bytes:
    return hashlib.blake2b((text if normalized else normalize_for_dedup(text)).encode(), digest_size=16).digest()


def heldout_draw(doc_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the document id and the seed: the held-out split is stable."""
    h = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def _remove(st: dict, removed: ShardWriter, rec: dict, reason: str) -> None:
    st["removed"][reason] += 1
    st["chars_removed"] += len(rec["text"])
    removed.write({**rec, "reason": reason})


def _reference_texts(r, limit: int) -> list[str]:
    """The quality reference: documents of the named sources, then of ``reference_path``."""
    from hare.corpus.read import expand_paths
    from hare.recipe import SourceConfig

    qc = r.corpus.quality
    out: list[str] = []
    srcs = [s for s in r.sources if s.name in qc.reference_sources]
    if qc.reference_path:
        p = Path(qc.reference_path)
        kind = "jsonl" if any(f.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".json"))
                              for f in expand_paths(str(p))) else "text"
        srcs.append(SourceConfig(name="quality-reference", kind=kind, path=str(p)))
    for s in srcs:
        for d in read_source(s, Quarantine(), r.corpus.max_line_bytes):
            out.append(d.text)
            if len(out) >= limit:
                return out
    return out


def train_quality_scorer(r, cleaner_cfg) -> tuple[QualityScorer, dict]:
    """Fit the scorer on the reference against the first documents of the other sources (cleaned)."""
    qc = r.corpus.quality
    reference = _reference_texts(r, qc.sample_docs)
    raw: list[str] = []
    per = max(1, qc.sample_docs // max(1, sum(s.name not in qc.reference_sources for s in r.sources)))
    for s in r.sources:
        if s.name in qc.reference_sources:
            continue
        n = 0
        cleaner = Cleaner(cleaner_cfg)
        for d in read_source(s, Quarantine(), r.corpus.max_line_bytes):
            if cleaner(d)[0]:
                raw.append(d.text)
                n += 1
                if n >= per:
                    break
    scorer = QualityScorer(seed=r.seed)
    info = scorer.fit(reference, raw)
    info["terms"] = scorer.explain(reference[:500] + raw[:500])
    return scorer, info


_WORKER: dict = {}


def _worker_state(clean_cfg, dedup: bool, scorer: QualityScorer | None) -> dict:
    return {"cleaner": Cleaner(clean_cfg), "dedup": dedup, "scorer": scorer}


def _init_worker(clean_cfg, dedup: bool, scorer: QualityScorer | None) -> None:
    _WORKER.update(_worker_state(clean_cfg, dedup, scorer))


def _clean_chunk(chunk: list[tuple], state: dict | None = None) -> tuple[list[tuple], dict[str, int]]:
    """Clean a chunk of documents and score the ones kept (one batch for the scorer); returns them,
    text rewritten, with verdicts, and the formatters' change counts for the chunk."""
    state = _WORKER if state is None else state
    cleaner: Cleaner = state["cleaner"]
    before = dict(cleaner.changes)
    out = []
    for text, doc_id, source, meta in chunk:
        doc = Document(text, doc_id, source, meta)
        ok, reason = cleaner(doc)
        norm = normalize_for_dedup(doc.text) if ok and state["dedup"] else None
        out.append([doc.text, doc_id, source, doc.metadata, len(text), ok, reason, norm, None])
    if state["scorer"] is not None:
        kept = [row for row in out if row[5]]
        for row, score in zip(kept, state["scorer"].score([row[0] for row in kept])):
            row[8] = float(score)
    return out, {k: v - before.get(k, 0) for k, v in cleaner.changes.items()}


def cleaned(docs, clean_cfg, dedup: bool, scorer: QualityScorer | None, procs: int, changes: Counter,
            chunk: int = 256):
    """(document, chars before cleaning, keep, reason, normalized text, quality score) for each of
    ``docs``, in order.

    Documents go through the rules in chunks: in this process, or with ``procs`` > 1 in a pool of
    worker processes while this process reads ahead. Deduplication stays with the caller, so the
    result is the same either way.
    """
    def chunks():
        it = iter(docs)
        while batch := list(itertools.islice(it, chunk)):
            yield [(d.text, d.id, d.source, d.metadata) for d in batch]

    def rows(results):
        for out, delta in results:
            changes.update(delta)
            for text, doc_id, source, meta, n, ok, reason, norm, score in out:
                yield Document(text, doc_id, source, meta), n, ok, reason, norm, score

    if procs <= 1:
        state = _worker_state(clean_cfg, dedup, scorer)
        yield from rows(_clean_chunk(c, state) for c in chunks())
        return
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(procs, initializer=_init_worker, initargs=(clean_cfg, dedup, scorer)) as pool:
        yield from rows(pool.imap(_clean_chunk, chunks()))


def _clean_pass(r, q: Quarantine, cleaner: Cleaner, stats: dict, removed: ShardWriter,
                keep: Callable[[Document, str | None], None], scorer: QualityScorer | None = None,
                changes: Counter | None = None) -> None:
    """Read and clean every source, drop exact duplicates and (with a scorer) documents outside the
    quality band; hand each survivor (and its normalized text, when dedup computed it) to ``keep``."""
    cfg = r.corpus
    qc = cfg.quality
    seen: set[bytes] = set()
    procs = cfg.num_proc or os.cpu_count() or 1
    changes = Counter() if changes is None else changes
    for src in r.sources:
        st = stats[src.name] = {"docs_in": 0, "chars_in": 0, "removed": Counter(), "chars_removed": 0,
                                "train": 0, "heldout": 0, "chars_out": 0}
        before, after = [], []
        stream = cleaned(read_source(src, q, cfg.max_line_bytes), cleaner.cfg, cfg.dedup != "none", scorer, procs,
                         changes)
        for doc, n_chars, ok, reason, norm, score in progress(stream, desc=f"clean {src.name}", unit="doc"):
            st["docs_in"] += 1
            st["chars_in"] += n_chars
            if ok and norm is not None:
                h = text_hash(norm, normalized=True)
                if h in seen:
                    ok, reason = False, "exact_duplicate"
                seen.add(h)
            if ok and score is not None:
                doc.metadata["quality"] = round(score, 4)
                before.append(score)
                if score < qc.min_score:
                    ok, reason = False, "quality_below_band"
                elif score > qc.max_score:
                    ok, reason = False, "quality_above_band"
                else:
                    after.append(score)
            if ok:
                keep(doc, norm)
            else:
                _remove(st, removed, doc.to_record(), reason)
        st["quarantined"] = q.counts.get(src.name, 0)
        if scorer is not None:
            st["quality"] = {"before": histogram(np.array(before)), "after": histogram(np.array(after)),
                             "mean_before": round(float(np.mean(before)), 4) if before else None,
                             "mean_after": round(float(np.mean(after)), 4) if after else None}


def _spill_folder(out: Path, spill_dir: str | None) -> Path:
    base = Path(spill_dir) if spill_dir else out
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".minhash-", dir=base))


def run_corpus(ctx) -> dict:
    r = ctx.recipe
    cfg = r.corpus
    q = Quarantine()
    cleaner = Cleaner(cfg.clean)
    stats: dict[str, dict] = {}
    shard = cfg.shard_docs
    near_stats = None
    scorer, quality_info = None, None
    changes: Counter = Counter()
    if cfg.quality.enabled:
        scorer, quality_info = train_quality_scorer(r, cfg.clean)
        scorer.save(ctx.out / "quality_scorer.pkl")
    with ShardWriter(ctx.out / "train", shard) as train, ShardWriter(ctx.out / "heldout", shard) as held, \
            ShardWriter(ctx.out / "removed", shard, prefix="removed") as removed:

        def split(doc: Document, norm: str | None = None) -> None:
            st = stats[doc.source]
            st["chars_out"] += len(doc.text)
            if heldout_draw(doc.id, r.seed) < cfg.heldout_fraction:
                st["heldout"] += 1
                held.write(doc)
            else:
                st["train"] += 1
                train.write(doc)

        if cfg.dedup != "minhash":
            _clean_pass(r, q, cleaner, stats, removed, split, scorer, changes)
        else:
            spill = _spill_folder(ctx.out, cfg.minhash.spill_dir)
            cleaned_dir = ctx.out / "cleaned"
            try:
                index = NearDuplicateIndex(cfg.minhash, spill)
                with ShardWriter(cleaned_dir, shard) as cleaned:
                    def keep(doc: Document, norm: str | None) -> None:
                        cleaned.write(doc)
                        index.add(norm, normalized=True)

                    _clean_pass(r, q, cleaner, stats, removed, keep, scorer, changes)
                if index.n != cleaned.docs:
                    raise RuntimeError(f"corpus: {cleaned.docs} cleaned documents but {index.n} signatures")
                near = index.find()
                near_stats = near.stats
                kept_ids: dict[int, str] = {}
                roots = set(near.kept[near.is_duplicate()].tolist())  # documents that others duplicate
                i = -1
                for i, doc in enumerate(progress(read_shards(cleaned_dir), desc="near-dedup", unit="doc")):
                    k = int(near.kept[i])
                    if k == i:
                        if i in roots:
                            kept_ids[i] = doc.id
                        split(doc)
                        continue
                    rec = doc.to_record()
                    # The kept document comes earlier in read order, so its id is already known.
                    rec["metadata"] = {**doc.metadata, "duplicate_of": kept_ids[k],
                                       "jaccard_estimate": round(float(near.jaccard[i]), 3)}
                    _remove(stats[doc.source], removed, rec, "near_duplicate")
                if i + 1 != index.n:
                    raise RuntimeError(f"corpus: cleaned/ holds {i + 1} documents, expected {index.n}")
            finally:
                shutil.rmtree(spill, ignore_errors=True)
                shutil.rmtree(cleaned_dir, ignore_errors=True)

    for src_name, st in stats.items():
        st["removed"] = dict(st["removed"].most_common())
        log.info("source %s: %d read, %d train, %d held out, %d removed, %d quarantined", src_name,
                 st["docs_in"], st["train"], st["heldout"], sum(st["removed"].values()), st["quarantined"])
    write_jsonl(ctx.out / "quarantine.jsonl", q.records)
    total_removed: Counter[str] = Counter()
    for st in stats.values():
        total_removed.update(st["removed"])
    summary = {
        "read": sum(s["docs_in"] for s in stats.values()) + len(q.records),
        "train": sum(s["train"] for s in stats.values()),
        "heldout": sum(s["heldout"] for s in stats.values()),
        "removed": sum(total_removed.values()),
        "quarantined": len(q.records),
        "removed_by_reason": dict(total_removed.most_common()),
        "formatter_changes": {f.name: changes.get(f.name, 0) for f in cleaner.formatters},
        "chars_in": sum(s["chars_in"] for s in stats.values()),
        "chars_out": sum(s["chars_out"] for s in stats.values()),
    }
    out = {"summary": summary, "sources": stats}
    if near_stats is not None:
        out["minhash"] = near_stats
    if quality_info is not None:
        out["quality"] = {**quality_info, "min_score": cfg.quality.min_score, "max_score": cfg.quality.max_score}
    write_json(ctx.out / "stats.json", out)
    if summary["train"] == 0:
        raise RuntimeError("the corpus step kept no training documents; see stats.json for the reasons")
    return summary
