"""Near-duplicate detection: MinHash signatures, LSH banding and union-find clusters, in bounded memory.

A document is the set of its word n-grams (``ngram`` = 5) taken on normalized text (lowercase,
punctuation removed, digits folded, whitespace collapsed). Each n-gram has a 64-bit hash (a rolling
hash of per-word codes). A signature holds, for each of ``bands x rows`` seeded permutations
``h(x) = (a*x + b) mod (2^31 - 1)`` (universal hashing modulo a Mersenne prime, exact in 64-bit
integer arithmetic; x is the n-gram hash reduced mod p, so two n-grams collide with probability
2^-31), the minimum over the document's n-grams; two signatures agree at a position with
probability equal to the documents' Jaccard similarity (Broder 1997).

LSH: a band is ``rows`` consecutive signature values hashed to 64 bits; documents with an equal band
hash in any band are candidates. Two documents of Jaccard similarity s become candidates with
probability ``1 - (1 - s^rows)^bands``; at the default 14 bands x 8 rows (datatrove/FineWeb) that is
0.05 at s = 0.5, 0.56 at 0.7, 0.92 at 0.8, 0.9996 at 0.9, and the S-curve's midpoint
``(1/bands)^(1/rows)`` is 0.72. A candidate pair is linked when its Jaccard similarity estimated
from the signatures is at least ``threshold`` (0.8, Lee et al. 2022; ``None`` links every candidate
as datatrove does). Linked documents form clusters (union-find); each cluster keeps its member
that was added first, which in the corpus step is the first in the recipe's read order (source
order, then position in the source). Every other member is a near-duplicate of it.

Memory. Signatures (448 bytes a document as uint32) and band hashes (8 bytes a document per band)
are appended to ``.npy`` files in ``workdir`` as documents arrive and renamed into place when
complete; only one batch of n-grams is hashed in memory at a time, so adding takes a fixed ~30 MB
(mostly the word-code cache) whatever the corpus size. Each band can be split by hash into
``partitions`` (a bucket lies whole in one), and clustering runs one task per band partition
(``link_partition``: its hashes, their sort order and union-find parents, about 50 bytes a document
of the partition), then joins the pairs they link (``cluster_pairs``: memory in proportion to the
linked pairs). The tasks can run in other processes or on other machines (the corpus step runs them
on its workers), and their result does not depend on the partition count. Measured with
``benchmarks/minhash_memory.py`` and ``benchmarks/dedup_scale.py``.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hare.core.progress import progress
from hare.core.text import WordCodes, normalize_for_dedup, rolling_hashes
from hare.filters.config import MinHashConfig

log = logging.getLogger("hare.filters.minhash")

MERSENNE = np.uint64((1 << 31) - 1)
_31 = np.uint64(31)
_BATCH_SHINGLES = 1 << 18  # n-grams hashed together: two 2 MB work arrays, small enough to stay in cache
_PAIR_BLOCK = 1 << 14  # candidate pairs verified together: two 448-byte rows each, ~15 MB at most
_WORD_CACHE = 1 << 17  # word codes remembered (~20 MB); cleared when full so memory stays bounded
_SCATTER_BUFFER = 1 << 25  # bytes of partition rows buffered before they go to their files (32 MB)


def candidate_probability(s: float, bands: int = 14, rows: int = 8) -> float:
    """Probability that two documents of Jaccard similarity ``s`` share at least one band (the S-curve)."""
    return 1.0 - (1.0 - s**rows) ** bands


def _mod_mersenne(v: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """v mod (2^31 - 1) for v < 2^63, in place: 2^31 = 1 (mod p), so fold the high bits onto the low ones."""
    tmp = np.empty_like(v) if tmp is None else tmp
    for _ in range(2):  # after two folds v <= p, and v == p only for multiples of p
        np.right_shift(v, _31, out=tmp)
        np.bitwise_and(v, MERSENNE, out=v)
        v += tmp
    np.equal(v, MERSENNE, out=tmp)
    tmp *= MERSENNE
    v -= tmp
    return v


class Shingler:
    """Word n-gram hashes of normalized text, as a uint64 array (duplicates kept: the minimum ignores them)."""

    def __init__(self, ngram: int = 5):
        self.ngram = ngram
        self._codes = WordCodes(max_size=_WORD_CACHE)

    def __call__(self, text: str, normalized: bool = False) -> np.ndarray:
        """n-gram hashes of ``text`` (already passed through ``normalize_for_dedup`` when ``normalized``)."""
        arr = self._codes.encode((text if normalized else normalize_for_dedup(text)).split())
        # A text shorter than one n-gram is a single shingle of all its words (an empty text: of none),
        # so it can match only a text with the same words, as exact dedup would.
        n = min(self.ngram, len(arr))
        return rolling_hashes(arr, n) if n else np.zeros(1, dtype=np.uint64)


def shingle_set(text: str, ngram: int = 5) -> set[int]:
    """The n-gram hashes of a text as a Python set (for exact Jaccard checks)."""
    return set(Shingler(ngram)(text).tolist())


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class MinHasher:
    """Seeded permutations ``(a*x + b) mod (2^31 - 1)`` and the signatures they give."""

    def __init__(self, num_perm: int = 112, seed: int = 1):
        rng = np.random.default_rng(seed)
        p = int(MERSENNE)
        self.a = rng.integers(1, p, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, p, size=num_perm, dtype=np.uint64)
        self.num_perm = num_perm

    def signatures(self, hashes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Signatures (documents x permutations, uint32) of documents whose n-gram hashes are
        ``hashes[starts[i]:starts[i + 1]]`` (every document has at least one)."""
        x = _mod_mersenne(hashes.astype(np.uint64, copy=True))  # < 2^31, so a*x + b < 2^62: no overflow
        out = np.empty((self.num_perm, len(starts)), dtype=np.uint32)
        v, tmp = np.empty_like(x), np.empty_like(x)
        # One permutation at a time over contiguous arrays, with preallocated buffers: about 7x faster
        # than a (n-grams x permutations) block, whose temporaries fall out of cache.
        for k in range(self.num_perm):
            np.multiply(x, self.a[k], out=v)
            v += self.b[k]
            # v mod p in five passes: a*x + b <= p*(p - 1), so one fold of the high bits leaves v < 2p,
            # and min(v, v - p) (v - p wraps around to a huge number when v < p) finishes it.
            np.right_shift(v, _31, out=tmp)
            np.bitwise_and(v, MERSENNE, out=v)
            v += tmp
            np.subtract(v, MERSENNE, out=tmp)
            np.minimum(v, tmp, out=v)
            out[k] = np.minimum.reduceat(v, starts)
        return out.T


