"""The corpus step's four passes over shards of ``shard_docs`` documents, in the step's ``work/`` folder.

  0 split   ``split_unit``: a unit (one file of a file source, or a whole source of another kind) cut,
            in read order, into input shards; malformed records go to the unit's quarantine file.
  1 clean   ``ShardCleaner``: per shard, the cleaning rules, the quality score, the exact-dedup hash
            and the MinHash signature of every document, written as a records file and an arrays
            file (written last: the shard's completion mark).
  2 dedup   ``dedup``: in read order, from the arrays only: exact duplicates, the quality band, then
            the MinHash LSH clusters of what is left; every document gets its ``Fate``. Both dedups
            are tasks over hash partitions (``exact_partition``, ``hare.filters.minhash.link_partition``)
            that the workers run, each under ``corpus.dedup_memory_mb``.
  3 write   ``write``: the cleaned records read again in order, each sent by its fate to train, held
            out or removed (with its reason; a near-duplicate names the document kept in its place).

Which document of a duplicate set is kept depends only on read order, so the output is the same for
any number of workers, partitions and either executor (``hare.corpus.workers``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

from hare.core.documents import SHARD_EXT, Document, ShardWriter
from hare.core.io import atomic_open, atomic_path, read_json, read_jsonl, write_json, write_jsonl
from hare.core.progress import progress
from hare.core.text import normalize_for_dedup, text_hash
from hare.filters.clean import Cleaner
from hare.filters.minhash import (LINK_BYTES_PER_DOC, LINK_FIXED_BYTES, NearDuplicateIndex, NearDuplicates,
                                  PartitionedAppender, Signer, partition_of, partitions_for, run_in_order)
from hare.filters.quality import histogram, load_scorer
from hare.corpus.ranges import JsonlRange, read_range, split_part
from hare.corpus.read import Quarantine, read_source, source_parts
from hare.corpus.config import SourceConfig


class Fate(IntEnum):
    """What happened to a document after cleaning."""

    KEPT = 0  # to train or held out
    RULE = 1  # removed by a cleaning rule (its reason is in the cleaned record)
    EXACT_DUPLICATE = 2
    QUALITY_BELOW_BAND = 3
    QUALITY_ABOVE_BAND = 4
    NEAR_DUPLICATE = 5

    @property
    def reason(self) -> str:
        return self.name.lower()


def heldout_draw(doc_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the document id and the seed: the held-out split is stable."""
    h = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


@dataclass
class Scores:
    """Quality scores as the stats show them: their histogram (``hare.filters.quality.histogram``),
    count and sum, added shard by shard (memory does not grow with the corpus)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(histogram(np.zeros(0))), dtype=np.int64))
    n: int = 0
    total: float = 0.0

    def add(self, s: np.ndarray) -> None:
        s = np.asarray(s, dtype=np.float64)
        self.counts += histogram(s)
        self.n += len(s)
        self.total += float(s.sum())

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass
class Tally:
    """What the passes count for one source; the step's stats are made from it."""

    docs_in: int = 0
    chars_in: int = 0
    removed: Counter = field(default_factory=Counter)
    chars_removed: int = 0
    train: int = 0
    heldout: int = 0
    chars_out: int = 0
    scores_before: Scores = field(default_factory=Scores)  # quality scores of the cleaned documents
    scores_after: Scores = field(default_factory=Scores)  # ... of those inside the band


# ---- pass 0: split


def split_path(work: Path, unit: int) -> Path:
    """A split unit's shards and quarantine count (written last: the unit's completion mark)."""
    return work / f"split-{unit:05d}.json"


def input_units(sources: list[SourceConfig], split_file_bytes: int = 0) -> list[tuple[int, SourceConfig]]:
    """Pass 0's units of work, numbered in read order: every file of a file source (an uncompressed
    JSON Lines file over ``split_file_bytes``: each of its byte ranges), or a whole source."""
    return list(enumerate(rng for src in sources for part in source_parts(src)
                          for rng in split_part(part, split_file_bytes)))


def split_unit(work: Path, unit: int, src: SourceConfig, shard_docs: int, max_line_bytes: int) -> list[str]:
    """Pass 0 for one unit: its documents into input shards ``input-UUUUU-KKKKK`` of ``shard_docs``
    documents, its quarantined records to ``quarantine-UUUUU.jsonl``, then ``split-UUUUU.json`` (the
    unit's shards and how many records it quarantined) as its completion
    mark. A finished unit is not read again; shards of an interrupted one are not written again (their
    content is fixed by the recipe). Returns the unit's shard names in order."""
    done = split_path(work, unit)
    if done.exists():
        return read_json(done)["shards"]
    q = Quarantine(quarantine_path(work, unit))
    docs = read_range(src, q, max_line_bytes) if isinstance(src, JsonlRange) else read_source(src, q, max_line_bytes)
    shards: list[str] = []
    while batch := list(itertools.islice(docs, shard_docs)):
        name = f"{unit:05d}-{len(shards):05d}"
        path = work / f"input-{name}{SHARD_EXT}"
        if not path.exists():
            write_jsonl(path, (d.to_record() for d in batch))
        shards.append(name)
    q.close()
    write_json(done, {"source": src.name, "shards": shards, "quarantined": q.total})
    return shards


