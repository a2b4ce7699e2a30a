"""The curate step: the synthetic parts D2 and D3 through the corpus's own filters.

The d2 and d3 steps write what the teacher gave (``<step>/generated/``); this step applies to it
the rules D1 went through, so synthetic text meets the same bar:

1. cleaning (``corpus.clean``; D3's short samples with ``min_words`` lowered to 5);
2. for D2, the quality band of the corpus step's scorer when ``corpus.quality`` is on;
3. MinHash near-duplicates (``corpus.minhash``) against D1 and against each other: D1 documents
   are added to the index first, so a generation that repeats its seed (or an earlier generation)
   is the one removed;
4. decontamination against the held-out documents and benchmarks (``decontam``) with the paper's
   rules for synthetic data: n = ``synth.d2.decontam_ngram`` (10-15) for long text and
   ``synth.d3.decontam_ngram`` (4-8) for short task samples, drop above 50 % overlap.

Outputs: ``train/d2/``, ``train/d3/`` (what the mix takes, each document once), ``removed/`` (every
removed document with its reason) and stats per part and per template family.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hare.core.documents import Document, ShardWriter, read_shards
from hare.core.ngrams import NgramIndex
from hare.core.step import Stats, Step, StepContext
from hare.corpus.clean import Cleaner
from hare.corpus.decontam import Decontaminator, eval_texts
from hare.corpus.minhash import NearDuplicateIndex
from hare.corpus.quality import QualityScorer

log = logging.getLogger("hare.corpus.curate")

PARTS = ("d2", "d3")


class PartCuration(BaseModel):
    docs_in: int = 0
    docs_out: int = 0
    chars_out: int = 0
    removed: dict[str, int] = {}
    decontam_ngram: int = 0
    decontam_threshold: float = 0.0
    decontam_matched: int = 0
    decontam_sources: dict[str, int] = {}
    families: dict[str, dict[str, int]] = {}  # template (D2) or task (D3) -> accepted and rejected by reason


class CurateStats(Stats):
    enabled: bool
    parts: dict[str, PartCuration] = {}
    docs_in: int = 0
    docs_out: int = 0

    def counts(self) -> dict[str, int | float]:
        return {"docs_in": self.docs_in, "docs_out": self.docs_out}


def family(part: str, d: Document) -> str:
    return str(d.metadata.get("template" if part == "d2" else "task", "?"))


class CurateStep(Step):
    name = "curate"
    help = "clean, quality-band, deduplicate (against D1 too) and decontaminate the synthetic parts D2 and D3"
    after = ("corpus", "decontam", "d2", "d3")
    reads = ("synth", "corpus", "decontam", "seed")
    stats = CurateStats

    def run(self, ctx: StepContext) -> CurateStats:
        c = ctx.config
        if not c.synth.enabled:
            return CurateStats(enabled=False)
        docs = {p: list(read_shards(ctx.deps[p] / "generated")) for p in PARTS}
        parts = {p: PartCuration(docs_in=len(docs[p])) for p in PARTS}
        removed: dict[str, list[tuple[Document, str]]] = defaultdict(list)
        fam: dict[str, dict[str, Counter]] = {p: defaultdict(Counter) for p in PARTS}

        def drop(part: str, d: Document, reason: str) -> None:
            removed[part].append((d, reason))
            fam[part][family(part, d)][reason] += 1

        # 1. cleaning, 2. quality band (D2)
        scorer_path = ctx.deps["corpus"] / "quality_scorer.pkl"
        scorer = QualityScorer.load(scorer_path) if c.corpus.quality.enabled and scorer_path.exists() else None
        for p in PARTS:
            clean_cfg = c.corpus.clean.model_copy(update={"min_words": c.synth.d2.min_words} if p == "d2" else
                                                  {"min_words": 5, "min_stop_words": 1})
            cleaner = Cleaner(clean_cfg)
            kept = []
            for d in docs[p]:
                ok, reason = cleaner(d)
                if ok:
                    kept.append(d)
                else:
                    drop(p, d, f"clean_{reason}")
            if scorer is not None and p == "d2" and kept:
                q = c.corpus.quality
                scores = scorer.score(d.text for d in kept)
                band = []
                for d, s in zip(kept, scores):
                    if q.min_score <= s <= q.max_score:
                        band.append(d)
                    else:
                        drop(p, d, "quality_band")
                kept = band
            docs[p] = kept

        # 3. near-duplicates against D1 (added first) and each other
        work = ctx.out / ".minhash"
        work.mkdir(parents=True, exist_ok=True)
        index = NearDuplicateIndex(c.corpus.minhash, work)
        n_d1 = sum(1 for d in read_shards(ctx.deps["decontam"] / "train") if index.add(d.text) is not None)
        order = [(p, d) for p in PARTS for d in docs[p]]
        for _, d in order:
            index.add(d.text)
        found = index.find()
        shutil.rmtree(work, ignore_errors=True)
        for p in PARTS:
            docs[p] = []
        for i, (p, d) in enumerate(order, n_d1):
            root = int(found.kept[i])
            if root == i:
                docs[p].append(d)
            else:
                drop(p, d, "near_duplicate_d1" if root < n_d1 else "near_duplicate_synthetic")

        # 4. decontamination with the synthetic-data rules of each part
        items, _missing = eval_texts(c.decontam, ctx.deps["corpus"] / "heldout")
        for p in PARTS:
            sc = c.synth.d2 if p == "d2" else c.synth.d3
            cfg = c.decontam.model_copy(update={"ngram": sc.decontam_ngram, "threshold": sc.decontam_threshold,
                                                "policy": "drop"})
            parts[p].decontam_ngram, parts[p].decontam_threshold = sc.decontam_ngram, sc.decontam_threshold
            index_n = NgramIndex(sc.decontam_ngram)
            for it in items:
                index_n.add(it)
            dec = Decontaminator(index_n, cfg)
            matched = [dec.matches(d) for d in docs[p]]
            for m in matched:
                dec.count(m)
            kept = []
            sources: Counter[str] = Counter()
            for d, m in zip(docs[p], matched):
                doc, rec = dec.decide(d, m)
                if rec is not None:
                    parts[p].decontam_matched += 1
                    sources.update({it["source"] for it in rec["items"]})
                if doc is None:
                    drop(p, d, "decontam_dropped")
                else:
                    kept.append(doc)
            parts[p].decontam_sources = dict(sources)
            docs[p] = kept

        shard_docs = c.corpus.shard_docs
        for p in PARTS:
            with ShardWriter(ctx.out / "train" / p, shard_docs) as w:
                for d in docs[p]:
                    w.write(d)
                    fam[p][family(p, d)]["accepted"] += 1
            with ShardWriter(ctx.out / "removed" / p, shard_docs, prefix="removed") as w:
                for d, reason in removed[p]:
                    w.write({**d.to_record(), "reason": reason})
            parts[p].docs_out = len(docs[p])
            parts[p].chars_out = sum(len(d.text) for d in docs[p])
            parts[p].removed = dict(Counter(r for _, r in removed[p]))
            parts[p].families = {k: dict(v) for k, v in sorted(fam[p].items())}
            log.info("curate %s: %d in, %d kept; removed %s", p, parts[p].docs_in, parts[p].docs_out,
                     parts[p].removed or "none")
        return CurateStats(enabled=True, parts=parts, docs_in=sum(x.docs_in for x in parts.values()),
                           docs_out=sum(x.docs_out for x in parts.values()))

    def report_data(self, folder: Path, stats: CurateStats) -> dict[str, Any]:
        return {}


CURATE = CurateStep()