class Signer:
    """MinHash signatures of documents, a batch at a time (used by the corpus step's workers)."""

    def __init__(self, ngram: int = 5, num_perm: int = 112, seed: int = 1):
        self.num_perm = num_perm
        self.shingler = Shingler(ngram)
        self.hasher = MinHasher(num_perm, seed)

    @classmethod
    def from_config(cls, cfg: MinHashConfig) -> "Signer":
        return cls(cfg.ngram, cfg.bands * cfg.rows, cfg.seed)

    def __call__(self, texts, normalized: bool = False) -> np.ndarray:
        """Signatures (documents x permutations, uint32) of ``texts``; n-grams are hashed in batches
        of about ``_BATCH_SHINGLES`` so memory stays fixed whatever the number of texts."""
        out, buf, size = [], [], 0
        for t in texts:
            h = self.shingler(t, normalized)
            buf.append(h)
            size += len(h)
            if size >= _BATCH_SHINGLES:
                out.append(self._sign(buf))
                buf, size = [], 0
        if buf or not out:
            out.append(self._sign(buf))
        return np.concatenate(out)

    def _sign(self, hashes: list[np.ndarray]) -> np.ndarray:
        if not hashes:
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        lengths = np.fromiter((len(h) for h in hashes), dtype=np.int64, count=len(hashes))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return self.hasher.signatures(np.concatenate(hashes), starts)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Share of equal signature positions, row by row (an unbiased estimate of Jaccard similarity)."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)


