"""Memory and time per process of the corpus step's dedup at millions of documents: one partition
(the whole corpus in one process, as the pass ran before it was partitioned) beside the partitions
``corpus.dedup_memory_mb`` chooses, in the same invocation.

Documents are synthetic: random 16-byte digests and random MinHash signatures (14 bands x 8 rows),
with ``--copies`` of them planted as exact copies of an earlier digest and, for MinHash, as
near-duplicates (an earlier signature with 10 of its 112 values changed: Jaccard about 0.9). For
each size in ``--docs``:

- exact dedup: the Python set of digests the pass kept before (its peak memory), then the digests
  scattered to their partitions and every ``exact_partition`` task run here, one after the other;
- MinHash: the signatures spilled by a ``NearDuplicateIndex`` with one partition per band, then with
  the partitions the cap gives, every ``link_partition`` task run here, then ``cluster_pairs``.

Each task's peak memory is traced (``tracemalloc``; numpy reports its arrays) with the peak reset
before it, so "task peak" is what one worker process needs for its largest task; "time" adds every
task's time (one process; with W workers the tasks spread over them). Both layouts must find the
same duplicates, and the script checks it.

    python benchmarks/dedup_scale.py --docs 1000000 10000000 --memory-mb 64
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from hare.corpus.passes import EXACT_BYTES_PER_DOC, EXACT_FIXED_BYTES, EXACT_ROW, exact_partition
from hare.filters.minhash import (LINK_BYTES_PER_DOC, LINK_FIXED_BYTES, NearDuplicateIndex, PartitionedAppender,
                                  cluster_pairs, link_partition, partition_of, partitions_for)

CHUNK = 250_000  # documents generated at a time


def chunks(n: int, copies: float, seed: int, what: str):
    """``what`` ("digests" or "signatures") of ``n`` documents in chunks; within each chunk ``copies``
    of the rows repeat an earlier row's digest and take a changed copy of an earlier row's signature
    (the same rows whichever is asked for)."""
    rows, digests, signatures = (np.random.default_rng([seed, k]) for k in range(3))
    for lo in range(0, n, CHUNK):
        k = min(CHUNK, n - lo)
        dst = np.sort(rows.choice(np.arange(1, k), size=int(k * copies), replace=False))
        src = (rows.random(len(dst)) * dst).astype(np.int64)  # an earlier row of the chunk
        cols = rows.integers(0, 112, size=(len(dst), 10))
        if what == "digests":
            dig = digests.integers(0, 2**64, size=(k, 2), dtype=np.uint64)  # uniform, as blake2b digests
            dig[dst] = dig[src]
            yield dig
        else:
            sig = signatures.integers(0, 2**31, size=(k, 112), dtype=np.uint32)
            sig[dst] = sig[src]
            sig[dst[:, None], cols] = signatures.integers(0, 2**31, size=cols.shape, dtype=np.uint32)
            yield sig


def traced(fn, *args):
    """``fn(*args)``, its time and its peak traced memory above what was allocated before it."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0, tracemalloc.get_traced_memory()[1] - base


def exact_set(n: int, copies: float, seed: int) -> tuple[int, float, int]:
    """The pass before partitions: one set of every digest (16-byte strings) in read order."""
    def run() -> int:
        seen: set[bytes] = set()
        dups = 0
        for dig in chunks(n, copies, seed, "digests"):
            for row in dig:
                h = row.tobytes()
                if h in seen:
                    dups += 1
                else:
                    seen.add(h)
        return dups
    dups, sec, peak = traced(run)
    return dups, sec, peak


def exact_partitioned(n: int, copies: float, seed: int, parts: int, work: Path) -> dict:
    scatter_peak, t0 = 0, time.perf_counter()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    scatter = PartitionedAppender([work / f"exact-{p:05d}.npy" for p in range(parts)], EXACT_ROW)
    pos = 0
    for dig in chunks(n, copies, seed, "digests"):
        rows = np.empty(len(dig), dtype=EXACT_ROW)
        rows["d0"], rows["d1"], rows["pos"] = dig[:, 0], dig[:, 1], np.arange(pos, pos + len(dig))
        scatter.append(rows, partition_of(dig[:, 0], parts))
        pos += len(dig)
    paths = scatter.close()
    scatter_peak = tracemalloc.get_traced_memory()[1] - base
    scatter_s = time.perf_counter() - t0
    dups, task_s, task_peak = 0, 0.0, 0
    for i, p in enumerate(paths):
        r, sec, peak = traced(exact_partition, {"rows": str(p), "out": str(work / f"dups-{i:05d}.npy")})
        dups += r["duplicates"]
        task_s += sec
        task_peak = max(task_peak, peak)
    disk = sum(p.stat().st_size for p in paths)
    return {"dups": dups, "tasks": parts, "task_peak": task_peak, "scatter_peak": scatter_peak,
            "seconds": scatter_s + task_s, "disk": disk}


