"""Corpus throughput: hare's corpus step against datatrove 0.10 doing the same work on the same files.

The work is the core of a web-corpus pipeline: the Gopher repetition and quality filters, then
MinHash near-duplicate removal (word 5-grams, 14 bands x 8 rows = 112 hashes; a pair that shares a
band is a duplicate, as datatrove links it), and the surviving documents written as JSONL.zst.

Input: real English text (the NLTK corpora in the shared data folder) cut at line breaks into
documents of about ``--doc-chars`` characters. Distinct documents fill ``1 - --dup`` of ``--mb``
megabytes (or as many as there are: 22.7 MB, 6,759 documents); the rest are copies of them with a
few words replaced (about one in 150), near-duplicates MinHash should find. The documents are
shuffled and written to ``--files`` JSONL.zst files (datatrove runs one task per file).

hare: ``hare corpus`` on a recipe with a ``jsonl`` source over the files, ``dedup: minhash``
(``threshold: null``), ``execution.workers`` = ``--workers``, and everything that is not a Gopher rule
turned off (language check, PII and link removal, C4 line rules; alphabetic words at Gopher's 0.8).
hare also drops exact duplicates before MinHash; datatrove leaves those to MinHash.

datatrove: ``_datatrove_pipeline.py`` (the four-stage MinHash recipe of its examples, filters in
stage 1) with ``LocalPipelineExecutor(workers=--workers)``, run by the Python of a separate venv
(``--datatrove-venv``), created on first use:

    python3 -m venv benchmarks/.venv-datatrove
    benchmarks/.venv-datatrove/bin/pip install "datatrove[processing]==0.10.1" "xxhash<4" spacy orjson zstandard

(datatrove 0.10.1's MinHash calls ``xxhash.xxh64_intdigest`` on str, which xxhash 4 no longer
accepts; its Gopher filters split words with spaCy's blank English tokenizer, so no model is
downloaded.) Both write zstd at level 3, hare's level (the datatrove script registers it with
fsspec, whose own zstd writer uses level 10). Each side runs in a subprocess and is timed
wall-clock, start-up included; the script prints documents/s and MB/s per core for each, the ratio
hare / datatrove, and the documents each removed by each rule side by side. The counts differ
where the word splitting does: spaCy makes punctuation words of their own, so more documents fail
datatrove's alphabetic-word and top-n-gram rules than hare's, whose words are split on whitespace.

    python benchmarks/corpus_throughput.py --mb 100
    python benchmarks/corpus_throughput.py --mb 5            # smoke test, under a minute
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import zstandard

HERE = Path(__file__).resolve().parent
DATATROVE_PACKAGES = ["datatrove[processing]==0.10.1", "xxhash<4", "spacy", "orjson", "zstandard"]

# One row per rule: hare's reason, datatrove's reasons (``dropped_<reason>`` of the filter step).
# hare checks lines before paragraphs and datatrove paragraphs before lines, so a document that
# breaks both is counted on a different row by each; the per-filter totals compare directly.
RULES = [
    ("repetition", "duplicate lines", ["gopher_duplicate_lines"], ["dup_line_frac"]),
    ("repetition", "chars in duplicate lines", ["gopher_duplicate_lines_chars"], ["dup_line_char_frac"]),
    ("repetition", "duplicate paragraphs", ["gopher_duplicate_paragraphs"], ["dup_para_frac"]),
    ("repetition", "chars in duplicate paragraphs", ["gopher_duplicate_paragraphs_chars"], ["dup_para_char_frac"]),
    *[("repetition", f"top {n}-gram", [f"gopher_top_{n}gram"], [f"top_{n}_gram"]) for n in (2, 3, 4)],
    *[("repetition", f"duplicate {n}-grams", [f"gopher_duplicate_{n}grams"], [f"duplicated_{n}_n_grams"])
      for n in range(5, 11)],
    ("repetition", "empty", ["empty"], ["empty"]),
    ("quality", "too few words", ["gopher_short_document"], ["gopher_short_doc"]),
    ("quality", "too many words", ["gopher_long_document"], ["gopher_long_doc"]),
    ("quality", "mean word length", ["gopher_mean_word_length"],
     ["gopher_below_avg_threshold", "gopher_above_avg_threshold"]),
    ("quality", "symbols per word", ["gopher_symbol_word_ratio"],
     ["gopher_too_many_hashes", "gopher_too_many_ellipsis"]),
    ("quality", "bullet lines", ["gopher_bullet_lines"], ["gopher_too_many_bullets"]),
    ("quality", "ellipsis lines", ["gopher_ellipsis_lines"], ["gopher_too_many_end_ellipsis"]),
    ("quality", "alphabetic words", ["gopher_alpha_words"], ["gopher_below_alpha_threshold"]),
    ("quality", "stop words", ["gopher_stop_words"], ["gopher_enough_stop_words"]),
    ("dedup", "exact duplicate", ["exact_duplicate"], []),
    ("dedup", "near duplicate (MinHash)", ["near_duplicate"], ["minhash"]),
]


def base_documents(data: Path, size: int) -> list[str]:
    """Every NLTK corpus file, cut at line breaks into documents of about ``size`` characters."""
    docs = []
    for z in sorted((data / "nltk_corpora").glob("*.zip")):
        with zipfile.ZipFile(z) as f:
            for name in sorted(f.namelist()):
                if name.endswith("/") or "README" in name:
                    continue
                text = f.read(name).decode("utf-8", errors="replace")
                if z.stem == "brown":  # strip the POS tags, keep the lines: "The/at jury/nn" -> "The jury"
                    text = "\n".join(" ".join(w.rsplit("/", 1)[0] for w in line.split())
                                     for line in text.split("\n"))
                buf, n = [], 0
                for line in text.split("\n"):
                    buf.append(line)
                    n += len(line) + 1
                    if n >= size:
                        docs.append("\n".join(buf).strip("\n"))
                        buf, n = [], 0
                if "".join(buf).strip():
                    docs.append("\n".join(buf).strip("\n"))
    return docs


def perturb(text: str, rng: random.Random) -> str:
    """Replace about one word in 150 (at least one) with another word of the same document."""
    parts = re.split(r"(\s+)", text)
    words = [i for i, p in enumerate(parts) if p and not p.isspace()]
    if len(words) < 2:
        return text
    for i in rng.sample(words, max(1, len(words) // 150)):
        parts[i] = parts[rng.choice(words)]
    return "".join(parts)


def build_corpus(data: Path, mb: float, dup: float, doc_chars: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    base = base_documents(data, doc_chars)
    rng.shuffle(base)
    target = mb * 1e6
    unique, size = [], 0
    for d in base:
        if size >= target * (1 - dup) and unique:
            break
        unique.append(d)
        size += len(d.encode())
    docs = list(unique)
    while size < target:  # rounds of near-duplicate copies
        for d in unique:
            c = perturb(d, rng)
            docs.append(c)
            size += len(c.encode())
            if size >= target:
                break
    rng.shuffle(docs)
    return docs


def write_files(docs: list[str], folder: Path, n_files: int) -> None:
    folder.mkdir(parents=True)
    per = -(-len(docs) // n_files)
    for k in range(n_files):
        with zstandard.ZstdCompressor(level=3).stream_writer(open(folder / f"part-{k:03d}.jsonl.zst", "wb")) as f:
            for i in range(k * per, min(len(docs), (k + 1) * per)):
                f.write((json.dumps({"id": f"doc{i}", "text": docs[i]}) + "\n").encode())


RECIPE = """\
# Written by benchmarks/corpus_throughput.py: the Gopher rules and MinHash only.
name: corpus-throughput
out_dir: {out}
sources:
  - name: bench
    kind: jsonl
    path: {input}
    id_field: id