def quarantine_path(work: Path, unit: int) -> Path:
    """A split unit's quarantined records, streamed to disk as they are found."""
    return work / f"quarantine-{unit:05d}.jsonl"


# ---- pass 1: clean


def clean_paths(work: Path, shard: str) -> tuple[Path, Path]:
    """The cleaned documents of a shard and its arrays (written last: the shard's completion mark)."""
    return work / f"clean-{shard}{SHARD_EXT}", work / f"clean-{shard}.npz"


class ShardCleaner:
    """Pass 1 for one shard at a time: the cleaning rules, quality scores, the exact-dedup hash and the
    MinHash signature of every document. Built once per worker process (local) or Ray actor (ray).

    Writes ``clean-<shard>.jsonl.zst`` (every document after the rules, with the rule that removed it)
    and then ``clean-<shard>.npz`` (per document: kept by the rules, characters before cleaning, exact
    hash, quality score; the signatures of those kept; the formatters' change counts), each atomically.
    """

    def __init__(self, work: str, clean_cfg, dedup: str, minhash_cfg, scorer_path: str | None, threads: int = 0):
        self.work = Path(work)
        self.cleaner = Cleaner.from_config(clean_cfg)
        self.dedup = dedup
        # threads: the cores an embedding scorer may use here (0: PyTorch's default)
        self.scorer = load_scorer(scorer_path, threads) if scorer_path else None
        self.signer = Signer.from_config(minhash_cfg) if dedup == "minhash" else None

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


# ---- pass 2: dedup


@dataclass
class Dedup:
    """Pass 2's result: every document's fate, and the near-duplicate clusters.

    ``fates`` holds every document of every shard in read order (a ``.npy`` file in ``work/``, mapped,
    not read into memory); shard ``i`` is ``fates[starts[i]:starts[i + 1]]``. ``offsets[i]`` is the
    position, among the documents that reached the near-duplicate check, of the first such document
    of shard ``i`` (the index ``near`` is read at)."""

    fates: np.ndarray
    starts: list[int]
    offsets: list[int]
    near: NearDuplicates | None
    changes: Counter

    def shard(self, i: int) -> np.ndarray:
        return self.fates[self.starts[i]:self.starts[i + 1]]


# Exact dedup: a document's digest (two 64-bit halves) and its position among all documents read.
EXACT_ROW = np.dtype([("d0", "<u8"), ("d1", "<u8"), ("pos", "<i8")])
# Memory of ``exact_partition`` per document of its partition (the rows, their sort order, the sorted
# digests; measured in tests/corpus/test_dedup_partitions.py), and what it takes whatever its size.
EXACT_BYTES_PER_DOC = 64
EXACT_FIXED_BYTES = 16 << 20


def exact_partition(task: dict) -> dict:
    """One exact-dedup task: the documents of ``task["rows"]`` (rows of ``EXACT_ROW`` in read order)
    whose digest an earlier one of them has; their positions, ascending, go to ``task["out"]``.
    Equal digests fall in one partition, so every document but the first of each text is found."""
    rows = np.load(task["rows"])
    order = np.lexsort((rows["d1"], rows["d0"]))  # stable: equal digests stay in read order
    d0, d1 = rows["d0"][order], rows["d1"][order]
    again = (d0[1:] == d0[:-1]) & (d1[1:] == d1[:-1])
    del d0, d1
    dups = np.sort(rows["pos"][order[1:][again]])
    with atomic_path(Path(task["out"])) as tmp, open(tmp, "wb") as f:
        np.save(f, dups)
    return {"duplicates": int(len(dups)), "out": task["out"]}


def _spill_folder(out: Path, spill_dir: str | None) -> Path:
    base = Path(spill_dir) if spill_dir else out
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".dedup-", dir=base))


