"""Building the corpus (the corpus step's work): read every source, clean, deduplicate, hold out the
evaluation slice.

Outputs (in the output folder):
  train/shard-*.jsonl.zst     documents kept for training (before decontamination)
  heldout/shard-*.jsonl.zst   the held-out evaluation documents
  removed/removed-*.jsonl.zst every removed document with its reason (a near-duplicate also names,
                              in its metadata, the document kept in its place)
  quarantine.jsonl            malformed input records: file, line, reason
  quality_scorer.pkl          the quality scorer, when ``corpus.quality`` is on: its coefficients as a
                              NumPy .npz archive, read without unpickling (the name is kept from
                              earlier versions)
  stats.json                  ``CorpusStats``: per source, documents and characters in, removed by
                              reason, out
For every source: read = kept + held out + removed (by reason) + quarantined.

The work runs in four passes (``hare.corpus.passes``) in ``work/``; passes 0 and 1 (split and clean)
run in parallel on a process pool or Ray (``hare.corpus.workers``). An interrupted step resumes: a
split unit that finished is not read again, and pass 1 skips every shard already cleaned; passes 2
and 3 read no raw text and are redone. ``work/`` is deleted when the step ends.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

from hare.core.io import DataError, expand_paths, file_format, fingerprint_path, read_json, write_json
from hare.core.progress import Progress
from hare.core.step import write_stats
from hare.corpus import passes
from hare.filters.clean import Cleaner
from hare.corpus.workers import run_local, run_ray, run_tasks
from hare.corpus.passes import Tally, split_path, split_unit
from hare.filters.annotated import MAX_GRADE, AnnotatedScorer, load_rubric
from hare.filters.quality import QualityScorer, load_scorer
from hare.corpus.read import FILE_KINDS, Quarantine, read_source
from hare.corpus.config import CorpusConfig, SourceConfig
from hare.corpus.stats import CorpusStats, CorpusSummary, MinHashStats, QualityHistogram, QualityInfo, SourceStats

log = logging.getLogger("hare.corpus")

# The teacher's grades of texts (annotator mode): (texts, rubric with $document, teacher section, cache
# file, characters of a text sent, answer cap in tokens, seed) -> (grade 0-5 or None per text, the
# requests' usage). The step registry gives ``hare.synth.annotate.grade``.
Grader = Callable[[list[str], str, Any, Path, int, int, int], tuple[list[int | None], dict]]


def _reference_texts(sources: list[SourceConfig], cfg: CorpusConfig, limit: int) -> list[str]:
    """The quality reference: documents of the named sources, then of ``reference_path``."""
    qc = cfg.quality
    out: list[str] = []
    srcs = [s for s in sources if s.name in qc.reference_sources]
    if qc.reference_path:
        p = Path(qc.reference_path)
        kind = "jsonl" if any(file_format(f) == "jsonl" for f in expand_paths(p)) else "text"
        srcs.append(SourceConfig(name="quality-reference", kind=kind, path=str(p)))
    for s in srcs:
        for d in read_source(s, Quarantine(), cfg.max_line_bytes):
            out.append(d.text)
            if len(out) >= limit:
                return out
    return out


def train_quality_scorer(sources: list[SourceConfig], cfg: CorpusConfig, seed: int) -> tuple[QualityScorer, dict]:
    """Fit the scorer on the reference against the first documents of the other sources (cleaned)."""
    qc = cfg.quality
    reference = _reference_texts(sources, cfg, qc.sample_docs)
    raw: list[str] = []
    per = max(1, qc.sample_docs // max(1, sum(s.name not in qc.reference_sources for s in sources)))
    for s in sources:
        if s.name in qc.reference_sources:
            continue
        n = 0
        cleaner = Cleaner.from_config(cfg.clean)
        for d in read_source(s, Quarantine(), cfg.max_line_bytes):
            if cleaner(d)[0]:
                raw.append(d.text)
                n += 1
                if n >= per:
                    break
    scorer = QualityScorer(seed=seed)
    info = scorer.fit(reference, raw)
    info["terms"] = scorer.explain(reference[:500] + raw[:500])
    return scorer, info


def annotation_sample(sources: list[SourceConfig], cfg: CorpusConfig, seed: int) -> list[tuple[str, str]]:
    """The documents the teacher grades, as (source, text): of each source, the first ``sample_docs``
    cleaned documents in an order shuffled by the seed, then taken from the sources in turn until
    ``annotate_docs`` are drawn (a source with fewer leaves its share to the others)."""
    qc = cfg.quality
    pools: list[tuple[str, list[str]]] = []
    for s in sources:
        cleaner = Cleaner.from_config(cfg.clean)
        pool: list[str] = []
        for d in read_source(s, Quarantine(), cfg.max_line_bytes):
            if cleaner(d)[0]:
                pool.append(d.text)
                if len(pool) >= qc.sample_docs:
                    break
        random.Random(f"{seed}:{s.name}").shuffle(pool)
        pools.append((s.name, pool))
    out: list[tuple[str, str]] = []
    for i in range(max((len(p) for _, p in pools), default=0)):
        for name, pool in pools:
            if i < len(pool) and len(out) < qc.annotate_docs:
                out.append((name, pool[i]))
    return out


def train_annotated_scorer(sources: list[SourceConfig], cfg: CorpusConfig, seed: int, cache_dir: Path,
                           grader: Grader) -> tuple[AnnotatedScorer, dict]:
    """Annotator mode: the teacher grades a seeded sample of cleaned documents on the rubric (``grader``),
    and a classifier is fitted to the grades (``hare.filters.annotated``)."""
    qc = cfg.quality
    sample = annotation_sample(sources, cfg, seed)
    rubric = load_rubric(qc.rubric_path)
    grades, usage = grader([t for _, t in sample], rubric, qc.teacher, cache_dir / "annotations.jsonl",
                           qc.annotate_chars, qc.annotate_max_tokens, seed)
    graded = [(name, t, g) for (name, t), g in zip(sample, grades) if g is not None]
    by_source: dict[str, list[int]] = {s.name: [0] * (MAX_GRADE + 1) for s in sources}
    for name, _, g in graded:
        by_source[name][g] += 1
    if len({g for _, _, g in graded}) == 1:
        log.warning("quality: the teacher graded all %d documents %d: the classifier can only learn that constant "
                    "(a small teacher does not read the rubric; see docs/corpus.md)", len(graded), graded[0][2])
    scorer = AnnotatedScorer(qc.features, qc.annotate_chars, seed)
    threshold = round(qc.min_score * MAX_GRADE, 4) if qc.min_score > 0 else 3.0
    fit = scorer.fit([t for _, t, _ in graded], [g for _, _, g in graded], qc.holdout_fraction, threshold)
    t = qc.teacher
    info = {"mode": "annotator", "teacher": t.model or t.local or f"packaged:{t.packaged}",
            "annotations": len(sample), "graded": len(graded),
            "grades": [sum(h[g] for h in by_source.values()) for g in range(MAX_GRADE + 1)],
            "grades_by_source": by_source, "requests_sent": usage.get("sent", 0),
            "requests_cached": usage.get("cached", 0), "classifier": fit}
    return scorer, info


def _nothing_read(out: Path, sources: list[SourceConfig], empty: list[str]) -> str:
    """Why sources gave no documents: what they named and the first quarantined record of each."""
    first: dict[str, dict] = {}
    qpath = out / "quarantine.jsonl"
    if qpath.exists():
        from hare.core.io import jsonl_records

        for _, rec in jsonl_records(qpath):
            first.setdefault(rec.get("source"), rec)
            if all(n in first for n in empty):
                break
    whys = []
    for s in sources:
        if s.name in empty:
            q = first.get(s.name)
            why = f"first quarantined: {q['file']}:{q['line']}: {q['reason']}" if q else "nothing in it was read"
            whys.append(f"source '{s.name}' ({s.path or s.kind}) gave no documents ({why})")
    return "; ".join(whys) + f"; quarantined records are in {qpath}"


def _source_stats(t: Tally, quarantined: int, scored: bool) -> SourceStats:
    quality = None
    if scored:
        b, a = t.scores_before, t.scores_after
        quality = QualityHistogram(before=b.counts.tolist(), after=a.counts.tolist(),
                                   mean_before=round(b.mean(), 4) if b.n else None,
                                   mean_after=round(a.mean(), 4) if a.n else None)
    return SourceStats(docs_in=t.docs_in, chars_in=t.chars_in, removed=dict(t.removed.most_common()),
                       chars_removed=t.chars_removed, train=t.train, heldout=t.heldout, chars_out=t.chars_out,
                       quarantined=quarantined, quality=quality)


def build_corpus(sources: list[SourceConfig], cfg: CorpusConfig, seed: int, out: Path, *, resume: bool = False,
                 executor: str = "local", workers: int = 0, ray_address: str | None = None,
                 grader: Grader | None = None) -> CorpusStats:
    """Read, clean, deduplicate and split ``sources`` into ``out`` (the module docstring); returns the
    stats. ``resume`` continues the work an interrupted call left in ``out/work``. ``executor``
    (``local`` or ``ray``), ``workers`` (0: one per core, or per CPU of the cluster) and
    ``ray_address`` say where passes 0 and 1 run; the outputs do not depend on them. ``grader``: the
    teacher's grading of texts, for ``corpus.quality.mode: annotator`` (``Grader``)."""
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    scorer, quality_info = None, None
    scorer_path = out / "quality_scorer.pkl"
    procs = workers or (os.cpu_count() or 1)
    # An embedding model in every worker gets that worker's share of the cores (one each on Ray).
    threads = 1 if executor == "ray" else (max(1, (os.cpu_count() or 1) // procs) if procs > 1 else 0)
    qc = cfg.quality
    if qc.enabled:
        if resume and scorer_path.exists() and (work / "quality.json").exists():
            scorer, quality_info = load_scorer(scorer_path), read_json(work / "quality.json")
        elif qc.mode == "annotator":
            if grader is None or qc.teacher is None:
                raise ValueError("corpus.quality.mode annotator needs a teacher (corpus.quality.teacher or "
                                 "synth.teacher) and a grader to ask it")
            cache = Path(qc.cache_dir).expanduser() if qc.cache_dir else out.parent / "quality-cache"
            scorer, quality_info = train_annotated_scorer(sources, cfg, seed, cache, grader)
            scorer.save(scorer_path)
            write_json(work / "quality.json", quality_info)
        else:
            scorer, quality_info = train_quality_scorer(sources, cfg, seed)
            scorer.save(scorer_path)
            write_json(work / "quality.json", quality_info)

    # Passes 0 and 1: input shards, each cleaned by a worker. Files are split in the workers;
    # sources that are not files (or read with a limit) are split here first.
    clean_args = (str(work), cfg.clean, cfg.dedup, cfg.minhash, str(scorer_path) if scorer is not None else None,
                  threads)
    split_args = (str(work), cfg.shard_docs, cfg.max_line_bytes)
    units = passes.input_units(sources, cfg.split_file_bytes)
    if resume:
        log.info("corpus: resuming; %d of %d input units split, %d cleaned shards kept",
                 len(list(work.glob("split-*.json"))), len(units), len(list(work.glob("clean-*.npz"))))
    files = [(u, s) for u, s in units if s.kind in FILE_KINDS and not s.limit]
    by_worker = {u for u, _ in files}
    ready = [name for u, s in units if u not in by_worker for name in split_unit(work, u, s, *split_args[1:])]
    if executor == "ray":
        stream = run_ray(files, ready, split_args, clean_args, workers, ray_address)
    else:
        stream = run_local(files, ready, split_args, clean_args, procs)
    splits = _drain(stream, work, files, ready)
    shards, quarantined = passes.collect_splits(work, units, splits, out / "quarantine.jsonl")

    # Passes 2 and 3: every document's fate, then train / held out / removed.
    tallies = {s.name: Tally() for s in sources}
    d = passes.dedup(work, shards, tallies, cfg, scorer is not None,
                     run=partial(run_tasks, executor=executor, workers=workers, address=ray_address))
    passes.write(out, work, shards, d, tallies, cfg.shard_docs, cfg.heldout_fraction, seed)
    stats = _stats(tallies, quarantined, d, len(shards), cfg, quality_info)
    empty = [name for name, st in stats.sources.items() if st.docs_in == 0]
    if empty or stats.summary.train == 0:
        write_stats(out, stats)
        raise DataError(_nothing_read(out, sources, empty) if empty else
                        f"the corpus step kept no training documents; see {out / 'stats.json'} for the reasons")
    shutil.rmtree(work, ignore_errors=True)
    return stats


def _stats(tallies: dict[str, Tally], quarantined: dict[str, int], d, shards: int, cfg: CorpusConfig,
           quality_info: dict | None) -> CorpusStats:
    """The stats of a built corpus from the tallies of pass 3 and the dedup outcome ``d``."""
    scored = quality_info is not None
    sources = {name: _source_stats(t, quarantined.get(name, 0), scored) for name, t in tallies.items()}
    for name, st in sources.items():
        log.info("source %s: %d read, %d train, %d held out, %d removed, %d quarantined", name, st.docs_in,
                 st.train, st.heldout, sum(st.removed.values()), st.quarantined)
    removed: dict[str, int] = {}
    for st in sources.values():
        for k, v in st.removed.items():
            removed[k] = removed.get(k, 0) + v
    removed = dict(sorted(removed.items(), key=lambda kv: -kv[1]))
    summary = CorpusSummary(
        read=sum(s.docs_in for s in sources.values()) + sum(quarantined.values()),
        train=sum(s.train for s in sources.values()),
        heldout=sum(s.heldout for s in sources.values()),
        removed=sum(removed.values()),
        quarantined=sum(quarantined.values()),
        removed_by_reason=removed,
        formatter_changes={f.name: d.changes.get(f.name, 0) for f in Cleaner.from_config(cfg.clean).formatters},
        chars_in=sum(s.chars_in for s in sources.values()),
        chars_out=sum(s.chars_out for s in sources.values()),
        shards=shards,
    )
    return CorpusStats(summary=summary, sources=sources,
                       minhash=MinHashStats(**d.near.stats) if d.near is not None else None,
                       quality=QualityInfo(**quality_info, min_score=cfg.quality.min_score,
                                           max_score=cfg.quality.max_score) if quality_info else None)


def _drain(stream, work: Path, files: list, ready: list[str]) -> dict[int, dict]:
    """Drain the executor's stream of cleaned shards with a progress bar, whose total is known once
    every file has been split; returns the split records of the files, each read once."""
    splits: dict[int, dict] = {}

    def split_done(u: int) -> bool:
        if u not in splits and split_path(work, u).exists():
            splits[u] = read_json(split_path(work, u))
        return u in splits

    bar = Progress(stream, desc="clean", unit="shard", total=None if files else len(ready))
    pending = 0  # files[pending:] may still be splitting
    try:
        for _ in bar:
            while pending < len(files) and split_done(files[pending][0]):
                pending += 1
            if bar.total is None and pending == len(files):
                bar.total = len(ready) + sum(len(splits[u]["shards"]) for u, _ in files)
    finally:
        bar.close()
    return splits


def source_inputs(sources: list[SourceConfig]) -> dict[str, Any]:
    """Fingerprints of what the sources read: each file, or for pydoc the Python that renders it."""
    out: dict[str, Any] = {}
    for s in sources:
        if s.kind == "pydoc":
            out[s.name] = {"python": sys.version, "stdlib": str(Path(os.__file__).parent)}
        else:
            base = Path(s.path)
            targets = sorted(base.parent.glob(base.name)) if not base.exists() else [base]
            out[s.name] = [fingerprint_path(t) for t in targets]
    return out


def near_duplicate_examples(corpus_dir: Path, k: int = 3) -> list[dict]:
    """A few removed near-duplicates, each with the document kept in its place."""
    from hare.core.documents import read_shards

    picked = []
    for d in read_shards(corpus_dir / "removed", prefix="removed"):
        if d.metadata.get("duplicate_of"):
            picked.append(d)
            if len(picked) == k:
                break
    want = {d.metadata["duplicate_of"] for d in picked}
    kept = {d.id: d for folder in ("train", "heldout") for d in read_shards(corpus_dir / folder) if d.id in want} \
        if want else {}
    return [{"id": d.id, "duplicate_of": d.metadata["duplicate_of"],
             "jaccard": d.metadata.get("jaccard_estimate", "?"), "text": d.text[:500],
             "kept": kept[d.metadata["duplicate_of"]].text[:500] if d.metadata["duplicate_of"] in kept else ""}
            for d in picked]
