"""Memory, disk and time of near-duplicate detection as the number of documents grows.

Documents are windows of ``--words`` words of real English text (the NLTK corpora in the shared data
folder), each used once; ``--plant`` of them get a near-duplicate copy (one word changed) added
at the end. For each size in ``--docs`` the script adds every document to a ``NearDuplicateIndex``
and finds the clusters, and prints the peak memory traced while adding and while finding (numpy
reports its arrays to ``tracemalloc``), the spill files' size on disk, the time, and how many planted
copies were found. The growth between two sizes gives the bytes a document costs; the fixed part
(word-code cache, one batch of n-grams) does not grow with the corpus.

    python benchmarks/minhash_memory.py --data ../shared/data --docs 100000 300000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

from hare.filters.minhash import NearDuplicateIndex
from hare.filters.config import MinHashConfig


def word_stream(data: Path):
    for z in sorted((data / "nltk_corpora").glob("*.zip")):
        with zipfile.ZipFile(z) as f:
            for name in f.namelist():
                if name.endswith("/") or "README" in name:
                    continue
                text = f.read(name).decode("utf-8", errors="replace")
                if z.stem == "brown":  # strip the POS tags: "The/at jury/nn" -> "The jury"
                    text = " ".join(w.rsplit("/", 1)[0] for w in text.split())
                yield from text.split()


def documents(data: Path, n: int, words: int) -> list[str]:
    """``n`` windows of ``words`` words. The corpora hold about 4.1M words; each further pass over them
    marks every word with the pass number in letters ("the" -> "theqb"), so its windows share no
    n-gram with earlier ones and the only near-duplicates are the corpora's own and the planted."""
    out: list[str] = []
    k = 0
    while len(out) < n:
        mark = "" if k == 0 else "q" + "".join(chr(97 + int(c)) for c in str(k))
        buf: list[str] = []
        for w in word_stream(data):
            buf.append(w + mark)
            if len(buf) == words:
                out.append(" ".join(buf))
                buf = []
                if len(out) == n:
                    break
        k += 1
    return out


def measure(docs: list[str], plant: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    planted = {}
    docs = list(docs)
    for i in rng.sample(range(len(docs)), plant):
        w = docs[i].split()
        w[rng.randrange(len(w))] = "changed"  # one word: Jaccard about 0.9 at 100 words
        planted[len(docs)] = i
        docs.append(" ".join(w))
    with tempfile.TemporaryDirectory() as work:
        tracemalloc.start()
        t0 = time.perf_counter()
        index = NearDuplicateIndex.from_config(MinHashConfig(), work)
        for d in docs:
            index.add(d)
        index.close()
        add_peak = tracemalloc.get_traced_memory()[1]
        t1 = time.perf_counter()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        near = index.find()
        find_peak = tracemalloc.get_traced_memory()[1] - base
        t2 = time.perf_counter()
        tracemalloc.stop()
        disk = sum(p.stat().st_size for p in Path(work).iterdir())
    found = sum(int(near.kept[j]) == near.kept[i] for j, i in planted.items())
    return {"docs": len(docs), "add_peak": add_peak, "find_peak": find_peak, "disk": disk, "add_s": t1 - t0,
            "find_s": t2 - t1, "planted_found": found, "planted": len(planted), "duplicates": near.stats["duplicates"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--docs", type=int, nargs="+", default=[100_000, 300_000])
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--plant", type=int, default=200)
    args = ap.parse_args()
    all_docs = documents(args.data, max(args.docs), args.words)
    rows = [measure(all_docs[:n], args.plant) for n in args.docs]
    print(f"{'docs':>9} {'add peak MB':>12} {'find peak MB':>13} {'disk MB':>8} {'add s':>7} {'find s':>7} "
          f"{'planted found':>14} {'duplicates':>11}")
    for r in rows:
        print(f"{r['docs']:>9,} {r['add_peak'] / 1e6:>12.1f} {r['find_peak'] / 1e6:>13.1f} {r['disk'] / 1e6:>8.1f} "
              f"{r['add_s']:>7.1f} {r['find_s']:>7.1f} {r['planted_found']:>9}/{r['planted']:<4} "
              f"{r['duplicates']:>11,}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        dn = b["docs"] - a["docs"]
        print(f"per document: finding {(b['find_peak'] - a['find_peak']) / dn:.1f} B of memory, "
              f"adding {(b['add_peak'] - a['add_peak']) / dn:.1f} B, disk {(b['disk'] - a['disk']) / dn:.1f} B; "
              f"per million documents: {(b['find_peak'] - a['find_peak']) / dn:.0f} MB to find, "
              f"{(b['disk'] - a['disk']) / dn:.0f} MB of disk")


if __name__ == "__main__":
    main()
