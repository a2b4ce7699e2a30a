"""The corpus step's four passes over shards of ``shard_docs`` documents, in the step's ``work/`` folder.

  0 split   ``split_unit``: a unit (one file of a file source, or a whole source of another kind) cut,
            in read order, into input shards; malformed records go to the unit's quarantine file.
  1 clean   ``ShardCleaner``: per shard, the cleaning rules, the quality score, the exact-dedup hash
            and the MinHash signature of every document, written as a records file and an arrays
            file (written last: the shard's completion mark).
  2 dedup   ``dedup``: in read order, from the arrays only: exact duplicates, the quality band, then
            the MinHash LSH clusters of what is left; every document gets its ``Fate``.
  3 write   ``write``: the cleaned records read again in order, each sent by its fate to train, held
            out or removed (with its reason; a near-duplicate names the document kept in its place).

Which document of a duplicate set is kept depends only on read order, so the output is the same for
any number of workers and either executor (``hare.corpus.workers``).
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
from hare.filters.minhash import NearDuplicateIndex, NearDuplicates, Signer
from hare.filters.quality import QualityScorer
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
class Tally:
    """What the passes count for one source; the step's stats are made from it."""

    docs_in: int = 0
    chars_in: int = 0
    removed: Counter = field(default_factory=Counter)
    chars_removed: int = 0
    train: int = 0
    heldout: int = 0
    chars_out: int = 0
    scores_before: list[float] = field(default_factory=list)  # quality scores of the cleaned documents
    scores_after: list[float] = field(default_factory=list)  # ... of those inside the band


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

    def __init__(self, work: str, clean_cfg, dedup: str, minhash_cfg, scorer_path: str | None):
        self.work = Path(work)
        self.cleaner = Cleaner.from_config(clean_cfg)
        self.dedup = dedup
        self.scorer = QualityScorer.load(scorer_path) if scorer_path else None
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
    """Pass 2's result: every document's fate, shard by shard, and the near-duplicate clusters.

    ``offsets[i]`` is the position, among the documents that reached the near-duplicate check, of the
    first such document of shard ``i`` (the index ``near.kept`` and ``near.jaccard`` are read at)."""

    fates: list[np.ndarray]
    offsets: list[int]
    near: NearDuplicates | None
    changes: Counter


def _spill_folder(out: Path, spill_dir: str | None) -> Path:
    base = Path(spill_dir) if spill_dir else out
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".minhash-", dir=base))


def dedup(work: Path, shards: list[tuple[str, str]], tallies: dict[str, Tally], cfg, scored: bool) -> Dedup:
    """Exact duplicates and the quality band in read order, then near-duplicate clusters (MinHash LSH,
    ``hare.filters.minhash``); each cluster keeps the document read first. ``shards``: (name, source)."""
    seen: set[bytes] = set()
    fates: list[np.ndarray] = []
    offsets: list[int] = []
    changes: Counter = Counter()
    candidates = 0
    near = None
    spill = _spill_folder(work, cfg.minhash.spill_dir) if cfg.dedup == "minhash" else None
    try:
        index = NearDuplicateIndex.from_config(cfg.minhash, spill) if spill is not None else None
        for name, source in progress(shards, desc="dedup", unit="shard"):
            with np.load(clean_paths(work, name)[1]) as z:
                ok, chars, digest, score, sig = z["ok"], z["chars"], z["hash"], z["score"], z["sig"]
                changes.update(json.loads(str(z["changes"])))
            t = tallies[source]
            t.docs_in += len(ok)
            t.chars_in += int(chars.sum())
            fate = np.where(ok, Fate.KEPT, Fate.RULE).astype(np.uint8)
            for j in np.flatnonzero(ok):
                if cfg.dedup != "none":
                    h = digest[j].tobytes()
                    if h in seen:
                        fate[j] = Fate.EXACT_DUPLICATE
                        continue
                    seen.add(h)
                if scored:
                    s = float(score[j])
                    t.scores_before.append(s)
                    if s < cfg.quality.min_score:
                        fate[j] = Fate.QUALITY_BELOW_BAND
                    elif s > cfg.quality.max_score:
                        fate[j] = Fate.QUALITY_ABOVE_BAND
                    else:
                        t.scores_after.append(s)
            offsets.append(candidates)
            if index is not None:
                index.add_signatures(sig[fate[ok] == Fate.KEPT])
                candidates += int((fate == Fate.KEPT).sum())
            fates.append(fate)
        if index is not None:
            near = index.find()
            if candidates != len(near.kept):
                raise RuntimeError(f"corpus: {candidates} documents reached near-dedup, {len(near.kept)} signatures")
            for fate, start in zip(fates, offsets):
                pos = np.flatnonzero(fate == Fate.KEPT)
                g = start + np.arange(len(pos))
                fate[pos[near.kept[g] != g]] = Fate.NEAR_DUPLICATE
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
    return Dedup(fates, offsets, near, changes)


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
    roots = set(near.kept[near.is_duplicate()].tolist()) if near is not None else set()
    kept_ids: dict[int, str] = {}  # candidate index -> id of the cluster's kept document
    with ShardWriter(out / "train", shard_docs) as train, ShardWriter(out / "heldout", shard_docs) as held, \
            ShardWriter(out / "removed", shard_docs, prefix="removed") as removed:
        for (name, source), fate, start in progress(list(zip(shards, d.fates, d.offsets)), desc="write",
                                                    unit="shard"):
            t = tallies[source]
            # candidate index of each document that reached the near-duplicate check
            cand = start + np.cumsum((fate == Fate.KEPT) | (fate == Fate.NEAR_DUPLICATE)) - 1
            for j, (rec, code) in enumerate(zip(read_jsonl(clean_paths(work, name)[0]), fate.tolist())):
                if code == Fate.RULE:
                    _remove(t, removed, rec, rec.pop("reason"))
                    continue
                if code == Fate.NEAR_DUPLICATE:
                    g = int(cand[j])
                    # The kept document comes earlier in read order, so its id is already known.
                    rec["metadata"] = {**rec.get("metadata", {}), "duplicate_of": kept_ids[int(near.kept[g])],
                                       "jaccard_estimate": round(float(near.jaccard[g]), 3)}
                if code != Fate.KEPT:
                    _remove(t, removed, rec, Fate(code).reason)
                    continue
                if near is not None and int(cand[j]) in roots:
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