def dedup(work: Path, shards: list[tuple[str, str]], tallies: dict[str, Tally], cfg, scored: bool,
          run=run_in_order) -> Dedup:
    """Exact duplicates and the quality band in read order, then near-duplicate clusters (MinHash LSH,
    ``hare.filters.minhash``); each duplicate set keeps the document read first. ``shards``: (name,
    source). Both dedups are tasks over hash partitions (``corpus.dedup_partitions``, or as many as
    keep a task under ``corpus.dedup_memory_mb``), run by ``run(fn, tasks)`` (here, or on the
    executor's workers: ``hare.corpus.workers.run_tasks``); the fates do not depend on the partitions."""
    changes: Counter = Counter()
    spill = _spill_folder(work, cfg.minhash.spill_dir) if cfg.dedup != "none" else None
    try:
        # The digests of the documents the rules kept, scattered to their partitions with their positions.
        parts = cfg.dedup_partitions or partitions_for(len(shards) * cfg.shard_docs, cfg.dedup_memory_mb,
                                                       EXACT_BYTES_PER_DOC, EXACT_FIXED_BYTES)
        scatter = PartitionedAppender([spill / f"exact-{p:05d}.npy" for p in range(parts)], EXACT_ROW) \
            if spill is not None else None
        starts, ok_docs = [0], 0
        for name, source in progress(shards, desc="dedup: digests", unit="shard"):
            with np.load(clean_paths(work, name)[1]) as z:
                ok, chars, digest = z["ok"], z["chars"], z["hash"]
                changes.update(json.loads(str(z["changes"])))
            t = tallies[source]
            t.docs_in += len(ok)
            t.chars_in += int(chars.sum())
            if scatter is not None:
                idx = np.flatnonzero(ok)
                halves = np.ascontiguousarray(digest[idx]).view("<u8").reshape(-1, 2)
                rows = np.empty(len(idx), dtype=EXACT_ROW)
                rows["d0"], rows["d1"], rows["pos"] = halves[:, 0], halves[:, 1], starts[-1] + idx
                scatter.append(rows, partition_of(halves[:, 0], parts))
                ok_docs += len(idx)
            starts.append(starts[-1] + len(ok))
        fates = np.lib.format.open_memmap(work / "fates.npy", mode="w+", dtype=np.uint8, shape=(starts[-1],))
        exact = 0
        if scatter is not None:
            tasks = [{"rows": str(p), "out": str(spill / f"exact-dups-{i:05d}.npy")}
                     for i, p in enumerate(scatter.close())]
            for r in run(exact_partition, tasks):
                dups = np.load(r["out"])
                fates[dups] = Fate.EXACT_DUPLICATE
                exact += len(dups)
        near, offsets = _band_and_near(work, shards, tallies, cfg, scored, fates, starts, spill, ok_docs - exact, run)
        fates.flush()
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
    return Dedup(fates, starts, offsets, near, changes)


def _band_and_near(work: Path, shards: list[tuple[str, str]], tallies: dict[str, Tally], cfg, scored: bool,
                   fates: np.ndarray, starts: list[int], spill: Path | None, candidates_max: int,
                   run) -> tuple[NearDuplicates | None, list[int]]:
    """The rules' and the quality band's fates, then (``minhash``) the near-duplicates among the
    documents left, marked in ``fates``; returns the clusters and the shards' candidate offsets."""
    index = None
    if cfg.dedup == "minhash":
        parts = cfg.dedup_partitions or partitions_for(candidates_max, cfg.dedup_memory_mb,
                                                       LINK_BYTES_PER_DOC, LINK_FIXED_BYTES)
        index = NearDuplicateIndex.from_config(cfg.minhash, spill, parts)
    offsets: list[int] = []
    candidates = 0
    for i, (name, source) in enumerate(progress(shards, desc="dedup: band", unit="shard")):
        with np.load(clean_paths(work, name)[1]) as z:
            ok, score, sig = z["ok"], z["score"], z["sig"]
        fate = fates[starts[i]:starts[i + 1]]
        fate[~ok] = Fate.RULE
        if scored:
            t = tallies[source]
            j = np.flatnonzero(fate == Fate.KEPT)  # after the rules and exact dedup
            s = score[j]
            t.scores_before.add(s)
            below, above = s < cfg.quality.min_score, s > cfg.quality.max_score
            fate[j[below]] = Fate.QUALITY_BELOW_BAND
            fate[j[above & ~below]] = Fate.QUALITY_ABOVE_BAND
            t.scores_after.add(s[~below & ~above])
        offsets.append(candidates)
        if index is not None:
            index.add_signatures(sig[fate[ok] == Fate.KEPT])
            candidates += int((fate == Fate.KEPT).sum())
    if index is None:
        return None, offsets
    near = index.find(run)
    if candidates != near.n:
        raise RuntimeError(f"corpus: {candidates} documents reached near-dedup, {near.n} signatures")
    for i, start in enumerate(offsets):
        fate = fates[starts[i]:starts[i + 1]]
        pos = np.flatnonzero(fate == Fate.KEPT)
        lo, hi = np.searchsorted(near.duplicates, [start, start + len(pos)])
        fate[pos[near.duplicates[lo:hi] - start]] = Fate.NEAR_DUPLICATE
    return near, offsets


