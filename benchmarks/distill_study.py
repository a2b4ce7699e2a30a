"""Distillation against cross-entropy alone, same student, tokens and seeds: ``hare study --distill``.

The corpus is a sample of the six NLTK prose corpora of ``benchmarks/study_credible.py`` (``--docs``
documents of each, cut the same way). Every arm uses the packaged SmolLM2-135M-Instruct's tokenizer
and trains the same student (the tiny preset with 2 layers) for the same tokens with the same seeds:

- ``hare``: the full hare D1, cross-entropy only (the baseline here);
- ``hare+kd``: the same data, loss (1 - alpha) CE + alpha T^2 KL(teacher || student) against the
  teacher's top-32 log-probabilities, computed once by the teacher step;
- ``hare+kd+ddk``: the same, every source its own data part, re-weighted by DDK.

It runs

    hare study RECIPE --distill --arms hare,hare+kd,hare+kd+ddk --baseline hare --seeds 3 --no-suite

and prints the study's table (held-out bits per byte, mean and 95 % interval over seeds, each arm
paired by seed with ``hare``; tokens to reach ``hare``'s final value), then the teacher step's cost:
tokens, seconds, tokens per second and bytes per token of every arm that ran it.

    python benchmarks/distill_study.py --nltk-dir ~/nltk_data/corpora
    python benchmarks/distill_study.py --nltk-dir ... --docs 100 --mix-chars 200000 --seeds 2  # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_credible import write_sources  # noqa: E402  (the same documents as the credible tier)


def teacher_costs(study: Path) -> list[dict]:
    """Per arm that ran the teacher step: its tokens, seconds and bytes (from the step's stats)."""
    out = []
    for stats in sorted(study.glob("arms/*/teacher/stats.json")):
        s = json.loads(stats.read_text())
        if not s.get("enabled", True) or not s.get("tokens"):
            continue
        out.append({"arm": stats.parent.parent.name, "tokens": s["tokens"], "seconds": s["seconds"],
                    "tokens_per_s": round(s["tokens"] / s["seconds"], 1) if s["seconds"] else None,
                    "bytes_per_token": round(s["bytes"] / s["tokens"], 2), "mb": round(s["bytes"] / 1e6, 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nltk-dir", required=True, help="folder of the NLTK corpus zips (abc.zip, brown.zip, ...)")
    ap.add_argument("--out", default="runs/distill-study", help="where the corpus, recipe and study go")
    ap.add_argument("--docs", type=int, default=300, help="documents taken from each corpus")
    ap.add_argument("--doc-chars", type=int, default=4000, help="longest document, in characters")
    ap.add_argument("--mix-chars", type=int, default=500_000, help="the hare arm's topic-balanced mix, in characters")
    ap.add_argument("--tokens", type=int, default=None, help="token budget of every arm (default: one epoch of the "
                    "mix, about mix-chars / 4)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per arm")
    ap.add_argument("--arms", default="hare,hare+kd,hare+kd+ddk", help="arms to train (hare is the baseline)")
    ap.add_argument("--heldout-docs", type=int, default=120, help="clean documents held out for evaluation")
    ap.add_argument("--eval-docs", type=int, default=32, help="held-out documents scored at each evaluation")
    ap.add_argument("--eval-points", type=int, default=5, help="evaluations during training")
    ap.add_argument("--figure", default=None, help="also write the study's plot here")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    sources = write_sources(Path(args.nltk_dir).expanduser(), out / "corpus", args.doc_chars, limit=args.docs)
    recipe = {
        "name": "distill-study", "seed": 1234, "sources": sources,
        "corpus": {"dedup": "minhash"},
        "cluster": {"enabled": True},
        "mix": {"max_chars": args.mix_chars, "cluster_temperature": 3.0},
        "tokenizer": {"packaged": "smollm2"},
        "pack": {"seq_len": 256},
        "model": {"preset": "tiny", "overrides": {"num_hidden_layers": 2}},
        "train": {"micro_batch_size": 8, "grad_accum": 1, "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 20,
                  "checkpoint_every": 100, "log_every": 20},
        "eval": {"tasks": []},
    }
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    tokens = args.tokens or args.mix_chars // 4
    from hare.cli import main as hare

    cmd = ["study", str(path), "--distill", "--arms", args.arms, "--baseline", "hare",
           "--seeds", str(args.seeds), "--tokens", str(tokens), "--no-suite", "--no-noise",
           "--out", str(out / "study"), "--heldout-docs", str(args.heldout_docs), "--eval-docs", str(args.eval_docs),
           "--eval-points", str(args.eval_points)]
    if args.figure:
        cmd += ["--figure", args.figure]
    print("hare " + " ".join(cmd))
    rc = hare(cmd)
    if rc:
        return rc
    print("\nThe teacher step (SmolLM2-135M-Instruct over each distilled arm's packed tokens, once):")
    print("| arm | tokens | seconds | tokens/s | bytes/token | MB |")
    print("|---|---|---|---|---|---|")
    for c in teacher_costs(out / "study"):
        print(f"| {c['arm']} | {c['tokens']:,} | {c['seconds']:.0f} | {c['tokens_per_s']} | {c['bytes_per_token']} "
              f"| {c['mb']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
