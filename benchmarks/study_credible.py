"""The study's credible tier on real English prose of six domains: ``hare study --tier credible``.

The corpus is the six prose corpora NLTK distributes (``nltk.download`` puts them in
``~/nltk_data/corpora``; any folder holding their zip files will do): ABC science and rural news
transcripts, the Brown corpus (its part-of-speech tags removed), inaugural addresses, movie reviews,
State of the Union addresses and web text (forums, reviews, overheard lines, a film script), about
20 MB of text. Every file is cut at line ends into documents of at most ``--doc-chars`` characters,
each corpus a source of its own, so the study reports held-out bits per byte per domain
(Paloma's per-domain fit).

The script writes the documents and a recipe into ``--out``, then runs

    hare study RECIPE --tier credible --noise --benchmarks-dir BENCHMARKS --out OUT/study

the tiny preset with 2 layers (369k non-embedding parameters, 1.4M in all with the 4096-token
vocabulary) trained for 10 tokens per non-embedding parameter with 3 seeds per arm, crawl-like noise added (with benchmark items planted), the hare arm
topic-balanced into a mix of ``--mix-chars`` characters, and the benchmarks' held-out items scored as
tasks in the cloze formulation at every evaluation.

    python benchmarks/study_credible.py --nltk-dir ~/nltk_data/corpora --benchmarks-dir data/benchmarks
    python benchmarks/study_credible.py ... --tokens 200000 --seeds 2   # a quick check of the pipeline
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

import yaml

CORPORA = ("abc", "brown", "inaugural", "movie_reviews", "state_union", "webtext")
_TAG = re.compile(r"(\S+)/[^\s/]+(?=\s|$)")  # Brown's word/tag tokens


def documents(zip_path: Path, doc_chars: int):
    """(id, text) of the documents of one corpus zip: each file cut at line ends into pieces of at most
    ``doc_chars`` characters (a line longer than that is a piece of its own)."""
    corpus = zip_path.stem
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            if info.filename.endswith("/") or "README" in info.filename:
                continue
            raw = z.read(info.filename)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            text = text.replace("\r\n", "\n")
            if corpus == "brown":
                text = "\n".join(_TAG.sub(r"\1", line).strip() for line in text.splitlines())
            pieces, cur = [], ""
            for line in text.split("\n"):
                if cur and len(cur) + len(line) + 1 > doc_chars:
                    pieces.append(cur)
                    cur = ""
                cur = f"{cur}\n{line}" if cur else line
            pieces.append(cur)
            for k, p in enumerate(x.strip() for x in pieces):
                if len(p.split()) >= 20:
                    yield f"{info.filename}#{k}", re.sub(r"\n{3,}", "\n\n", p)


def write_sources(nltk_dir: Path, corpus: Path, doc_chars: int, limit: int | None = None) -> list[dict]:
    """One JSON Lines source per corpus zip found in ``nltk_dir`` (at most ``limit`` documents each),
    written into ``corpus``; the recipe's ``sources``."""
    corpus.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in CORPORA:
        z = nltk_dir / f"{name}.zip"
        if not z.exists():
            print(f"skipped {name}: {z} not found", file=sys.stderr)
            continue
        path = corpus / f"{name}.jsonl"
        n = chars = 0
        with open(path, "w", encoding="utf-8") as f:
            for doc_id, text in documents(z, doc_chars):
                if limit is not None and n >= limit:
                    break
                f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                n, chars = n + 1, chars + len(text)
        print(f"{name}: {n:,} documents, {chars:,} characters")
        sources.append({"name": name, "kind": "jsonl", "path": str(path)})
    if not sources:
        raise SystemExit(f"no NLTK corpus zip in {nltk_dir}")
    return sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nltk-dir", required=True, help="folder of the NLTK corpus zips (abc.zip, brown.zip, ...)")
    ap.add_argument("--benchmarks-dir", required=True, help="benchmark files (arc/, hellaswag/, mmlu/, ...)")
    ap.add_argument("--out", default="runs/study-credible", help="where the corpus, recipe and study go")
    ap.add_argument("--doc-chars", type=int, default=4000, help="longest document, in characters")
    ap.add_argument("--mix-chars", type=int, default=9_000_000, help="the hare arm's topic-balanced mix, in characters")
    ap.add_argument("--tokens", type=int, default=None, help="token budget of every arm (default: the tier's)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: the tier's 3)")
    ap.add_argument("--figure", default=None, help="also write the study's plot here")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    sources = write_sources(Path(args.nltk_dir).expanduser(), out / "corpus", args.doc_chars)
    recipe = {
        "name": "study-credible", "seed": 1234, "sources": sources,
        "corpus": {"dedup": "minhash"},
        "cluster": {"enabled": True},
        "mix": {"max_chars": args.mix_chars, "cluster_temperature": 3.0},
        "tokenizer": {"vocab_size": 4096},
        "pack": {"seq_len": 256},
        "model": {"preset": "tiny", "overrides": {"num_hidden_layers": 2}},
        "train": {"micro_batch_size": 8, "grad_accum": 2, "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 100,
                  "checkpoint_every": 200, "log_every": 50},
        "eval": {"tasks": []},
    }
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    from hare.cli import main as hare

    cmd = ["study", str(path), "--tier", "credible", "--noise", "--benchmarks-dir", args.benchmarks_dir,
           "--out", str(out / "study"), "--heldout-docs", "200", "--eval-docs", "64", "--eval-points", "6",
           "--task-items", "50", "--no-suite"]
    if args.tokens:
        cmd += ["--tokens", str(args.tokens)]
    if args.seeds:
        cmd += ["--seeds", str(args.seeds)]
    if args.figure:
        cmd += ["--figure", args.figure]
    print("hare " + " ".join(cmd))
    return hare(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
