"""Decontamination throughput and recall: hare against lm-evaluation-harness's 13-gram ``Janitor``.

Both get the same evaluation items (every split of ARC-Easy/Challenge, HellaSwag, MMLU, GSM8K and
TruthfulQA, and Winogrande when its files are there) and the same corpus: real English text (the
NLTK corpora in the shared data folder) cut into ~4 KB documents and repeated to ``--mb``
megabytes, with ``--plant`` benchmark items planted verbatim, re-cased, re-spaced or re-punctuated
into random documents. Each side indexes the items, then finds and cuts the overlaps of every
document in one process (hare scans the documents in batches of about 2 MB, as the decontam step
does); the script prints MB/s per core for each, the ratio, and how many planted documents each
one caught.

    python benchmarks/decontam_throughput.py --data ../shared/data --mb 100
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import time
import zipfile
from pathlib import Path

from hare.core.evalsets import BenchmarkMissing, load_benchmark
from hare.core.documents import Document
from hare.core.ngrams import EvalText, NgramIndex
from hare.core.text import match_words
from hare.filters.decontam import Decontaminator, scan_batches
from hare.filters.config import DecontamConfig

BENCHMARKS = ["arc_easy", "arc_challenge", "hellaswag", "mmlu", "gsm8k", "truthfulqa", "winogrande"]


def corpus_chunks(data: Path, size: int = 4000) -> list[str]:
    out = []
    for z in sorted((data / "nltk_corpora").glob("*.zip")):
        if z.stem in ("state_union", "inaugural"):  # MMLU quotes these speeches: not clean text
            continue
        with zipfile.ZipFile(z) as f:
            for name in f.namelist():
                if name.endswith("/") or "README" in name:
                    continue
                raw = f.read(name)
                text = raw.decode("utf-8", errors="replace")
                if z.stem == "brown":  # strip the POS tags: "The/at jury/nn" -> "The jury"
                    text = " ".join(w.rsplit("/", 1)[0] for w in text.split())
                for i in range(0, len(text), size):
                    out.append(text[i:i + size])
    return out


def variant(text: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 1:
        return text.upper()
    if kind == 2:
        return "  ".join(text.split())
    if kind == 3:
        return " ".join(w + rng.choice([",", ";", ":", ""]) for w in text.split())
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--mb", type=float, default=100.0, help="corpus size in megabytes")
    ap.add_argument("--plant", type=int, default=300, help="benchmark items planted into the corpus")
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)

    items = []
    for name in BENCHMARKS:
        try:
            items += [EvalText(name, f"{it.split}/{it.id}", it.text()) for it in load_benchmark(name, a.data)]
        except BenchmarkMissing:
            print(f"{name}: no files, left out")
    chunks = corpus_chunks(a.data)
    docs, total = [], 0
    while total < a.mb * 1e6:
        for c in chunks:
            docs.append(c)
            total += len(c.encode())
            if total >= a.mb * 1e6:
                break
    eligible = [it for it in items if len(match_words(it.text)) >= a.ngram and
                len(it.text.split()) >= a.ngram]
    planted = set()
    for it in rng.sample(eligible, a.plant):
        k = rng.randrange(len(docs))
        while k in planted:
            k = rng.randrange(len(docs))
        planted.add(k)
        cut = len(docs[k]) // 2
        docs[k] = docs[k][:cut] + " " + variant(it.text, rng) + " " + docs[k][cut:]
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"{len(items):,} evaluation items; corpus {mb:.1f} MB in {len(docs):,} documents, {len(planted)} planted")

    # hare
    t0 = time.perf_counter()
    index = NgramIndex(a.ngram)
    for it in items:
        index.add(it)
    dec = Decontaminator.from_config(index, DecontamConfig(ngram=a.ngram, policy="cut", max_ngram_doc_frequency=None))
    t_index_hare = time.perf_counter() - t0
    t0 = time.perf_counter()
    hare_hits = set()
    for batch in scan_batches(Document(text, str(k)) for k, text in enumerate(docs)):
        for doc, m in zip(batch, dec.matches_many(batch)):
            if m:
                dec.decide(doc, m)
                hare_hits.add(int(doc.id))
    t_hare = time.perf_counter() - t0

    # lm-evaluation-harness Janitor (prints a warning per call in pure-Python mode: silenced)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from lm_eval.decontamination.janitor import Janitor

        t0 = time.perf_counter()
        jan = Janitor(ngram_n=a.ngram)
        for it in items:
            jan.register_contaminant(it.text)
        t_index_jan = time.perf_counter() - t0
        t0 = time.perf_counter()
        jan_hits = set()
        for k, text in enumerate(docs):
            if jan.clean(text) != [text]:
                jan_hits.add(k)
        t_jan = time.perf_counter() - t0

    print(f"{'':24}{'index s':>9}{'scan s':>9}{'MB/s/core':>11}{'planted found':>15}{'other docs flagged':>20}")
    for name, ti, ts, hits in (("hare", t_index_hare, t_hare, hare_hits),
                               ("lm-eval Janitor", t_index_jan, t_jan, jan_hits)):
        print(f"{name:24}{ti:9.1f}{ts:9.1f}{mb / ts:11.2f}{len(hits & planted):>9}/{len(planted):<5}"
              f"{len(hits - planted):>20}")
    print(f"ratio hare / Janitor (MB/s per core): {t_jan / t_hare:.2f}x")


if __name__ == "__main__":
    main()