class NpyAppender:
    """A ``.npy`` file written in appended pieces; its final shape is known only at ``close``.

    Rows go to a hidden temporary file behind a fixed-size header; ``close`` writes the real header
    and renames the file into place, so a crash never leaves a truncated ``.npy`` under its name.
    With ``hold_open`` false the file is opened for each append only, so that thousands of them
    (the partitions of ``PartitionedAppender``) hold no file handles.
    """

    HEADER = 128  # magic (6) + version (2) + length (2) + a padded dict literal; a multiple of 64

    def __init__(self, path: str | Path, dtype, row_shape: tuple[int, ...] = (), hold_open: bool = True):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.tmp, "wb") as f:
            f.write(b"\0" * self.HEADER)
        self._f = open(self.tmp, "ab") if hold_open else None

    def append(self, arr: np.ndarray) -> None:
        if arr.dtype != self.dtype or arr.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: expected rows of {self.dtype} {self.row_shape}, "
                             f"got {arr.dtype} {arr.shape[1:]}")
        if self._f is not None:
            self._f.write(np.ascontiguousarray(arr).tobytes())
        else:
            with open(self.tmp, "ab") as f:
                f.write(np.ascontiguousarray(arr).tobytes())
        self.rows += len(arr)

    def close(self) -> Path:
        header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": (self.rows, *self.row_shape)}).encode("latin1")
        pad = self.HEADER - 10 - len(header) - 1
        if pad < 0:
            raise ValueError(f"{self.path.name}: shape too long for the header")
        if self._f is not None:
            self._f.close()
        with open(self.tmp, "r+b") as f:
            f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", self.HEADER - 10) + header + b" " * pad + b"\n")
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        if self._f is not None:
            self._f.close()
        self.tmp.unlink(missing_ok=True)


class PartitionedAppender:
    """Rows scattered by a partition number to one ``NpyAppender`` each, in the order they come.

    Rows are buffered (``_SCATTER_BUFFER`` bytes in all) and appended partition by partition, so
    any number of partitions costs neither a file handle each nor a write per row."""

    def __init__(self, paths: list[Path], dtype):
        self.files = [NpyAppender(p, dtype, hold_open=len(paths) <= 32) for p in paths]
        self._buf: list[list[np.ndarray]] = [[] for _ in paths]
        self._size = 0

    def append(self, rows: np.ndarray, part: np.ndarray) -> None:
        """Add ``rows[i]`` to partition ``part[i]``, after the rows added to it before."""
        order = np.argsort(part, kind="stable")  # stable: a partition's rows stay in their order
        counts = np.bincount(part, minlength=len(self.files))
        rows, ends = rows[order], np.cumsum(counts)
        for p in np.flatnonzero(counts):
            self._buf[p].append(rows[ends[p] - counts[p]:ends[p]])
        self._size += rows.nbytes
        if self._size >= _SCATTER_BUFFER:
            self.flush()

    def flush(self) -> None:
        for f, buf in zip(self.files, self._buf):
            if buf:
                f.append(np.concatenate(buf))
                buf.clear()
        self._size = 0

    def close(self) -> list[Path]:
        self.flush()
        return [f.close() for f in self.files]

    def discard(self) -> None:
        for f in self.files:
            f.discard()