# ---- pass 3: write


def _remove(t: Tally, removed: ShardWriter, rec: dict, reason: str) -> None:
    t.removed[reason] += 1
    t.chars_removed += len(rec["text"])
    removed.write({**rec, "reason": reason})


def write(out: Path, work: Path, shards: list[tuple[str, str]], d: Dedup, tallies: dict[str, Tally],
          shard_docs: int, heldout_fraction: float, seed: int) -> None:
    """Every cleaned document to ``train/``, ``heldout/`` (by ``heldout_draw``) or ``removed/``."""
    for folder in ("train", "heldout", "removed"):
        shutil.rmtree(out / folder, ignore_errors=True)
    near = d.near
    roots = np.unique(near.kept_of) if near is not None else np.zeros(0, dtype=np.int64)
    last = np.zeros(len(roots), dtype=np.int64)  # each cluster's last near-duplicate
    if near is not None:
        np.maximum.at(last, np.searchsorted(roots, near.kept_of), near.duplicates)
    # candidate index -> id of the cluster's kept document, while the cluster has near-duplicates still to come
    kept_ids: dict[int, str] = {}
    with ShardWriter(out / "train", shard_docs) as train, ShardWriter(out / "heldout", shard_docs) as held, \
            ShardWriter(out / "removed", shard_docs, prefix="removed") as removed:
        for i, ((name, source), start) in enumerate(progress(list(zip(shards, d.offsets)), desc="write",
                                                             unit="shard")):
            t = tallies[source]
            fate = d.shard(i)
            # candidate index of each document that reached the near-duplicate check
            cand = start + np.cumsum((fate == Fate.KEPT) | (fate == Fate.NEAR_DUPLICATE)) - 1
            if near is not None:
                dup_at = np.minimum(np.searchsorted(near.duplicates, cand), max(len(near.duplicates) - 1, 0))
                is_root = np.isin(cand, roots) & (fate == Fate.KEPT)
            for j, (rec, code) in enumerate(zip(read_jsonl(clean_paths(work, name)[0]), fate.tolist())):
                if code == Fate.RULE:
                    _remove(t, removed, rec, rec.pop("reason"))
                    continue
                if code == Fate.NEAR_DUPLICATE:
                    k, root = int(dup_at[j]), int(near.kept_of[dup_at[j]])
                    # The kept document comes earlier in read order, so its id is already known.
                    rec["metadata"] = {**rec.get("metadata", {}), "duplicate_of": kept_ids[root],
                                       "jaccard_estimate": round(float(near.jaccard_of[k]), 3)}
                    if last[np.searchsorted(roots, root)] == cand[j]:
                        del kept_ids[root]
                if code != Fate.KEPT:
                    _remove(t, removed, rec, Fate(code).reason)
                    continue
                if near is not None and is_root[j]:
                    kept_ids[int(cand[j])] = rec["id"]
                t.chars_out += len(rec["text"])
                if heldout_draw(rec["id"], seed) < heldout_fraction:
                    t.heldout += 1
                    held.write(rec)
                else:
                    t.train += 1
                    train.write(rec)


def collect_splits(work: Path, units: list[tuple[int, SourceConfig]], known: dict[int, dict] | None = None,
                   quarantine: Path | None = None) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Every input shard in read order as (name, source), and how many records each source
    quarantined (``known``: split records already read, by unit). With ``quarantine``, the units'
    quarantined records are copied there in read order, line by line (never all in memory)."""
    shards: list[tuple[str, str]] = []
    counts: Counter = Counter()
    splits = []
    for u, src in units:
        path = split_path(work, u)
        if u not in (known or {}) and not path.exists():
            raise RuntimeError(f"corpus: input unit {u} ({src.path or src.name}) was not split")
        split = (known or {}).get(u) or read_json(path)
        shards += [(name, split["source"]) for name in split["shards"]]
        counts[split["source"]] += split.get("quarantined", 0)
        splits.append((u, split))
    if quarantine is not None:
        with atomic_open(quarantine) as out:
            for u, split in splits:
                qp = quarantine_path(work, u)
                if split.get("quarantined") and qp.exists():
                    with open(qp, encoding="utf-8") as f:
                        shutil.copyfileobj(f, out)
    missing = [name for name, _ in shards if not clean_paths(work, name)[1].exists()]
    if missing:
        raise RuntimeError(f"corpus: {len(missing)} shards were not cleaned (first: {missing[0]})")
    return shards, dict(counts)
