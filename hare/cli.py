"""The ``hare`` command line: one table maps every command to its function.

``hare run [RECIPE]`` runs every step; ``hare <step> [RECIPE]`` runs one step (and, first, any
upstream step whose outputs are missing or stale). With no recipe, the embedded demo recipe runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path
from typing import Callable

from hare.core.progress import setup_console
from hare.recipe import Recipe, RecipeError, load_recipe, role

log = logging.getLogger("hare")


def _pipeline_command(steps: list[str] | None) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        from hare.pipeline import Pipeline
        from hare.report.html import publish

        recipe = load_recipe(args.recipe)
        if args.out_dir:
            set_out_dir(recipe, args.out_dir)
        force = list(args.force or [])
        if steps and getattr(args, "redo", False):
            force += steps
        status = Pipeline(recipe).run(targets=steps, force=force)
        publish(recipe.run_dir)
        report = recipe.run_dir / "report.html"
        print(f"{recipe.name}: " + ", ".join(f"{k} {v}" for k, v in status.items()))
        if report.exists() and (steps is None or "report" in steps):
            print(f"report: {report}")
        return 0

    return cmd


def set_out_dir(recipe: Recipe, out_dir: str) -> None:
    """``--out-dir``: checked like the recipe's own ``out_dir``."""
    from pydantic import ValidationError

    try:
        recipe.out_dir = out_dir
    except ValidationError as e:
        raise RecipeError(f"--out-dir {out_dir}: {e.errors()[0]['msg']}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    import yaml

    print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# {args.recipe or 'demo recipe'}: valid", file=sys.stderr)
    return 0


def _type_name(ann) -> str:
    import typing

    if typing.get_origin(ann) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(ann))
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


MARKS = {"execution": "execution only: not part of any step's fingerprint",
         "continuable": "a change continues the step's earlier work"}


def schema_lines(model: type = Recipe, prefix: str = "") -> list[str]:
    """Every recipe key with its type, default and description, nested sections indented; keys
    marked EXECUTION or CONTINUABLE in the schema say so."""
    from pydantic import BaseModel

    lines = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        sub = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)),
                   None)
        default = "" if f.is_required() else (" = " + repr(f.get_default(call_default_factory=True))
                                              if sub is None else "")
        tname = _type_name(ann)
        mark = f"  ({MARKS[role(f)]})" if role(f) in MARKS else ""
        lines.append(f"{prefix}{name}: {tname if sub is None else ('[' + sub.__name__ + ']' if ann is not sub else sub.__name__)}"
                     f"{default}{mark}")
        if f.description:
            lines += [prefix + "    " + l for l in textwrap.wrap(f.description, 96)]
        if sub is not None:
            lines += schema_lines(sub, prefix + "  ")
    return lines


def run_of_model(model: Path) -> Path | None:
    """The run folder of a model exported by a hare run (``runs/<name>/train/model``), else None."""
    return model.parent.parent if model.name == "model" and model.parent.name == "train" else None


def cmd_audit(args: argparse.Namespace) -> int:
    from hare.core.benchmarks import BENCHMARKS
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


def _audit_args(sp: argparse.ArgumentParser) -> None:
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


def cmd_eval(args: argparse.Namespace) -> int:
    """``hare eval MODEL``: evaluate a model folder; ``hare eval [RECIPE]``: run a recipe's eval step."""
    from hare.core.progress import step_output
    from hare.evals.evaluate import evaluate, is_model_dir

    target = args.target
    model_opts = [o for o, v in (("--suite", args.suite), ("--tasks", args.tasks), ("--limit", args.limit),
                                 ("--benchmarks-dir", args.benchmarks_dir), ("--heldout", args.heldout),
                                 ("--max-length", args.max_length)) if v]
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
        return _pipeline_command(["eval"])(args)
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
            summary = evaluate(model, out, tasks, benchmarks=args.benchmarks_dir, limit=args.limit, batch_size=batch,
                               device=args.device, max_length=args.max_length, heldout=args.heldout,
                               heldout_limit=args.limit, text_field=args.text_field, name=name)
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
        print(f"skipped {task}: {why}")
    print(f"written: {out}")
    ran = bool(summary.tasks) or summary.perplexity is not None
    if not ran:
        print("error: nothing was evaluated", file=sys.stderr)
    return 0 if ran else 1


