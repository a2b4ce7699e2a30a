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
(mostly the word-code cache) whatever the corpus size. Clustering then reads one band file at a
time: the band's hashes, their sort order and the union-find parents. Measured with
``benchmarks/minhash_memory.py`` (100-word documents): 49 bytes of memory and 560 bytes of disk a
document, i.e. 49 MB and 560 MB per million documents; a million documents are clustered in 1.7 s.
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
            _mod_mersenne(v, tmp)
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
    """

    HEADER = 128  # magic (6) + version (2) + length (2) + a padded dict literal; a multiple of 64

    def __init__(self, path: str | Path, dtype, row_shape: tuple[int, ...] = ()):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.tmp, "wb")
        self._f.write(b"\0" * self.HEADER)

    def append(self, arr: np.ndarray) -> None:
        if arr.dtype != self.dtype or arr.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: expected rows of {self.dtype} {self.row_shape}, "
                             f"got {arr.dtype} {arr.shape[1:]}")
        self._f.write(np.ascontiguousarray(arr).tobytes())
        self.rows += len(arr)

    def close(self) -> Path:
        header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": (self.rows, *self.row_shape)}).encode("latin1")
        pad = self.HEADER - 10 - len(header) - 1
        if pad < 0:
            raise ValueError(f"{self.path.name}: shape too long for the header")
        self._f.seek(0)
        self._f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", self.HEADER - 10) + header + b" " * pad + b"\n")
        self._f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self._f.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class NearDuplicates:
    """The clusters found: for every document the index of the member its cluster keeps."""

    kept: np.ndarray  # int64; kept[i] == i for a document that is kept
    jaccard: np.ndarray  # float32; estimated Jaccard similarity to the kept member (1 for kept documents)
    stats: dict = field(default_factory=dict)

    def is_duplicate(self) -> np.ndarray:
        return self.kept != np.arange(len(self.kept))


class NearDuplicateIndex:
    """Add documents in read order, then ``find()`` the near-duplicate clusters.

    Signatures and band hashes are spilled to ``workdir`` (``signatures.npy``, ``band-NNN.npy``) as
    documents arrive; memory holds one batch of documents while adding, and one band while finding.
    """

    def __init__(self, workdir: str | Path, ngram: int = 5, bands: int = 14, rows: int = 8,
                 threshold: float | None = 0.8, seed: int = 1):
        self.bands, self.rows, self.threshold = bands, rows, threshold
        self.workdir = Path(workdir)
        self.num_perm = bands * rows
        self.signer = Signer(ngram, self.num_perm, seed)
        # Random odd multipliers combine a band's rows into one 64-bit hash.
        self._band_mult = np.random.default_rng([seed, 1]).integers(
            0, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._sigs = NpyAppender(self.workdir / "signatures.npy", np.uint32, (self.num_perm,))
        self._bands = [NpyAppender(self.band_path(b), np.uint64) for b in range(bands)]
        self._buf: list[np.ndarray] = []
        self._buf_len = 0
        self.n = 0
        self._closed = False

    @classmethod
    def from_config(cls, cfg: MinHashConfig, workdir: str | Path) -> "NearDuplicateIndex":
        return cls(workdir, cfg.ngram, cfg.bands, cfg.rows, cfg.threshold, cfg.seed)

    def band_path(self, b: int) -> Path:
        return self.workdir / f"band-{b:03d}.npy"

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
        for b, w in enumerate(self._bands):
            w.append(np.ascontiguousarray(bh[:, b]))

    def close(self) -> None:
        """Hash the last batch and rename the spill files into place."""
        if self._closed:
            return
        self._flush()
        self._sigs.close()
        for w in self._bands:
            w.close()
        self._closed = True

    def discard(self) -> None:
        """Drop unfinished spill files (after an error)."""
        for w in [self._sigs, *self._bands]:
            w.discard()

    def find(self) -> NearDuplicates:
        """Cluster the documents band by band; each cluster keeps its earliest document."""
        self.close()
        n = self.n
        parent = np.arange(n, dtype=np.int64)  # parent[i] <= i always, so a root is its cluster's first document
        sigs = np.load(self.signature_path, mmap_mode="r")
        st = {"documents": n, "candidate_pairs": 0, "rejected_pairs": 0, "linked_pairs": 0}
        for b in progress(range(self.bands), desc="minhash: bands", total=self.bands, unit="band"):
            for u, v in _bucket_pairs(np.load(self.band_path(b))):
                self._link(parent, u, v, sigs, st)
            _compress(parent)
        jac = np.ones(n, dtype=np.float32)
        dup = np.flatnonzero(parent != np.arange(n))
        for lo in range(0, len(dup), _PAIR_BLOCK):
            d = dup[lo:lo + _PAIR_BLOCK]
            jac[d] = estimated_jaccard(sigs[d], sigs[parent[d]])
        st["duplicates"] = int(len(dup))
        st["clusters"] = int(len(np.unique(parent[dup])))
        log.info("minhash: %d documents, %d candidate pairs, %d linked, %d rejected; %d near-duplicates in %d "
                 "clusters", n, st["candidate_pairs"], st["linked_pairs"], st["rejected_pairs"], st["duplicates"],
                 st["clusters"])
        return NearDuplicates(parent, jac, st)

    def _link(self, parent: np.ndarray, u: np.ndarray, v: np.ndarray, sigs: np.ndarray, st: dict) -> None:
        ru, rv = _find(parent, u), _find(parent, v)
        new = ru != rv  # pairs already in one cluster need no check
        u, v, ru, rv = u[new], v[new], ru[new], rv[new]
        st["candidate_pairs"] += len(u)
        if self.threshold is not None and len(u):
            ok = estimated_jaccard(sigs[u], sigs[v]) >= self.threshold
            st["rejected_pairs"] += int((~ok).sum())
            ru, rv = ru[ok], rv[ok]
        st["linked_pairs"] += len(ru)
        _union(parent, ru, rv)


# Within an LSH bucket every member is verified against every earlier member up to this many
# positions back (in read order): all pairs for buckets of up to this size, and work linear in the
# bucket size beyond it (a bucket that large holds one template's copies, linked long before).
BUCKET_WINDOW = 2048


def _bucket_pairs(h: np.ndarray, window: int = BUCKET_WINDOW):
    """Candidate pairs of one band, in blocks of (earlier, later) document arrays: every pair of
    members of a bucket (equal hashes) at most ``window`` apart in read order, nearest first.

    Verifying every candidate pair, and not only a chain through the bucket, is what makes the
    clusters those of all-pairs verification: B ~ C is found even when the documents between them
    in the bucket are like neither. Pairs whose documents are already in one cluster are dropped by
    ``_link`` before their signatures are compared, so clusters of copies cost little.
    """
    order = np.argsort(h, kind="stable")  # stable: within a bucket, documents stay in read order
    hs = h[order]
    n = len(h)
    if n < 2:
        return
    starts = np.flatnonzero(np.concatenate(([True], hs[1:] != hs[:-1])))
    del hs
    sizes = np.diff(np.append(starts, n))
    end = np.repeat(starts + sizes, sizes)  # end of each position's bucket
    active = np.flatnonzero(np.repeat(sizes, sizes) > 1)
    for d in range(1, window + 1):
        active = active[active + d < end[active]]
        if not len(active):
            return
        for lo in range(0, len(active), _PAIR_BLOCK):
            a = active[lo:lo + _PAIR_BLOCK]
            yield order[a], order[a + d]


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