@dataclass
class NearDuplicates:
    """The clusters found: every near-duplicate (sorted) with the member its cluster keeps, the
    member read first. Memory grows with the near-duplicates, not with the documents."""

    n: int  # documents checked
    duplicates: np.ndarray  # int64, ascending: the documents that are near-duplicates
    kept_of: np.ndarray  # int64: for each of them, the member its cluster keeps (always an earlier one)
    jaccard_of: np.ndarray  # float32: for each of them, the Jaccard similarity to it estimated from the signatures
    stats: dict = field(default_factory=dict)

    @property
    def kept(self) -> np.ndarray:
        """For every document the index of the member its cluster keeps (``kept[i] == i``: kept)."""
        out = np.arange(self.n, dtype=np.int64)
        out[self.duplicates] = self.kept_of
        return out

    @property
    def jaccard(self) -> np.ndarray:
        """For every document the estimated Jaccard similarity to the kept member (1 for kept documents)."""
        out = np.ones(self.n, dtype=np.float32)
        out[self.duplicates] = self.jaccard_of
        return out

    def is_duplicate(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        out[self.duplicates] = True
        return out


# A band partition's rows when the band is split (``partitions`` > 1): the band hash and the document.
BAND_ROW = np.dtype([("h", "<u8"), ("i", "<i8")])
PAIR_ROW = np.dtype([("u", "<i8"), ("v", "<i8")])
# Memory of ``link_partition`` per document of its partition (the sort order, bucket ends, active
# positions, union-find parents and their temporaries; measured in tests/corpus/test_dedup_partitions.py),
# and what it takes whatever the partition's size (one block of pairs' signatures, numpy's buffers).
LINK_BYTES_PER_DOC = 64
LINK_FIXED_BYTES = 32 << 20


def partitions_for(docs: int, memory_mb: int, bytes_per_doc: int, fixed_bytes: int = LINK_FIXED_BYTES) -> int:
    """How many partitions keep a task under ``memory_mb``: each partition expected to fill half of
    what is left after ``fixed_bytes`` (hash partitions are uneven: many copies of one text share one)."""
    room = memory_mb * (1 << 20) - fixed_bytes
    if room < (1 << 20):
        raise ValueError(f"{memory_mb} MB: too little memory for a deduplication task (at least "
                         f"{fixed_bytes // (1 << 20) + 1} MB)")
    return max(1, -(-2 * docs * bytes_per_doc // room))


def partition_of(h: np.ndarray, partitions: int) -> np.ndarray:
    """The partition (0 .. ``partitions`` - 1) of each 64-bit hash, by its top 32 bits."""
    return ((h >> np.uint64(32)) * np.uint64(partitions) >> np.uint64(32)).astype(np.int64)


def link_partition(task: dict) -> dict:
    """One LSH task: the candidate pairs of one band partition (``task["band"]``: band hashes, or
    rows of ``BAND_ROW``), verified against ``task["signatures"]`` and written, when linked, to
    ``task["out"]`` (rows of ``PAIR_ROW``). Returns the pair counts and the output's path.

    A bucket lies whole in one partition, so a pair's fate depends on its bucket only: it is checked
    unless its documents are already joined by pairs of the same bucket linked at a smaller distance
    in read order (``_bucket_pairs``' levels); it is linked when its estimated Jaccard similarity is at
    least ``task["threshold"]`` (``None``: always). The counts are thus the same however a band is
    partitioned, and the clusters (joined by ``cluster_pairs``) are those of verifying every pair."""
    mm = np.load(task["band"], mmap_mode="r")
    ids = mm["i"] if mm.dtype.names else None  # None: the partition is the whole band, in document order
    n = len(mm)
    sigs = np.load(task["signatures"], mmap_mode="r")
    threshold = task["threshold"]
    st = {"candidate_pairs": 0, "rejected_pairs": 0, "linked_pairs": 0}
    parent = np.arange(n, dtype=np.int64)  # over the partition's rows; joined level by level
    out = NpyAppender(task["out"], PAIR_ROW)
    level, ru_level, rv_level = 0, [], []
    try:
        for d, u, v in _bucket_pairs(np.array(mm["h"] if ids is not None else mm), task.get("window", BUCKET_WINDOW)):
            if d != level:
                _join_level(parent, ru_level, rv_level)
                level = d
            ru, rv = _find(parent, u), _find(parent, v)
            new = ru != rv  # pairs already in one cluster need no check
            u, v, ru, rv = u[new], v[new], ru[new], rv[new]
            st["candidate_pairs"] += len(u)
            if ids is not None:
                u, v = np.asarray(ids[u]), np.asarray(ids[v])
            if threshold is not None and len(u):
                ok = estimated_jaccard(sigs[u], sigs[v]) >= threshold
                st["rejected_pairs"] += int((~ok).sum())
                u, v, ru, rv = u[ok], v[ok], ru[ok], rv[ok]
            st["linked_pairs"] += len(u)
            if len(u):
                ru_level.append(ru)
                rv_level.append(rv)
                pairs = np.empty(len(u), dtype=PAIR_ROW)
                pairs["u"], pairs["v"] = u, v
                out.append(pairs)
        out.close()
    except BaseException:
        out.discard()
        raise
    return {**st, "out": task["out"]}


def _join_level(parent: np.ndarray, ru: list[np.ndarray], rv: list[np.ndarray]) -> None:
    if ru:
        _union(parent, _find(parent, np.concatenate(ru)), _find(parent, np.concatenate(rv)))
        _compress(parent)
        ru.clear()
        rv.clear()


def cluster_pairs(pair_files: list[str | Path], signatures: str | Path, n: int, stats: dict) -> NearDuplicates:
    """The clusters of the linked pairs of every partition (union-find over the documents in them);
    each keeps its earliest document. Memory grows with the linked pairs only."""
    parts = [np.load(p) for p in pair_files]
    u = np.concatenate([p["u"] for p in parts]) if parts else np.zeros(0, np.int64)
    v = np.concatenate([p["v"] for p in parts]) if parts else np.zeros(0, np.int64)
    del parts
    nodes = np.unique(np.concatenate([u, v]))
    parent = np.arange(len(nodes), dtype=np.int64)  # parent[i] <= i: a root is its cluster's first document
    _union(parent, np.searchsorted(nodes, u), np.searchsorted(nodes, v))
    del u, v
    _compress(parent)
    dup = np.flatnonzero(parent != np.arange(len(nodes)))
    kept, dup = nodes[parent[dup]], nodes[dup]
    del nodes, parent
    sigs = np.load(signatures, mmap_mode="r")
    jac = np.ones(len(dup), dtype=np.float32)
    for lo in range(0, len(dup), _PAIR_BLOCK):
        jac[lo:lo + _PAIR_BLOCK] = estimated_jaccard(sigs[dup[lo:lo + _PAIR_BLOCK]], sigs[kept[lo:lo + _PAIR_BLOCK]])
    st = {"documents": n, **stats, "duplicates": int(len(dup)), "clusters": int(len(np.unique(kept)))}
    log.info("minhash: %d documents, %d candidate pairs, %d linked, %d rejected; %d near-duplicates in %d "
             "clusters", n, st["candidate_pairs"], st["linked_pairs"], st["rejected_pairs"], st["duplicates"],
             st["clusters"])
    return NearDuplicates(n, dup, kept, jac, st)


def run_in_order(fn, tasks: list[dict], desc: str = "tasks") -> list[dict]:
    """``fn`` of every task here, one after the other (a task runner of ``NearDuplicateIndex.find``)."""
    return [fn(t) for t in progress(tasks, desc=desc, total=len(tasks), unit="task")]


class NearDuplicateIndex:
    """Add documents in read order, then ``find()`` the near-duplicate clusters.

    Signatures and band hashes are spilled to ``workdir`` (``signatures.npy``; ``band-BBB.npy``, or
    with ``partitions`` > 1 ``band-BBB-PPPPP.npy``: each band split by hash into that many parts) as
    documents arrive; memory holds one batch of documents while adding. ``find`` runs one
    ``link_partition`` task per band partition (through ``run``: here, or on a pool of processes or
    Ray actors), each holding one partition, then joins their pairs (``cluster_pairs``). The clusters
    do not depend on ``partitions``.
    """

    def __init__(self, workdir: str | Path, ngram: int = 5, bands: int = 14, rows: int = 8,
                 threshold: float | None = 0.8, seed: int = 1, partitions: int = 1):
        self.bands, self.rows, self.threshold = bands, rows, threshold
        self.partitions = partitions
        self.workdir = Path(workdir)
        self.num_perm = bands * rows
        self.signer = Signer(ngram, self.num_perm, seed)
        # Random odd multipliers combine a band's rows into one 64-bit hash.
        self._band_mult = np.random.default_rng([seed, 1]).integers(
            0, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._sigs = NpyAppender(self.workdir / "signatures.npy", np.uint32, (self.num_perm,))
        # One partition: a band's file is its hashes alone, in document order; more: rows of BAND_ROW.
        self._parts = PartitionedAppender([self.band_path(b, None if partitions == 1 else r) for b in range(bands)
                                           for r in range(partitions)], np.uint64 if partitions == 1 else BAND_ROW)
        self._buf: list[np.ndarray] = []
        self._buf_len = 0
        self._rows = 0  # documents whose signatures are spilled
        self.n = 0
        self._closed = False

    @classmethod
    def from_config(cls, cfg: MinHashConfig, workdir: str | Path, partitions: int = 1) -> "NearDuplicateIndex":
        return cls(workdir, cfg.ngram, cfg.bands, cfg.rows, cfg.threshold, cfg.seed, partitions)

    def band_path(self, b: int, part: int | None = None) -> Path:
        return self.workdir / (f"band-{b:03d}.npy" if part is None else f"band-{b:03d}-{part:05d}.npy")

    @property
    def signature_path(self) -> Path:
        return self.workdir / "signatures.npy"

    def add(self, text: str, normalized: bool = False) -> int:
        """Add one document; returns its index (the order of ``add`` calls). ``normalized``: the text
        has already been through ``normalize_for_dedup`` (the corpus step hashes it for exact dedup)."""
        h = self.signer.shingler(text, normalized)
        self._buf.append(h)
        self._buf_len += len(h)
        self.n += 1
        if self._buf_len >= _BATCH_SHINGLES:
            self._flush()
        return self.n - 1

    def add_signatures(self, sigs: np.ndarray) -> None:
        """Add documents whose signatures were computed elsewhere (``Signer`` with the same settings),
        after every document added so far."""
        self._flush()
        self._append(np.asarray(sigs, dtype=np.uint32).reshape(-1, self.num_perm))
        self.n += len(sigs)

    def band_hashes(self, sigs: np.ndarray) -> np.ndarray:
        """One 64-bit hash per (document, band): the band's rows times odd constants, summed mod 2^64."""
        rows = sigs.reshape(len(sigs), self.bands, self.rows).astype(np.uint64)
        return (rows * self._band_mult).sum(axis=2, dtype=np.uint64)

    def _flush(self) -> None:
        if not self._buf:
            return
        sigs = self.signer._sign(self._buf)
        self._buf, self._buf_len = [], 0
        self._append(sigs)

    def _append(self, sigs: np.ndarray) -> None:
        self._sigs.append(sigs)
        bh = self.band_hashes(sigs)
        if self.partitions == 1:
            for b in range(self.bands):
                self._parts.append(np.ascontiguousarray(bh[:, b]), np.full(len(sigs), b))
        else:
            rows = np.empty(len(sigs), dtype=BAND_ROW)
            rows["i"] = np.arange(self._rows, self._rows + len(sigs))
            for b in range(self.bands):
                rows["h"] = bh[:, b]
                self._parts.append(rows, b * self.partitions + partition_of(bh[:, b], self.partitions))
        self._rows += len(sigs)

    def close(self) -> None:
        """Hash the last batch and rename the spill files into place."""
        if self._closed:
            return
        self._flush()
        self._sigs.close()
        self._parts.close()
        self._closed = True

    def discard(self) -> None:
        """Drop unfinished spill files (after an error)."""
        self._sigs.discard()
        self._parts.discard()

    def tasks(self) -> list[dict]:
        """The ``link_partition`` tasks: one per band partition (call after ``close``)."""
        parts = [None] if self.partitions == 1 else range(self.partitions)
        return [{"band": str(self.band_path(b, r)), "signatures": str(self.signature_path), "threshold": self.threshold,
                 "out": str(self.workdir / f"pairs-{b:03d}-{0 if r is None else r:05d}.npy")}
                for b in range(self.bands) for r in parts]

    def find(self, run=run_in_order) -> NearDuplicates:
        """The clusters: the tasks run by ``run(fn, tasks)`` (which returns ``fn``'s results), then
        joined; each cluster keeps its earliest document."""
        self.close()
        done = run(link_partition, self.tasks())
        st = {k: sum(r[k] for r in done) for k in ("candidate_pairs", "rejected_pairs", "linked_pairs")}
        return cluster_pairs([r["out"] for r in done], self.signature_path, self.n, st)


# Within an LSH bucket every member is verified against every earlier member up to this many
# positions back (in read order): all pairs for buckets of up to this size, and work linear in the
# bucket size beyond it (a bucket that large holds one template's copies, linked long before).
BUCKET_WINDOW = 2048


def _bucket_pairs(h: np.ndarray, window: int = BUCKET_WINDOW):
    """Candidate pairs of one band (or band partition), in blocks ``(d, earlier, later)`` of row
    arrays: every pair of members of a bucket (equal hashes) at most ``window`` apart in read order,
    nearest first (``d``: how far apart, among the bucket's members).

    Verifying every candidate pair, and not only a chain through the bucket, is what makes the
    clusters those of all-pairs verification: B ~ C is found even when the documents between them
    in the bucket are like neither. Pairs whose documents are already in one cluster are dropped by
    ``link_partition`` before their signatures are compared, so clusters of copies cost little.
    ``h`` is dropped once sorted: pass it without keeping a reference, and it is freed.
    """
    n = len(h)
    if n < 2:
        return
    order = np.argsort(h, kind="stable")  # stable: within a bucket, documents stay in read order
    hs = h[order]
    del h
    starts = np.flatnonzero(np.concatenate(([True], hs[1:] != hs[:-1])))
    del hs
    sizes = np.diff(np.append(starts, n))
    del starts
    end = np.repeat(np.cumsum(sizes), sizes)  # end of each position's bucket
    active = np.flatnonzero(end - np.arange(n) > 1)
    del sizes
    for d in range(1, window + 1):
        active = active[active + d < end[active]]
        if not len(active):
            return
        for lo in range(0, len(active), _PAIR_BLOCK):
            a = active[lo:lo + _PAIR_BLOCK]
            yield d, order[a], order[a + d]


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    r = parent[x]
    while True:
        rr = parent[r]
        if np.array_equal(rr, r):
            return r
        r = rr


def _union(parent: np.ndarray, ru: np.ndarray, rv: np.ndarray) -> None:
    """Join the clusters of root pairs: the larger root is hooked under the smaller, again until every
    pair shares a root (hooks of one root to several others in one round keep only the smallest)."""
    while len(ru):
        lo, hi = np.minimum(ru, rv), np.maximum(ru, rv)
        np.minimum.at(parent, hi, lo)
        ru, rv = _find(parent, lo), _find(parent, hi)
        keep = ru != rv
        ru, rv = ru[keep], rv[keep]


def _compress(parent: np.ndarray) -> None:
    """Point every document straight at its root (pointer jumping), so later finds take one step."""
    while True:
        pp = parent[parent]
        if np.array_equal(pp, parent):
            return
        parent[:] = pp
