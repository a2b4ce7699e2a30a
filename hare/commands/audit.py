"""``hare audit MODEL``: the leakage audit of a model (``hare.evals.audit``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hare.commands.pipeline import run_of_model

HELP = "leakage audit of a model: n-gram accuracy on benchmarks and their rewritten twins (Δ)"


def run(args: argparse.Namespace) -> int:
    from hare.core.evalsets import BENCHMARKS
    from hare.core.progress import step_output
    from hare.evals.audit import run_audit
    from hare.evals.rewrite import ChatRewriter, DeterministicRewriter

    model = Path(args.model)
    from hare.evals.evaluate import model_dir_problem

    problem = model_dir_problem(model)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    benchmarks = args.benchmarks.split(",") if args.benchmarks else list(BENCHMARKS)
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        print(f"error: --benchmarks: unknown {unknown}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    # A model exported by a hare run sits in runs/<name>/train/model: its audit goes beside the run.
    run_dir = run_of_model(model)
    if run_dir is not None and not (run_dir / "mix").is_dir():
        run_dir = None
    if args.run:
        run_dir = Path(args.run)
    out = Path(args.out) if args.out else (run_dir / "audit" if run_dir else Path("audit") / model.name)
    if args.endpoint:
        if not args.rewriter_model:
            print("error: --endpoint needs --rewriter-model (the model name the endpoint serves)", file=sys.stderr)
            return 2
        import os

        rewriter = ChatRewriter(args.endpoint, args.rewriter_model, out / "rewrites.jsonl",
                                api_key=os.environ.get(args.api_key_env) if args.api_key_env else None)
    else:
        rewriter = DeterministicRewriter(seed=args.seed)
    with step_output(out / "log.txt"):
        result = run_audit(model, benchmarks, args.benchmarks_dir, out, rewriter, max_items=args.max_items,
                           splits=args.splits.split(",") if args.splits else None, n=args.n, k=args.k,
                           batch_size=args.batch_size, device=args.device, run_dir=run_dir, seed=args.seed)
    from hare.evals.audit import markdown

    print(markdown(result), end="")
    if run_dir is not None and (run_dir / "report").is_dir():
        from hare.pipeline import rebuild_report

        rebuild_report(run_dir)
    print(f"written: {out / 'audit.json'}, {out / 'audit.md'}")
    return 0


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", help="a Hugging Face model folder (e.g. runs/<name>/train/model)")
    sp.add_argument("--benchmarks-dir", default=None,
                    help="folder with the benchmark files (arc/, gsm8k/, ...); the hub cache is searched too")
    sp.add_argument("--benchmarks", default=None, help="comma-separated benchmarks (default: all known)")
    sp.add_argument("--splits", default=None, help="comma-separated splits to audit (default: every split found)")
    sp.add_argument("--max-items", type=int, default=3000, help="items sampled per split (the paper: 3000)")
    sp.add_argument("--n", type=int, default=5, help="tokens that must be reproduced at each start point")
    sp.add_argument("--k", type=int, default=5, help="start points per item")
    sp.add_argument("--endpoint", default=None,
                    help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1) that paraphrases the items; "
                         "without it hare's deterministic rewriter is used")
    sp.add_argument("--rewriter-model", default=None, help="model name to ask the endpoint for")
    sp.add_argument("--api-key-env", default=None, help="environment variable holding the endpoint's API key")
    sp.add_argument("--run", default=None,
                    help="a hare run folder whose training data gives the clean-subset view (found automatically "
                         "for runs/<name>/train/model)")
    sp.add_argument("--out", default=None, help="output folder (default: <run>/audit or audit/<model name>)")
    sp.add_argument("--batch-size", type=int, default=16, help="texts per forward pass")
    sp.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    sp.add_argument("--seed", type=int, default=0, help="seed of the item sample and the rewriter")
