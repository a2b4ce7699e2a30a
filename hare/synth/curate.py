"""Curation (the curate step's work): the synthetic parts D2 and D3 through the corpus's own filters.

The d2 and d3 steps write what the teacher gave (``<step>/generated/``); this step applies to it
the rules D1 went through, so synthetic text meets the same bar:

1. cleaning (``corpus.clean``; D3's short samples with ``min_words`` lowered to 5);
2. for D2, the quality band of the corpus step's scorer when ``corpus.quality`` is on, and the
   fidelity of D2's rephrases to their source documents (``hare.synth.fidelity``): a rephrase whose
   embedding cosine with the text the teacher rewrote is under ``synth.d2.min_fidelity`` is dropped
   (``rephrase_drift``); every rephrase checked records ``fidelity`` and ``content_overlap``;
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

from hare.core.documents import Document, ShardWriter, read_shards
from hare.core.ngrams import NgramIndex
from hare.filters.clean import Cleaner
from hare.filters.decontam import Decontaminator, eval_texts, scan_batches
from hare.filters.minhash import NearDuplicateIndex
from hare.filters.annotated import AnnotatedScorer
from hare.filters.quality import QualityScorer, load_scorer
from hare.synth.fidelity import Fidelity, source_passage
from hare.synth.stats import PARTS, CurateStats, PartCuration

log = logging.getLogger("hare.synth.curate")


def family(part: str, d: Document) -> str:
    return str(d.metadata.get("template" if part == "d2" else "task", "?"))


def rephrased(d: Document) -> tuple[str, str]:
    """The (source, id) of the D1 document a rephrase rewrites."""
    return d.metadata["source_source"], d.metadata["source_id"]


def curate(generated: dict[str, Path], corpus_dir: Path, decontam_dir: Path, corpus, decontam, synth,
           out: Path) -> CurateStats:
    """Curate the synthetic parts (``generated``: the d2 and d3 folders) into ``out`` (the module
    docstring). ``corpus``, ``decontam`` and ``synth`` are the recipe's sections of those names;
    ``corpus_dir`` holds the corpus step's held-out documents and quality scorer, ``decontam_dir``
    the D1 documents the near-duplicate check starts from."""
    c = _Curation({p: list(read_shards(generated[p] / "generated")) for p in PARTS})
    scorer_path = corpus_dir / "quality_scorer.pkl"
    scorer = load_scorer(scorer_path) if corpus.quality.enabled and scorer_path.exists() else None
    for p in PARTS:  # 1. cleaning, 2. quality band (D2)
        clean_cfg = corpus.clean.model_copy(update={"min_words": synth.d2.min_words} if p == "d2" else
                                            {"min_words": 5, "min_stop_words": 1})
        c.clean(p, Cleaner.from_config(clean_cfg), scorer if p == "d2" else None, corpus.quality)
    c.fidelity("d2", decontam_dir / "train", synth.d2)  # 2. the rephrases' fidelity (D2)
    c.near_duplicates(corpus.minhash, decontam_dir / "train", out / ".minhash")  # 3.
    items, _missing = eval_texts(decontam, corpus_dir / "heldout")
    for p in PARTS:  # 4. decontamination with the synthetic-data rules of each part
        c.decontaminate(p, items, decontam, synth.d2 if p == "d2" else synth.d3)
    for p in PARTS:
        c.write(p, out, corpus.shard_docs)
        log.info("curate %s: %d in, %d kept; removed %s", p, c.parts[p].docs_in, c.parts[p].docs_out,
                 c.parts[p].removed or "none")
    return CurateStats(enabled=True, parts=c.parts, docs_in=sum(x.docs_in for x in c.parts.values()),
                       docs_out=sum(x.docs_out for x in c.parts.values()))


class _Curation:
    """The documents of each part as they go through the filters, and why each removed one went."""

    def __init__(self, docs: dict[str, list[Document]]):
        self.docs = docs
        self.parts = {p: PartCuration(docs_in=len(docs[p])) for p in PARTS}
        self.removed: dict[str, list[tuple[Document, str]]] = defaultdict(list)
        self.fam: dict[str, dict[str, Counter]] = {p: defaultdict(Counter) for p in PARTS}

    def drop(self, part: str, d: Document, reason: str) -> None:
        self.removed[part].append((d, reason))
        self.fam[part][family(part, d)][reason] += 1

    def clean(self, p: str, cleaner: Cleaner, scorer: QualityScorer | AnnotatedScorer | None, quality) -> None:
        kept = []
        for d in self.docs[p]:
            ok, reason = cleaner(d)
            if ok:
                kept.append(d)
            else:
                self.drop(p, d, f"clean_{reason}")
        if scorer is not None and kept:
            scores = scorer.score(d.text for d in kept)
            band = []
            for d, s in zip(kept, scores):
                if quality.min_score <= s <= quality.max_score:
                    band.append(d)
                else:
                    self.drop(p, d, "quality_band")
            kept = band
        self.docs[p] = kept

    def fidelity(self, p: str, d1: Path, cfg) -> None:
        """Drop the rephrases of part ``p`` that drift from their source, read from the D1 documents ``d1``
        (``cfg``: ``synth.d2``); the embedding model is loaded only when there are rephrases."""
        rephrases = [d for d in self.docs[p] if d.metadata.get("family") == "rephrase"]
        if not rephrases:
            return
        wanted = {rephrased(d) for d in rephrases}
        sources = {(d.source, d.id): source_passage(d.text, cfg.rephrase_chars) for d in read_shards(d1)
                   if (d.source, d.id) in wanted}
        found = [d for d in rephrases if rephrased(d) in sources]
        scores = Fidelity().measure([sources[rephrased(d)] for d in found], [d.text for d in found])
        for d, (cosine, overlap) in zip(found, scores):
            d.metadata.update(fidelity=cosine, content_overlap=overlap)
        kept = []
        for d in self.docs[p]:
            if d.metadata.get("family") != "rephrase":
                kept.append(d)
            elif "fidelity" not in d.metadata:
                self.drop(p, d, "rephrase_source_missing")
            elif d.metadata["fidelity"] < cfg.min_fidelity:
                self.drop(p, d, "rephrase_drift")
            else:
                kept.append(d)
        self.docs[p] = kept

    def near_duplicates(self, minhash, d1: Path, work: Path) -> None:
        """Near-duplicates against D1 (added to the index first) and each other."""
        work.mkdir(parents=True, exist_ok=True)
        index = NearDuplicateIndex.from_config(minhash, work)
        n_d1 = sum(1 for d in read_shards(d1) if index.add(d.text) is not None)
        order = [(p, d) for p in PARTS for d in self.docs[p]]
        for _, d in order:
            index.add(d.text)
        found = index.find()
        shutil.rmtree(work, ignore_errors=True)
        for p in PARTS:
            self.docs[p] = []
        for i, (p, d) in enumerate(order, n_d1):
            root = int(found.kept[i])
            if root == i:
                self.docs[p].append(d)
            else:
                self.drop(p, d, "near_duplicate_d1" if root < n_d1 else "near_duplicate_synthetic")

    def decontaminate(self, p: str, items: list, decontam, sc) -> None:
        cfg = decontam.model_copy(update={"ngram": sc.decontam_ngram, "threshold": sc.decontam_threshold,
                                          "policy": "drop"})
        part = self.parts[p]
        part.decontam_ngram, part.decontam_threshold = sc.decontam_ngram, sc.decontam_threshold
        index_n = NgramIndex(sc.decontam_ngram)
        for it in items:
            index_n.add(it)
        dec = Decontaminator.from_config(index_n, cfg)
        matched = [m for batch in scan_batches(self.docs[p]) for m in dec.matches_many(batch)]
        for m in matched:
            dec.count(m)
        kept = []
        sources: Counter[str] = Counter()
        for d, m in zip(self.docs[p], matched):
            doc, rec = dec.decide(d, m)
            if rec is not None:
                part.decontam_matched += 1
                sources.update({it["source"] for it in rec["items"]})
            if doc is None:
                self.drop(p, d, "decontam_dropped")
            else:
                kept.append(doc)
        part.decontam_sources = dict(sources)
        self.docs[p] = kept

    def write(self, p: str, out: Path, shard_docs: int) -> None:
        docs, removed, fam, part = self.docs[p], self.removed[p], self.fam[p], self.parts[p]
        with ShardWriter(out / "train" / p, shard_docs) as w:
            for d in docs:
                w.write(d)
                fam[family(p, d)]["accepted"] += 1
        with ShardWriter(out / "removed" / p, shard_docs, prefix="removed") as w:
            for d, reason in removed:
                w.write({**d.to_record(), "reason": reason})
        part.docs_out = len(docs)
        part.chars_out = sum(len(d.text) for d in docs)
        part.removed = dict(Counter(r for _, r in removed))
        part.families = {k: dict(v) for k, v in sorted(fam.items())}