def minhash(n: int, copies: float, seed: int, parts: int, work: Path) -> dict:
    t0 = time.perf_counter()
    index = NearDuplicateIndex(work, partitions=parts)
    for sig in chunks(n, copies, seed, "signatures"):
        index.add_signatures(sig)
    index.close()
    spill_s = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in work.iterdir())
    task_s, task_peak, done = 0.0, 0, []
    for task in index.tasks():
        r, sec, peak = traced(link_partition, task)
        done.append(r)
        task_s += sec
        task_peak = max(task_peak, peak)
    st = {k: sum(r[k] for r in done) for k in ("candidate_pairs", "rejected_pairs", "linked_pairs")}
    near, union_s, union_peak = traced(cluster_pairs, [r["out"] for r in done], index.signature_path, n, st)
    return {"tasks": len(done), "task_peak": task_peak, "union_peak": union_peak, "seconds": task_s + union_s,
            "spill_s": spill_s, "disk": disk, "near": near}


def layouts(parts: int) -> list[tuple[str, int]]:
    return [("1 partition", 1)] + ([(f"{parts} partitions", parts)] if parts > 1 else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--memory-mb", type=int, default=64, help="corpus.dedup_memory_mb of the partitioned runs")
    ap.add_argument("--copies", type=float, default=0.1, help="share of planted copies (half exact, half near)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the spills (default: a temporary one)")
    args = ap.parse_args()
    tracemalloc.start()
    mb = 1 << 20
    print(f"{'docs':>11} {'dedup':>7} {'layout':>13} {'tasks':>6} {'task peak MB':>13} {'other peak MB':>14} "
          f"{'time s':>8} {'spill MB':>9} {'found':>9}")
    for n in args.docs:
        root = Path(tempfile.mkdtemp(prefix="dedup-scale-", dir=args.work))
        try:
            dups, sec, peak = exact_set(n, args.copies, 0)
            print(f"{n:>11,} {'exact':>7} {'one set':>13} {1:>6} {peak / mb:>13.1f} {'':>14} {sec:>8.1f} {0:>9} "
                  f"{dups:>9,}")
            parts = partitions_for(n, args.memory_mb, EXACT_BYTES_PER_DOC, EXACT_FIXED_BYTES)
            for label, p in layouts(parts):
                (root / label).mkdir()
                r = exact_partitioned(n, args.copies, 0, p, root / label)
                assert r["dups"] == dups, (r["dups"], dups)
                print(f"{n:>11,} {'exact':>7} {label:>13} {r['tasks']:>6} {r['task_peak'] / mb:>13.1f} "
                      f"{r['scatter_peak'] / mb:>14.1f} {r['seconds']:>8.1f} {r['disk'] / mb:>9.0f} {r['dups']:>9,}")
                shutil.rmtree(root / label)
            parts = partitions_for(n, args.memory_mb, LINK_BYTES_PER_DOC, LINK_FIXED_BYTES)
            first = None
            for label, p in layouts(parts):
                r = minhash(n, args.copies, 0, p, root / f"mh-{p}")
                near = r["near"]
                if first is None:
                    first = near
                else:
                    assert np.array_equal(near.duplicates, first.duplicates)
                    assert np.array_equal(near.kept_of, first.kept_of)
                print(f"{n:>11,} {'minhash':>7} {label:>13} {r['tasks']:>6} {r['task_peak'] / mb:>13.1f} "
                      f"{r['union_peak'] / mb:>14.1f} {r['seconds']:>8.1f} {r['disk'] / mb:>9.0f} "
                      f"{len(near.duplicates):>9,}")
                shutil.rmtree(root / f"mh-{p}")
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"max resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          "(the largest step above, plus numpy and the generator's chunks)")
    print("other peak: exact, the main process's scatter of the digests; minhash, the union-find over the linked "
          "pairs (cluster_pairs)")


if __name__ == "__main__":
    main()
