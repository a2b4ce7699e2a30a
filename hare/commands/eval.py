"""``hare eval MODEL`` (evaluate a model folder) or ``hare eval [RECIPE]`` (a recipe's eval step)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hare.commands.pipeline import command, run_of_model, steps

# The flag of each option a skipped task asks for (``EvalStats.skipped_for``).
FLAGS = {"max_length": "--max-length", "benchmarks": "--benchmarks-dir"}
HELP = ("evaluate a model folder on the Open LLM Leaderboard suite (the paper's table) and held-out perplexity, "
        "or run a recipe's eval step")


def run(args: argparse.Namespace) -> int:
    """``hare eval MODEL``: evaluate a model folder; ``hare eval [RECIPE]``: run a recipe's eval step."""
    from hare.core.progress import step_output
    from hare.evals.evaluate import EvalOptions, evaluate, is_model_dir

    target = args.target
    model_opts = [o for o, v in (("--suite", args.suite), ("--tasks", args.tasks), ("--limit", args.limit),
                                 ("--benchmarks-dir", args.benchmarks_dir), ("--heldout", args.heldout),
                                 ("--max-length", args.max_length),
                                 ("--apply-chat-template", args.apply_chat_template), ("--backend", args.backend),
                                 ("--max-batch-tokens", args.max_batch_tokens)) if v]
    if target is None or not is_model_dir(target):
        if target is not None and Path(target).is_dir():
            print(f"error: {target}: not a model folder (no config.json) and not a recipe file", file=sys.stderr)
            return 2
        if target is not None and Path(target).is_file() and Path(target).suffix.lower() not in (".yaml", ".yml"):
            print(f"error: {target}: not a model folder (a folder with config.json and weights) and not a "
                  "recipe (.yaml)", file=sys.stderr)
            return 2
        if model_opts:
            print(f"error: {', '.join(model_opts)} apply to a model folder; a recipe sets them in its eval "
                  "section", file=sys.stderr)
            return 2
        args.recipe = target
        return command(["eval"])(args)
    if args.force or args.redo:
        print("error: --force and --redo apply to a recipe, not to a model folder", file=sys.stderr)
        return 2
    model = Path(target)
    from hare.evals.evaluate import model_dir_problem

    problem = model_dir_problem(model)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    run = run_of_model(model)  # a model exported by a hare run is named after its run
    name = run.name if run is not None else model.name
    out = Path(args.out_dir or "runs") / "eval" / name
    if args.tasks:
        tasks = args.tasks.split(",")
    elif args.suite or not args.heldout:  # --heldout alone measures perplexity only
        tasks = [args.suite or "leaderboard"]
    else:
        tasks = []
    batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    try:
        with step_output(out / "log.txt"):
            summary = evaluate(model, out, tasks, EvalOptions(
                benchmarks=args.benchmarks_dir, limit=args.limit, batch_size=batch, device=args.device,
                max_length=args.max_length, heldout=args.heldout or [], heldout_limit=args.limit,
                text_field=args.text_field, apply_chat_template=args.apply_chat_template,
                backend=args.backend or "hare", max_batch_tokens=args.max_batch_tokens), name=name)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if (out / "leaderboard.md").exists():
        print((out / "leaderboard.md").read_text(encoding="utf-8"))
    for row in summary.tasks:
        print(f"{row.task}: {row.metric} {row.value:.4f}")
    if summary.perplexity is not None:
        p = summary.perplexity
        print(f"held-out: {p.docs} documents, {p.loss:.4f} nats/token, {p.bits_per_byte:.4f} bits/byte")
    for task, why in summary.skipped_tasks.items():
        option = FLAGS.get(summary.skipped_for.get(task, ""))
        print(f"skipped {task}: {why}" + (f" ({option})" if option else ""))
    print(f"written: {out}")
    ran = bool(summary.tasks) or summary.perplexity is not None
    if not ran:
        print("error: nothing was evaluated", file=sys.stderr)
    return 0 if ran else 1


def add_arguments(sp: argparse.ArgumentParser) -> None:
    from hare.evals.tasks import HELDOUT, SUITES, TASKS

    step_names = [s.name for s in steps()]

    sp.add_argument("target", nargs="?", default=None, metavar="MODEL|RECIPE",
                    help="a model folder (a hare run's train/model or any local Hugging Face model) to evaluate, "
                         "or a recipe YAML whose eval step runs (default: the embedded demo recipe)")
    sp.add_argument("--suite", choices=sorted(SUITES), default=None,
                    help="task suite for a model: leaderboard (default; the paper's six benchmarks) or all "
                         "(adds arc_easy and truthfulqa_mc1)")
    sp.add_argument("--tasks", default=None,
                    help=f"comma-separated tasks instead of the suite; known: {', '.join([*TASKS, HELDOUT])} "
                         f"({HELDOUT}: the --heldout perplexity as a task row)")
    sp.add_argument("--benchmarks-dir", default=None, metavar="DIR",
                    help="folder with the benchmark files (arc/, hellaswag/, mmlu/, truthfulqa/, winogrande/, "
                         "gsm8k/); benchmarks not there are looked up in the local Hugging Face hub cache")
    sp.add_argument("--limit", type=int, default=None,
                    help="at most this many items per task (per MMLU subject) and held-out documents: a quick look")
    sp.add_argument("--batch-size", default="8",
                    help="evaluation batch size, or 'auto'; with the hare backend it sizes generation (GSM8K) only, "
                         "and 'auto' also sets --max-batch-tokens from the free memory")
    sp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    sp.add_argument("--backend", choices=["hare", "hf", "vllm"], default=None,
                    help="lm-eval model: hare (default: lm-eval's Hugging Face model scoring only the continuations, "
                         "one shared context per question, in token-budget batches), hf (lm-eval's own) or vllm "
                         "(lm-eval's vLLM model, on a GPU)")
    sp.add_argument("--max-batch-tokens", type=int, default=None,
                    help="hare backend: the most tokens one forward pass holds, which bounds its memory "
                         "(default: 8192; with --batch-size auto, from the free memory)")
    sp.add_argument("--max-length", type=int, default=None,
                    help="context length in tokens (default: the model's max_position_embeddings)")
    sp.add_argument("--heldout", action="append", default=None, metavar="PATH",
                    help="documents for held-out perplexity (bits per byte, loss per token): JSONL with a text "
                         "field, .txt files, or folders of them; repeatable. Alone, it skips the suite")
    sp.add_argument("--text-field", default="text", help="JSONL field holding a document's text (with --heldout)")
    sp.add_argument("--apply-chat-template", action="store_true",
                    help="render the prompts with the model's chat template, few-shot examples as earlier turns "
                         "(lm-eval's apply_chat_template; for chat models such as a hare sft export)")
    sp.add_argument("--out-dir", default=None,
                    help="folder holding the runs (default: runs); a model's results go to <out-dir>/eval/<name>/")
    sp.add_argument("--force", action="append", choices=step_names, metavar="STEP",
                    help="recipe only: redo STEP and every step after it even if unchanged; repeatable")
    sp.add_argument("--redo", action="store_true", help="recipe only: redo the eval step even if it is unchanged")
