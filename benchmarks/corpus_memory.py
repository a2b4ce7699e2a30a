"""Resident memory of ``hare corpus`` on a large input (the issue's bound: 1 GB in, under 2 GB resident).

Writes ``--mb`` megabytes of real English text (the NLTK corpora, cut into ~4 KB documents; past
the distinct text, copies with about one word in 150 replaced, i.e. near-duplicates) as JSONL.zst
files, streaming, then runs ``hare corpus`` on it with every default rule, the quality scorer off
and ``dedup: minhash``, in a subprocess. The resident memory of that process and all its children
(the cleaning workers) is sampled every ``--interval`` seconds and summed; the peak of the sum and
of the largest single process are printed with the wall time and the step's counts. The sum counts
pages the forked workers share with their parent once per process, so it overstates the real use.

    python benchmarks/corpus_memory.py --mb 1024
    python benchmarks/corpus_memory.py --mb 20               # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus_throughput import base_documents, perturb  # noqa: E402

RECIPE = """\
# Written by benchmarks/corpus_memory.py: default cleaning rules, MinHash near-dedup.
name: corpus-memory
out_dir: {out}
sources:
  - name: big
    kind: jsonl
    path: {input}
    id_field: id
corpus:
  dedup: minhash
execution:
  workers: {workers}
"""


def write_input(data: Path, folder: Path, mb: float, n_files: int, seed: int) -> tuple[int, float]:
    """Stream ``mb`` MB of documents into ``n_files`` JSONL.zst files; (documents, MB) written."""
    rng = random.Random(seed)
    base = base_documents(data, 4000)
    rng.shuffle(base)
    folder.mkdir(parents=True)
    per_file = mb * 1e6 / n_files
    n, size = 0, 0
    for k in range(n_files):
        with zstandard.ZstdCompressor(level=3).stream_writer(open(folder / f"part-{k:03d}.jsonl.zst", "wb")) as f:
            written = 0
            while written < per_file:
                d = base[n % len(base)]
                text = d if n < len(base) else perturb(d, rng)
                line = (json.dumps({"id": f"doc{n}", "text": text}) + "\n").encode()
                f.write(line)
                written += len(text.encode())
                n += 1
        size += written
    return n, size / 1e6


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(sum, largest) resident bytes of ``proc`` and its descendants."""
    total = largest = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data",
                    help="folder holding nltk_corpora/*.zip")
    ap.add_argument("--mb", type=float, default=1024.0, help="input size in megabytes of text")
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples")
    ap.add_argument("--work", type=Path, help="folder for the input and the run (kept); default: temporary")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="corpus-memory-"))
    try:
        t0 = time.perf_counter()
        docs, mb = write_input(a.data, work / "input", a.mb, a.files, a.seed)
        print(f"input: {mb:.0f} MB of text, {docs:,} documents in {a.files} files "
              f"(written in {time.perf_counter() - t0:.0f} s)", flush=True)
        recipe = work / "recipe.yaml"
        recipe.write_text(RECIPE.format(out=work / "runs", input=work / "input", workers=a.workers))
        t0 = time.perf_counter()
        with open(work / "hare.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "hare", "corpus", str(recipe)], stdout=log,
                                    stderr=subprocess.STDOUT)
            ps = psutil.Process(proc.pid)
            peak_sum = peak_one = 0
            while proc.poll() is None:
                total, largest = tree_rss(ps)
                peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
                time.sleep(a.interval)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"hare corpus failed ({proc.returncode}); see {work / 'hare.log'}")
        s = json.loads((work / "runs" / "corpus-memory" / "corpus" / "stats.json").read_text())["summary"]
        print(f"hare corpus: {seconds:.0f} s ({mb / seconds:.2f} MB/s with {a.workers} workers); "
              f"read {s['read']:,}, kept {s['train'] + s['heldout']:,}, removed {s['removed']:,} "
              f"(near-duplicates {s['removed_by_reason'].get('near_duplicate', 0):,})")
        print(f"peak resident memory: {peak_sum / 2**20:,.0f} MiB summed over the process tree, "
              f"{peak_one / 2**20:,.0f} MiB in the largest process")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
