"""The corpus step: read every source, clean, deduplicate, hold out the evaluation slice.

Outputs (in the step folder):
  train/shard-*.jsonl.zst     documents kept for training (before decontamination)
  heldout/shard-*.jsonl.zst   the held-out evaluation documents
  removed/removed-*.jsonl.zst every removed document with its reason (a near-duplicate also names,
                              in its metadata, the document kept in its place)
  quarantine.jsonl            malformed input records: file, line, reason
  stats.json                  per source: documents and characters in, removed by reason, out
For every source: read = kept + held out + removed (by reason) + quarantined.

The step runs in four passes over shards of ``shard_docs`` documents, in ``work/``:
  0 split   the sources are cut, in read order, into input shards; a unit of this pass is one
            file of a file source (JSONL, Parquet, text), read by a worker, or a whole source of
            another kind, read by this process. Malformed records go to the quarantine.
  1 clean   every shard, in parallel (``executor: local``: a process pool on this machine's cores;
            ``executor: ray``: Ray Data tasks and actors on a Ray cluster), goes through the cleaning
            rules, the quality scorer, the exact-dedup hash and the MinHash signature. A cleaned shard
            is a records file and an arrays file written last; the arrays file marks the shard done.
  2 dedup   in read order (no text is read): exact duplicates, the quality band, then the MinHash LSH
            clusters of what is left (``hare.corpus.minhash``); each cluster keeps its first document.
  3 write   the cleaned shards are read again in order and every document goes to train, held out or
            removed.
Which document of a duplicate set is kept depends only on read order, so the output is the same for
any number of workers and either executor. An interrupted step resumes: a split unit that finished
is not read again, and pass 1 skips every shard already cleaned; passes 2 and 3 read no raw text and
are redone. ``work/`` is deleted when the step ends.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from hare.corpus.clean import Cleaner
from hare.corpus.document import SHARD_EXT, Document, ShardWriter
from hare.corpus.minhash import NearDuplicateIndex, Signer, normalize_for_dedup
from hare.corpus.quality import QualityScorer, histogram
from hare.corpus.read import FILE_SUFFIXES, Quarantine, read_source, source_parts
from hare.io import atomic_path, read_json, read_jsonl, write_json, write_jsonl
from hare.progress import Progress, progress
from hare.recipe import SourceConfig

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


# Why a document left in pass 2 (0: it goes on to the near-duplicate check and the split).
_KEEP, _RULE, _EXACT, _LOW, _HIGH = range(5)
_PASS2_REASON = {_EXACT: "exact_duplicate", _LOW: "quality_below_band", _HIGH: "quality_above_band"}


def clean_paths(work: Path, shard: str) -> tuple[Path, Path]:
    """The cleaned documents of a shard and its arrays (written last: the shard's completion mark)."""
    return work / f"clean-{shard}{SHARD_EXT}", work / f"clean-{shard}.npz"


def split_path(work: Path, unit: int) -> Path:
    """A split unit's shards and quarantined records (written last: the unit's completion mark)."""
    return work / f"split-{unit:05d}.json"


def input_units(r) -> list[tuple[int, SourceConfig]]:
    """Pass 0's units of work, numbered in read order: every file of a file source, or a whole source."""
    parts = [part for src in r.sources for part in source_parts(src)]
    return list(enumerate(parts))


def split_unit(work: Path, unit: int, src: SourceConfig, shard_docs: int, max_line_bytes: int) -> list[str]:
    """Pass 0 for one unit: its documents into input shards ``input-UUUUU-KKKKK`` of ``shard_docs``
    documents, then ``split-UUUUU.json`` (the unit's shards and quarantined records) as its completion
    mark. A finished unit is not read again; shards of an interrupted one are not written again (their
    content is fixed by the recipe). Returns the unit's shard names in order."""
    done = split_path(work, unit)
    if done.exists():
        return read_json(done)["shards"]
    q = Quarantine()
    docs = read_source(src, q, max_line_bytes)
    shards: list[str] = []
    while batch := list(itertools.islice(docs, shard_docs)):
        name = f"{unit:05d}-{len(shards):05d}"
        path = work / f"input-{name}{SHARD_EXT}"
        if not path.exists():
            write_jsonl(path, (d.to_record() for d in batch))
        shards.append(name)
    write_json(done, {"source": src.name, "shards": shards, "quarantine": q.records})
    return shards


class ShardCleaner:
    """Pass 1 for one shard at a time: the cleaning rules, quality scores, the exact-dedup hash and the
    MinHash signature of every document. Built once per worker process (local) or Ray actor (ray).

    Writes ``clean-<shard>.jsonl.zst`` (every document after the rules, with the rule that removed it)
    and then ``clean-<shard>.npz`` (per document: kept by the rules, characters before cleaning, exact
    hash, quality score; the signatures of those kept; the formatters' change counts), each atomically.
    """

    def __init__(self, work: str, clean_cfg, dedup: str, minhash_cfg, scorer_path: str | None):
        self.work = Path(work)
        self.cleaner = Cleaner(clean_cfg)
        self.dedup = dedup
        self.scorer = QualityScorer.load(scorer_path) if scorer_path else None
        self.signer = Signer(minhash_cfg) if dedup == "minhash" else None

    def __call__(self, shard: str) -> str:
        records, npz = clean_paths(self.work, shard)
        if npz.exists():
            return shard
        before = dict(self.cleaner.changes)
        rows, ok, chars, hashes, norms = [], [], [], [], []
        for rec in read_jsonl(self.work / f"input-{shard}{SHARD_EXT}"):
            doc = Document.from_record(rec)
            chars.append(len(doc.text))
            keep, reason = self.cleaner(doc)
            out = doc.to_record()
            if keep:
                if self.dedup != "none":
                    norm = normalize_for_dedup(doc.text)
                    hashes.append(np.frombuffer(text_hash(norm, normalized=True), dtype=np.uint8))
                    norms.append(norm)
            else:
                out["reason"] = reason
            ok.append(keep)
            rows.append(out)
        kept = [row for row, k in zip(rows, ok) if k]
        scores = np.full(len(rows), np.nan, dtype=np.float32)
        if self.scorer is not None and kept:
            s = self.scorer.score([row["text"] for row in kept])
            scores[np.flatnonzero(ok)] = s
            for row, v in zip(kept, s):
                row["metadata"] = {**row.get("metadata", {}), "quality": round(float(v), 4)}
        digest = np.zeros((len(rows), 16), dtype=np.uint8)
        if hashes:
            digest[np.flatnonzero(ok)] = np.stack(hashes)
        sigs = self.signer(norms, normalized=True) if self.signer is not None and norms else \
            np.zeros((0, 0), dtype=np.uint32)
        changes = {k: v - before.get(k, 0) for k, v in self.cleaner.changes.items() if v != before.get(k, 0)}
        write_jsonl(records, rows)
        with atomic_path(npz) as tmp, open(tmp, "wb") as f:
            np.savez(f, ok=np.array(ok, dtype=bool), chars=np.array(chars, dtype=np.int64), hash=digest,
                     score=scores, sig=sigs, changes=np.array(json.dumps(changes)))
        return shard


class _RayShardCleaner:
    """``ShardCleaner`` as a Ray Data callable class: a batch of shard names in, the same out."""

    def __init__(self, *args):
        self.clean = ShardCleaner(*args)

    def __call__(self, batch: dict) -> dict:
        return {"shard": np.array([self.clean(str(s)) for s in batch["shard"]], dtype=object)}


def _ray_split(row: dict, work: str, shard_docs: int, max_line_bytes: int) -> list[dict]:
    src = SourceConfig.model_validate_json(row["source"])
    return [{"shard": s} for s in split_unit(Path(work), int(row["unit"]), src, shard_docs, max_line_bytes)]


_WORKER: dict = {}


def _init_worker(split_args: tuple, clean_args: tuple) -> None:
    _WORKER["split"] = split_args
    _WORKER["clean"] = ShardCleaner(*clean_args)


def _split_unit(task: tuple[int, SourceConfig]) -> list[str]:
    work, shard_docs, max_line_bytes = _WORKER["split"]
    return split_unit(Path(work), task[0], task[1], shard_docs, max_line_bytes)


def _clean_shard(shard: str) -> str:
    return _WORKER["clean"](shard)


def run_local(units: list, ready: list[str], split_args: tuple, clean_args: tuple, procs: int):
    """Passes 0 and 1 with this machine's cores: a process pool splits the ``units`` (files) and cleans
    the shards as they come, after the ``ready`` ones; yields each shard's name when it is cleaned."""
    work, shard_docs, max_line_bytes = split_args
    if procs <= 1:
        clean = ShardCleaner(*clean_args)
        yield from map(clean, ready)
        for unit, src in units:
            yield from map(clean, split_unit(Path(work), unit, src, shard_docs, max_line_bytes))
        return
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(procs, initializer=_init_worker, initargs=(split_args, clean_args)) as pool:
        split = (s for names in pool.imap(_split_unit, units) for s in names)  # queued before the cleaning
        yield from pool.imap(_clean_shard, itertools.chain(ready, split))


def run_ray(units: list, ready: list[str], split_args: tuple, clean_args: tuple, procs: int,
            address: str | None):
    """Passes 0 and 1 on a Ray cluster through Ray Data: the units (files) are a dataset flat-mapped
    into their shards by Ray tasks; then the shards are a dataset cleaned by a pool of ``procs``
    actors (0: one per CPU of the cluster). Without ``address`` a local Ray instance is started for the step and
    stopped after it. On a cluster the step folder must be on storage every node sees (the workers
    read and write the shards there), and hare must be installed on every node."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RuntimeError("corpus.executor is 'ray' but Ray is not installed: pip install 'hare[ray]'") from e
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else (procs or None), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        shards = list(ready)
        if units:  # split first: actors that hold every CPU would leave none to tasks that feed them
            log.info("corpus: splitting %d input files with Ray Data", len(units))
            items = [{"unit": u, "source": src.model_dump_json()} for u, src in units]
            split = ray.data.from_items(items, override_num_blocks=len(items)).flat_map(
                _ray_split, fn_args=split_args, num_cpus=1)
            shards += [str(row["shard"]) for row in split.take_all()]
        if not shards:
            return
        size = procs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
        ds = ds.map_batches(_RayShardCleaner, fn_constructor_args=clean_args, batch_size=1, concurrency=size,
                            num_cpus=1)
        for row in ds.iter_rows():
            yield str(row["shard"])
    finally:
        if started:
            ray.shutdown()


def _spill_folder(out: Path, spill_dir: str | None) -> Path:
    base = Path(spill_dir) if spill_dir else out
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".minhash-", dir=base))


def run_corpus(ctx) -> dict:
    r = ctx.recipe
    cfg = r.corpus
    work = ctx.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    stats: dict[str, dict] = {s.name: {"docs_in": 0, "chars_in": 0, "removed": Counter(), "chars_removed": 0,
                                       "train": 0, "heldout": 0, "chars_out": 0} for s in r.sources}
    scorer, quality_info = None, None
    scorer_path = ctx.out / "quality_scorer.pkl"
    if cfg.quality.enabled:
        if ctx.resume and scorer_path.exists() and (work / "quality.json").exists():
            scorer, quality_info = QualityScorer.load(scorer_path), read_json(work / "quality.json")
        else:
            scorer, quality_info = train_quality_scorer(r, cfg.clean)
            scorer.save(scorer_path)
            write_json(work / "quality.json", quality_info)

    # Passes 0 and 1: input shards, each cleaned by a worker. Files are split in the workers; sources
    # that are not files (or read with a limit) are split here first.
    clean_args = (str(work), cfg.clean, cfg.dedup, cfg.minhash, str(scorer_path) if scorer is not None else None)
    split_args = (str(work), cfg.shard_docs, cfg.max_line_bytes)
    procs = cfg.num_proc or (os.cpu_count() or 1)
    units = input_units(r)
    if ctx.resume:
        log.info("corpus: resuming; %d of %d input units split, %d cleaned shards kept",
                 len(list(work.glob("split-*.json"))), len(units),
                 len(list(work.glob("clean-*.npz"))))
    files = [(u, s) for u, s in units if s.kind in FILE_SUFFIXES and not s.limit]
    by_worker = {u for u, _ in files}
    ready = [name for u, s in units if u not in by_worker for name in split_unit(work, u, s, *split_args[1:])]
    if cfg.executor == "ray":
        stream = run_ray(files, ready, split_args, clean_args, cfg.num_proc, cfg.ray_address)
    else:
        stream = run_local(files, ready, split_args, clean_args, procs)
    splits: dict[int, dict] = {}  # the finished units, read once each

    def split_done(u: int) -> bool:
        if u not in splits and split_path(work, u).exists():
            splits[u] = read_json(split_path(work, u))
        return u in splits

    bar = Progress(stream, desc="clean", unit="shard", total=None if files else len(ready))
    pending = 0  # files[pending:] may still be splitting; once none is, the number of shards is known
    try:
        for _ in bar:
            while pending < len(files) and split_done(files[pending][0]):
                pending += 1
            if bar.total is None and pending == len(files):
                bar.total = sum(len(splits[u]["shards"]) for u, _ in units if split_done(u))
    finally:
        bar.close()
    q = Quarantine()
    shards: list[tuple[str, str]] = []
    for u, _ in units:
        if not split_done(u):
            raise RuntimeError(f"corpus: input unit {u} ({units[u][1].path or units[u][1].name}) was not split")
        shards += [(name, splits[u]["source"]) for name in splits[u]["shards"]]
        q.records += splits[u]["quarantine"]
    q.counts = dict(Counter(rec["source"] for rec in q.records))
    missing = [name for name, _ in shards if not clean_paths(work, name)[1].exists()]
    if missing:
        raise RuntimeError(f"corpus: {len(missing)} shards were not cleaned (first: {missing[0]})")

    # Pass 2: exact duplicates and the quality band in read order, then near-duplicate clusters.
    seen: set[bytes] = set()
    verdicts: list[np.ndarray] = []
    changes: Counter = Counter()
    scores = {name: ([], []) for name in stats}
    near = None
    spill = _spill_folder(work, cfg.minhash.spill_dir) if cfg.dedup == "minhash" else None
    try:
        index = NearDuplicateIndex(cfg.minhash, spill) if spill is not None else None
        for i, name in progress(shards, desc="dedup", unit="shard"):
            with np.load(clean_paths(work, i)[1]) as z:
                ok, chars, digest, score, sig = z["ok"], z["chars"], z["hash"], z["score"], z["sig"]
                changes.update(json.loads(str(z["changes"])))
            st = stats[name]
            st["docs_in"] += len(ok)
            st["chars_in"] += int(chars.sum())
            v = np.where(ok, _KEEP, _RULE).astype(np.uint8)
            before, after = scores[name]
            for j in np.flatnonzero(ok):
                if cfg.dedup != "none":
                    h = digest[j].tobytes()
                    if h in seen:
                        v[j] = _EXACT
                        continue
                    seen.add(h)
                if scorer is not None:
                    s = float(score[j])
                    before.append(s)
                    if s < cfg.quality.min_score:
                        v[j] = _LOW
                    elif s > cfg.quality.max_score:
                        v[j] = _HIGH
                    else:
                        after.append(s)
            if index is not None:
                index.add_signatures(sig[v[ok] == _KEEP])
            verdicts.append(v)
        if index is not None:
            near = index.find()
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)

    # Pass 3: the split into train and held out; everything removed goes aside with its reason.
    for folder in ("train", "heldout", "removed"):
        shutil.rmtree(ctx.out / folder, ignore_errors=True)
    shard = cfg.shard_docs
    with ShardWriter(ctx.out / "train", shard) as train, ShardWriter(ctx.out / "heldout", shard) as held, \
            ShardWriter(ctx.out / "removed", shard, prefix="removed") as removed:
        g = 0  # index among the documents that reached the near-duplicate check
        kept_ids: dict[int, str] = {}
        roots = set(near.kept[near.is_duplicate()].tolist()) if near is not None else set()
        for (i, name), v in progress(list(zip(shards, verdicts)), desc="write", unit="shard"):
            st = stats[name]
            for rec, code in zip(read_jsonl(clean_paths(work, i)[0]), v.tolist()):
                if code == _RULE:
                    _remove(st, removed, rec, rec.pop("reason"))
                    continue
                if code != _KEEP:
                    _remove(st, removed, rec, _PASS2_REASON[code])
                    continue
                if near is not None:
                    k = int(near.kept[g])
                    if k != g:
                        # The kept document comes earlier in read order, so its id is already known.
                        rec["metadata"] = {**rec.get("metadata", {}), "duplicate_of": kept_ids[k],
                                           "jaccard_estimate": round(float(near.jaccard[g]), 3)}
                        g += 1
                        _remove(st, removed, rec, "near_duplicate")
                        continue
                    if g in roots:
                        kept_ids[g] = rec["id"]
                    g += 1
                st["chars_out"] += len(rec["text"])
                if heldout_draw(rec["id"], r.seed) < cfg.heldout_fraction:
                    st["heldout"] += 1
                    held.write(rec)
                else:
                    st["train"] += 1
                    train.write(rec)
        if near is not None and g != len(near.kept):
            raise RuntimeError(f"corpus: {g} documents reached near-dedup, {len(near.kept)} signatures")

    cleaner = Cleaner(cfg.clean)
    for src_name, st in stats.items():
        st["removed"] = dict(st["removed"].most_common())
        st["quarantined"] = q.counts.get(src_name, 0)
        if scorer is not None:
            before, after = scores[src_name]
            st["quality"] = {"before": histogram(np.array(before)), "after": histogram(np.array(after)),
                             "mean_before": round(float(np.mean(before)), 4) if before else None,
                             "mean_after": round(float(np.mean(after)), 4) if after else None}
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
        "shards": len(shards),
    }
    out = {"summary": summary, "sources": stats}
    if near is not None:
        out["minhash"] = near.stats
    if quality_info is not None:
        out["quality"] = {**quality_info, "min_score": cfg.quality.min_score, "max_score": cfg.quality.max_score}
    write_json(ctx.out / "stats.json", out)
    shutil.rmtree(work, ignore_errors=True)
    if summary["train"] == 0:
        raise RuntimeError("the corpus step kept no training documents; see stats.json for the reasons")
    return summary