corpus:
  dedup: minhash
  minhash:
    threshold: null             # link every pair that shares a band, as datatrove does
  heldout_fraction: 0.0
  clean:
    min_alpha_word_fraction: 0.8    # Gopher's (and datatrove's) value
    language_id: none               # no language check
    remove_pii: false
    remove_urls: false
    boilerplate_lines: false
execution:
  workers: {workers}
"""


def run_logged(cmd: list[str], log: Path, **kw) -> float:
    """Run ``cmd`` with its output in ``log``; the wall-clock seconds it took. Exits on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw).returncode
    seconds = time.perf_counter() - t0
    if rc:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({rc}); the end of {log}:\n" +
                 "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    return seconds


def run_hare(input_dir: Path, work: Path, workers: int) -> dict:
    recipe = work / "hare-recipe.yaml"
    recipe.write_text(RECIPE.format(out=work / "hare-runs", input=input_dir, workers=workers))
    seconds = run_logged([sys.executable, "-m", "hare", "corpus", str(recipe)], work / "hare.log")
    stats = json.loads((work / "hare-runs" / "corpus-throughput" / "corpus" / "stats.json").read_text())
    s = stats["summary"]
    return {"seconds": seconds, "read": s["read"], "kept": s["train"] + s.get("heldout", 0),
            "removed": Counter(s["removed_by_reason"])}


def ensure_datatrove(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {venv} ({', '.join(DATATROVE_PACKAGES)}) ...", flush=True)
    t0 = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DATATROVE_PACKAGES], check=True)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv would be taken for a ready one next time
        sys.exit(f"could not create {venv}: {e}")
    print(f"  installed in {time.perf_counter() - t0:.0f} s", flush=True)
    return python


