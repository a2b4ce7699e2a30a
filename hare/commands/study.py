"""``hare study [RECIPE]``: the data-efficiency study (``hare.study``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hare.recipe import load_recipe

HELP = ("data-efficiency study: one model trained on raw, cleaned and full-hare data; held-out bits per byte "
        "against tokens, and the tokens each arm needs to match raw")


def run(args: argparse.Namespace) -> int:
    from hare.study import StudyConfig, markdown, run_study
    from hare.study.noise import Noise

    recipe = load_recipe(args.recipe)
    noise = args.noise if args.noise is not None else args.recipe is None  # the embedded corpus is clean text
    cfg = StudyConfig(arms=args.arms.split(",") if args.arms else None, arms_file=args.arms_file, steps=args.steps,
                      tokens=args.tokens, preset=args.preset,
                      eval_points=args.eval_points, heldout_docs=args.heldout_docs, eval_docs=args.eval_docs,
                      noise=Noise() if noise else None, benchmarks_dir=args.benchmarks_dir, limit=args.limit,
                      seeds=args.seeds, tier=args.tier, task_items=args.task_items, suite=args.suite,
                      ablations=args.ablations, distill=args.distill, baseline=args.baseline)
    out = Path(args.out) if args.out else Path(recipe.out_dir) / f"{recipe.name}-study"
    result = run_study(recipe, cfg, out, figure=Path(args.figure) if args.figure else None)
    print(markdown(result), end="")
    print(f"written: {out / 'study.json'}, {out / 'loss_vs_tokens.png'}, {out / 'report.html'}")
    return 0


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("recipe", nargs="?", default=None,
                    help="recipe YAML file (default: the embedded demo recipe, with crawl-like noise added)")
    sp.add_argument("--out", default=None, help="study folder (default: <out_dir>/<name>-study)")
    from hare.study.arms import load_arms

    arms = load_arms()
    plain, synthetic = [n for n, a in arms.items() if not a.synthetic], [n for n, a in arms.items() if a.synthetic]
    sp.add_argument("--arms", default=None,
                    help=f"arms to train, comma-separated: {', '.join(arms)} (raw is the baseline), or arms of "
                    f"--arms-file (default: {','.join(plain)}, and {','.join(synthetic)} when the recipe has a "
                    "teacher, and every arm of --arms-file)")
    sp.add_argument("--ablations", action="store_true",
                    help="add the ablation arms: hare without one of its principles at a time (cleaning, "
                    "deduplication, quality band, topic balancing, concision, decontamination)")
    sp.add_argument("--distill", action="store_true",
                    help="add the distillation arms: hare+kd (the packaged teacher's top-k log-probabilities as a "
                    "training signal) and hare+kd+ddk (and the DDK mixture); every arm then uses the teacher's "
                    "tokenizer")
    sp.add_argument("--baseline", default="raw",
                    help="the arm the others are compared with, paired by seed (default raw; hare to measure what "
                    "distillation adds to the same data)")
    sp.add_argument("--arms-file", default=None, metavar="YAML",
                    help="arms of your own, each a recipe overlay of data keys (the shape of hare/study/arms.yaml)")
    sp.add_argument("--steps", type=int, default=None, help="optimizer steps of every arm (default: train.max_steps)")
    sp.add_argument("--tokens", type=int, default=None, help="token budget of every arm (sets --steps)")
    sp.add_argument("--preset", default=None, help="model preset of every arm: tiny, small, 0.25b, hare-1.1b")
    sp.add_argument("--eval-points", type=int, default=10, help="held-out evaluations during training")
    sp.add_argument("--heldout-docs", type=int, default=100, help="clean documents held out before anything else")
    sp.add_argument("--eval-docs", type=int, default=64, help="held-out documents scored at each evaluation")
    sp.add_argument("--noise", action=argparse.BooleanOptionalAction, default=None,
                    help="add crawl-like noise to the input (default: on for the embedded corpus, off for a recipe)")
    sp.add_argument("--benchmarks-dir", default=None,
                    help="benchmark files: planted as noise, decontaminated against, evaluated (suite and audit)")
    sp.add_argument("--limit", type=int, default=20, help="items per leaderboard task")
    sp.add_argument("--figure", default=None, help="also write the loss-curve PNG here")
    sp.add_argument("--seeds", type=int, default=None,
                    help="seeds per arm (model initialization and data order); 2 or more give 95 %% intervals "
                    "(default 1; 3 with --tier credible)")
    sp.add_argument("--tier", choices=("smoke", "credible"), default="smoke",
                    help="smoke (default): the given budget, a check that every part runs; credible: 3 seeds and "
                    "10 tokens per non-embedding parameter unless --seeds/--tokens/--steps say otherwise")
    sp.add_argument("--suite", action=argparse.BooleanOptionalAction, default=True,
                    help="with --benchmarks-dir: the leaderboard suite and the leakage audit on every arm's first seed "
                    "(--no-suite skips them; the task items are scored either way)")
    sp.add_argument("--task-items", type=int, default=100,
                    help="benchmark items per benchmark scored as tasks (never planted; no arm trains on them)")