def _eval_args(sp: argparse.ArgumentParser) -> None:
    from hare.evals.tasks import HELDOUT, SUITES, TASKS

    step_names = [s.name for s in _steps()]

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
    sp.add_argument("--batch-size", default="8", help="evaluation batch size, or 'auto'")
    sp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    sp.add_argument("--max-length", type=int, default=None,
                    help="context length in tokens (default: the model's max_position_embeddings)")
    sp.add_argument("--heldout", action="append", default=None, metavar="PATH",
                    help="documents for held-out perplexity (bits per byte, loss per token): JSONL with a text "
                         "field, .txt files, or folders of them; repeatable. Alone, it skips the suite")
    sp.add_argument("--text-field", default="text", help="JSONL field holding a document's text (with --heldout)")
    sp.add_argument("--out-dir", default=None,
                    help="folder holding the runs (default: runs); a model's results go to <out-dir>/eval/<name>/")
    sp.add_argument("--force", action="append", choices=step_names, metavar="STEP",
                    help="recipe only: redo STEP and every step after it even if unchanged; repeatable")
    sp.add_argument("--redo", action="store_true", help="recipe only: redo the eval step even if it is unchanged")


def cmd_schema(args: argparse.Namespace) -> int:
    print("\n".join(schema_lines()))
    return 0


def _steps() -> list:
    from hare.steps import STEPS

    return STEPS



# Commands whose arguments are not "[RECIPE] --out-dir --force": name -> function adding them.
CUSTOM_ARGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {"audit": _audit_args, "eval": _eval_args}

# name -> (function, one-line help). The single list of commands; README and tests read it.
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (_pipeline_command(None), "run every step of a recipe: " + " -> ".join(s.name for s in _steps())
            + " (unchanged steps are reused)"),
    **{s.name: (_pipeline_command([s.name]), s.help) for s in _steps()},
    "eval": (cmd_eval, "evaluate a model folder on the Open LLM Leaderboard suite (the paper's table) and "
                       "held-out perplexity, or run a recipe's eval step"),
    "validate": (cmd_validate, "check a recipe and print it with every default filled in"),
    "audit": (cmd_audit, "leakage audit of a model: n-gram accuracy on benchmarks and their rewritten twins (Δ)"),
    "schema": (cmd_schema, "print every recipe key with its type, default and meaning"),
}


def build_parser() -> argparse.ArgumentParser:
    from hare import __version__

    step_names = [s.name for s in _steps()]

    p = argparse.ArgumentParser(
        prog="hare",
        description="Train strong small language models on concise, diverse, quality-consistent, "
                    "decontaminated data (the HARE method). Run with no command to run the demo recipe.",
    )
    p.add_argument("--version", action="version", version=f"hare {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error (accepted anywhere on the command line)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name in CUSTOM_ARGS:
            CUSTOM_ARGS[name](sp)
            continue
        if name == "schema":
            continue
        sp.add_argument("recipe", nargs="?", default=None,
                        help="recipe YAML file (default: the embedded demo recipe, which needs no files)")
        if name == "validate":
            continue
        sp.add_argument("--out-dir", default=None, help="folder holding the runs (overrides the recipe's out_dir)")
        sp.add_argument("--force", action="append", choices=step_names, metavar="STEP",
                        help=f"redo STEP and every step after it even if unchanged; repeatable; one of: "
                             f"{', '.join(step_names)}")
        if name != "run":
            sp.add_argument("--redo", action="store_true", help=f"redo the {name} step even if it is unchanged")
    return p


# Exit statuses: 2 for a command that cannot run as asked (usage: arguments, recipe), 1 for input
# data that cannot be used or a step that failed, 130 when interrupted.
EXIT_USAGE, EXIT_DATA = 2, 1


def _error_line(e: BaseException) -> str:
    """One line for an error: its message, or its type and message for an unexpected one."""
    from hare.core.io import DataError, RecordError

    msg = " ".join(str(e).split()) if not isinstance(e, RecipeError) else str(e)
    if isinstance(e, (DataError, RecordError, RecipeError, OSError)) and msg:
        return msg
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line (before or after the command).
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_console(logging.DEBUG if args.verbose else logging.INFO)
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    func = COMMANDS[args.command][0]
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        from hare.pipeline import PipelineError

        usage = isinstance(e, (RecipeError, PipelineError))
        print(f"error: {_error_line(e)}", file=sys.stderr)
        if not usage:
            print("(run again with --debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE if usage else EXIT_DATA


if __name__ == "__main__":
    raise SystemExit(main())