def run_datatrove(python: Path, input_dir: Path, work: Path, workers: int) -> dict:
    out = work / "datatrove"
    seconds = run_logged([str(python), str(HERE / "_datatrove_pipeline.py"), "--input", str(input_dir),
                          "--work", str(out), "--workers", str(workers)], work / "datatrove.log")
    result = json.loads((out / "result.json").read_text())
    removed: Counter[str] = Counter()
    read = kept = 0
    for stage, steps in result["steps"].items():
        for step in steps:  # names such as "📖 - READER: 🐿 Jsonl", "🔻 - FILTER: 👯 Gopher Repetition"
            name, st = step["name"], step["stats"]
            if "READER" in name and stage == "filter+signatures":
                read = st.get("documents", 0)
            elif "FILTER" in name:
                removed.update({k[len("dropped_"):]: v for k, v in st.items() if k.startswith("dropped_")})
            elif "MinHash" in name and stage == "dedup+write":
                removed["minhash"] += st.get("dropped", 0)
            elif "WRITER" in name and stage == "dedup+write":
                kept = st.get("total", 0)
    return {"seconds": seconds, "read": read, "kept": kept, "removed": removed, "stages": result["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data",
                    help="folder holding nltk_corpora/*.zip")
    ap.add_argument("--mb", type=float, default=100.0, help="input size in megabytes of text")
    ap.add_argument("--dup", type=float, default=0.25, help="share of the input that is near-duplicate copies")
    ap.add_argument("--doc-chars", type=int, default=4000, help="about this many characters per document")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (cores) for each tool")
    ap.add_argument("--files", type=int, default=0, help="input files (default: max(8, 2 x workers))")
    ap.add_argument("--work", type=Path, help="folder for the input and outputs (kept); default: a temporary one")
    ap.add_argument("--datatrove-venv", type=Path, default=HERE / ".venv-datatrove")
    ap.add_argument("--only", choices=["hare", "datatrove"], help="run one side only")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not 0 <= a.dup < 1:
        ap.error("--dup must be in [0, 1)")
    if importlib.util.find_spec("hare") is None:
        sys.exit("hare is not installed for this Python: run the script with the project's .venv/bin/python")

    python = ensure_datatrove(a.datatrove_venv) if a.only != "hare" else None
    work = a.work or Path(tempfile.mkdtemp(prefix="corpus-throughput-"))
    if a.work and work.exists() and any(work.iterdir()):
        if not (work / "hare-recipe.yaml").exists() and not (work / "input" / "part-000.jsonl.zst").exists():
            sys.exit(f"--work {work}: not empty and not from an earlier run of this script")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        docs = build_corpus(a.data, a.mb, a.dup, a.doc_chars, a.seed)
        mb = sum(len(d.encode()) for d in docs) / 1e6
        n_files = a.files or max(8, 2 * a.workers)
        write_files(docs, work / "input", n_files)
        print(f"input: {mb:.1f} MB of text, {len(docs):,} documents in {n_files} JSONL.zst files; "
              f"{a.workers} workers; load average {os.getloadavg()[0]:.2f}", flush=True)

        results = {}
        if a.only != "datatrove":
            results["hare"] = run_hare(work / "input", work, a.workers)
            print(f"hare done in {results['hare']['seconds']:.1f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
        if a.only != "hare":
            results["datatrove"] = run_datatrove(python, work / "input", work, a.workers)
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in results["datatrove"]["stages"].items())
            print(f"datatrove done in {results['datatrove']['seconds']:.1f} s ({stages}); "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)

        print()
        print(f"{'':12}{'wall s':>9}{'read':>10}{'kept':>10}{'docs/s':>10}{'docs/s/core':>13}{'MB/s/core':>11}")
        for name, r in results.items():
            print(f"{name:12}{r['seconds']:9.1f}{r['read']:>10,}{r['kept']:>10,}{r['read'] / r['seconds']:10.0f}"
                  f"{r['read'] / r['seconds'] / a.workers:13.0f}{mb / r['seconds'] / a.workers:11.2f}")
        if len(results) == 2:
            h, d = results["hare"], results["datatrove"]
            print(f"ratio hare/datatrove = {h['read'] / h['seconds'] / (d['read'] / d['seconds']):.2f}x "
                  "(documents/s per core)")

        print(f"\ndocuments removed{'':17}" + "".join(f"{n:>11}" for n in results))
        shown: set[tuple[str, str]] = set()
        for group in ("repetition", "quality", "dedup"):
            totals = Counter()
            for g, label, hare_keys, dt_keys in RULES:
                if g != group:
                    continue
                counts = {n: sum(r["removed"].get(k, 0) for k in (hare_keys if n == "hare" else dt_keys))
                          for n, r in results.items()}
                shown |= {("hare", k) for k in hare_keys} | {("datatrove", k) for k in dt_keys}
                totals.update(counts)
                if any(counts.values()):
                    print(f"  {group + ': ' + label:32}" + "".join(f"{counts[n]:>11,}" for n in results))
            print(f"  {group + ' total':32}" + "".join(f"{totals[n]:>11,}" for n in results))
        for n, r in results.items():
            for k, v in r["removed"].items():
                if (n, k) not in shown and v:
                    print(f"  {n}: other reason {k!r}: {v:,}")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
