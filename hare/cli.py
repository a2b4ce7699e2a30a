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
                               heldout_limit=args.limit, text_field=args.text_field, name=name,
                               apply_chat_template=args.apply_chat_template,
                               backend=args.backend or "hare", max_batch_tokens=args.max_batch_tokens)
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


def cmd_study(args: argparse.Namespace) -> int:
    from hare.study import StudyConfig, markdown, run_study
    from hare.study.noise import Noise

    recipe = load_recipe(args.recipe)
    noise = args.noise if args.noise is not None else args.recipe is None  # the embedded corpus is clean text
    cfg = StudyConfig(arms=args.arms.split(",") if args.arms else None, steps=args.steps, tokens=args.tokens, preset=args.preset,
                      eval_points=args.eval_points, heldout_docs=args.heldout_docs, eval_docs=args.eval_docs,
                      noise=Noise() if noise else None, benchmarks_dir=args.benchmarks_dir, limit=args.limit)
    out = Path(args.out) if args.out else Path(recipe.out_dir) / f"{recipe.name}-study"
    result = run_study(recipe, cfg, out, figure=Path(args.figure) if args.figure else None)
    print(markdown(result), end="")
    print(f"written: {out / 'study.json'}, {out / 'loss_vs_tokens.png'}, {out / 'report.html'}")
    return 0


def _study_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("recipe", nargs="?", default=None,
                    help="recipe YAML file (default: the embedded demo recipe, with crawl-like noise added)")
    sp.add_argument("--out", default=None, help="study folder (default: <out_dir>/<name>-study)")
    sp.add_argument("--arms", default=None,
                    help="arms to train, comma-separated: raw (the baseline), clean, hare, hare-d2, hare-d2-d3 "
                    "(default: raw,clean,hare, and hare-d2,hare-d2-d3 when the recipe has a teacher)")
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


def cmd_tools_data(args: argparse.Namespace) -> int:
    from hare.core.io import write_jsonl
    from hare.tools.data import build_examples, chat_record
    from hare.tools.library import load_library

    lib = load_library(args.library)
    examples = build_examples(lib, args.queries, per_template=args.per_template, seed=args.seed)
    out = Path(args.out)
    for split in ("train", "test"):
        rows = [{**chat_record(e, lib), **e.record()} for e in examples if e.split == split]
        write_jsonl(out / f"{split}.jsonl", rows)
        print(f"{split}: {len(rows):,} queries, {len({r['family'] for r in rows})} families -> {out / f'{split}.jsonl'}")
    return 0


def _tools_data_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--library", default=None, help="function library JSON (default: the example phone library)")
    sp.add_argument("--queries", default=None, help="query templates (default: <library>.queries.json)")
    sp.add_argument("--out", required=True, help="folder for train.jsonl and test.jsonl (chat records)")
    sp.add_argument("--per-template", type=int, default=6, help="slot fillings per template")
    sp.add_argument("--seed", type=int, default=0, help="seed of the slot values and of the held-out families")


def cmd_eval_tools(args: argparse.Namespace) -> int:
    import json

    from hare.core.io import read_jsonl, write_json
    from hare.tools.data import Example, build_examples
    from hare.tools.evaluate import PromptedCaller, RetrievalBaseline, markdown, score
    from hare.tools.library import load_library

    lib = load_library(args.library)
    if args.data:
        rows = [r for r in read_jsonl(args.data)]
        examples = [Example(r["query"], r.get("function"), r.get("arguments") or {}, r.get("family", ""),
                            r.get("split", "test")) for r in rows]
        train = []
    else:
        every = build_examples(lib, seed=args.seed)
        examples = [e for e in every if e.split == "test"]
        train = [e for e in every if e.split == "train"]
    if args.limit:
        examples = examples[:: max(1, len(examples) // args.limit)][: args.limit]
    results = {}
    if args.model:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from hare.tools.decode import ToolCaller

        model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
        results["functional tokens"] = score(ToolCaller(model, tok, lib), examples, lib)
    if args.base:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = AutoModelForCausalLM.from_pretrained(args.base, local_files_only=True, dtype=torch.float32)
        results["prompted base"] = score(PromptedCaller(base, AutoTokenizer.from_pretrained(args.base,
                                                                                            local_files_only=True), lib),
                                         examples, lib)
    if train:
        results["tf-idf retrieval"] = score(RetrievalBaseline(lib, train), examples, lib, arguments=False)
    if not results:
        print("error: nothing to score: give MODEL, --base, or leave out --data to score the retrieval baseline",
              file=sys.stderr)
        return 2
    print(markdown(results), end="")
    if args.out:
        write_json(Path(args.out), results)
        print(f"written: {args.out}")
    return 0


def _eval_tools_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", nargs="?", default=None, help="model folder trained with the library's functional tokens")
    sp.add_argument("--library", default=None, help="function library JSON (default: the example phone library)")
    sp.add_argument("--data", default=None, help="queries to score (JSONL with query, function, arguments); "
                    "default: the held-out families of the library's query file")
    sp.add_argument("--base", default=None, help="also score this base model prompted with the tool schemas")
    sp.add_argument("--limit", type=int, default=None, help="score at most this many queries (evenly spread)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the query file's held-out families")
    sp.add_argument("--out", default=None, help="write the results as JSON here")
def cmd_sft(args: argparse.Namespace) -> int:
    """``hare sft BASE DATA...``: fine-tune a model folder on chat files; ``hare sft [RECIPE]``: the recipe's step."""
    from pydantic import ValidationError

    from hare.chat.sft import sft
    from hare.core.progress import step_output
    from hare.evals.evaluate import is_model_dir
    from hare.recipe import SftConfig

    target = args.target
    if target is None or not is_model_dir(target):
        if args.data:
            print(f"error: {target}: not a model folder (no config.json)", file=sys.stderr)
            return 2
        args.recipe = target
        return _pipeline_command(["sft"])(args)
    if not args.data:
        print("error: hare sft BASE DATA...: name the chat files to fine-tune on", file=sys.stderr)
        return 2
    fields = {k: getattr(args, k) for k in ("template", "format", "max_steps", "epochs", "lr", "batch_size",
                                             "grad_accum", "max_length", "eval_fraction", "device", "threads")
              if getattr(args, k) is not None}
    try:
        cfg = SftConfig(**fields, packing=not args.no_packing, padding_free=not args.padded,
                        lora={"enabled": args.lora})
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / "sft" / Path(target).resolve().name
    try:
        with step_output(out / "log.txt"):
            base = target
            if args.tools:
                from hare.tools.library import load_library
                from hare.tools.openai import save_library
                from hare.tools.tokens import prepare_tool_base

                library = load_library(args.tools)
                base = out / "base-tools"
                if not (base / "config.json").exists() or not args.resume:
                    prepare_tool_base(target, library, base)
            res = sft(base, args.data, cfg, out, seed=args.seed, resume=args.resume)
            if args.tools and not res.get("interrupted"):
                save_library(library, out / "model")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"sft: {res['step']} steps, loss {res['final_loss']:.4f}"
          + (f", held-out loss {res['eval_loss']:.4f}" if res["eval_loss"] is not None else "")
          + f", {res['conversations']} conversations, {res['quarantined']} quarantined, "
            f"{res['tokens_per_s']:,.0f} tokens/s")
    print(f"model: {out / 'model'}")
    return 0


def _sft_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("target", nargs="?", default=None, metavar="BASE|RECIPE",
                    help="a Hugging Face model folder to fine-tune (a hare run's train/model), or a recipe whose "
                         "sft step runs")
    sp.add_argument("data", nargs="*", help="chat files, folders or globs (messages, ShareGPT, Alpaca/Dolly records)")
    sp.add_argument("--out", default=None, help="output folder (default: runs/sft/<base name>)")
    sp.add_argument("--template", choices=["hare", "chatml", "tokenizer"], default=None,
                    help="chat template (default: hare, <round_start>/<round_end>)")
    sp.add_argument("--format", choices=["auto", "messages", "sharegpt", "alpaca"], default=None,
                    help="record format (default: auto, per record from its keys)")
    sp.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: --epochs over the data)")
    sp.add_argument("--epochs", type=float, default=None, help="passes over the data (default: 3)")
    sp.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 2e-5)")
    sp.add_argument("--batch-size", type=int, default=None, help="sequences per forward pass (default: 8)")
    sp.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimizer step (default: 1)")
    sp.add_argument("--max-length", type=int, default=None, help="tokens per packed sequence, or per conversation unpacked (default: 1024)")
    sp.add_argument("--no-packing", action="store_true", help="one conversation per sequence, batches drawn "
                    "afresh every epoch; a batch is flattened into one row without padding (unless --padded)")
    sp.add_argument("--padded", action="store_true", help="with --no-packing: pad each conversation to the "
                    "longest of its batch instead")
    sp.add_argument("--eval-fraction", type=float, default=None, help="share held out for the evaluation loss")
    sp.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the export)")
    sp.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    sp.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's)")
    sp.add_argument("--seed", type=int, default=1234, help="seed of the data order and the held-out slice")
    sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    sp.add_argument("--out-dir", default=None, help="recipe only: folder holding the runs")
    sp.add_argument("--force", action="append", metavar="STEP", help="recipe only: redo STEP and every step after")
    sp.add_argument("--redo", action="store_true", help="recipe only: redo the sft step")
    sp.add_argument("--tools", default=None, metavar="LIBRARY",
                    help="function library (OpenAI tools JSON): add one functional token per function (initialised "
                         "from its description) before fine-tuning; the export carries the library (tools.json)")


def _serve_limits(args: argparse.Namespace):
    from hare.chat.serve import Limits

    return Limits(max_body_bytes=args.max_body_bytes, max_tokens=args.max_tokens or 1024,
                  max_messages=args.max_messages, max_prompt_tokens=args.max_prompt_tokens)


def cmd_serve(args: argparse.Namespace) -> int:
    """``hare serve MODEL``: an OpenAI-compatible server for a local model folder (transformers serve)."""
    import os

    from hare.chat.serve import Server, build_app

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not key:
        log.warning("serving on %s without an API key: anyone who can reach it can use it (set %s)",
                    args.host, args.api_key_env)
    try:
        app = build_app(args.model, _serve_limits(args), api_key=key, device=args.device,
                        continuous_batching=args.continuous_batching, chat_template=args.chat_template)
    except (FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from hare.tools.openai import install, model_library

    library = model_library(args.model)
    if library is not None:  # a functional-token model: its answers become OpenAI tool_calls, streamed too
        install(app, library)
        log.info("serving %d functions of %s as tool_calls", len(library.functions), library.path)
    if not app.has_chat_template:
        log.warning("%s has no chat template: /v1/chat/completions answers 400; /v1/completions serves it "
                    "(hare serve --chat-template NAME gives it one: hare, chatml or a Jinja file)", args.model)
    log.info("prompts are bounded at %s tokens and %d characters", app.limits.max_prompt_tokens,
             app.limits.max_prompt_chars)
    server = Server(app, args.host, args.port).start()
    print(f"serving {args.model} at {server.url} (model name: {args.model}){'; API key required' if key else ''}; "
          "Ctrl-C stops", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _serve_args(sp: argparse.ArgumentParser, chat: bool = False) -> None:
    if chat:
        sp.add_argument("--max-tokens", type=int, default=None,
                        help="most tokens of an answer (default: the server's; a local folder's server caps at 1024)")
    else:
        sp.add_argument("--max-tokens", type=int, default=1024,
                        help="cap on a request's max_tokens, and its value when a request leaves it out")
    sp.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body accepted")
    sp.add_argument("--max-messages", type=int, default=256, help="most messages in a chat request")
    sp.add_argument("--max-prompt-tokens", type=int, default=None,
                    help="most tokens of a prompt, chat template included (default: the model's context length)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sp.add_argument("--continuous-batching", action="store_true",
                    help="transformers' continuous batching with a paged KV cache (for GPUs; on CPU one request at "
                         "a time is faster)")
    sp.add_argument("--api-key-env", default="HARE_API_KEY",
                    help="environment variable holding the API key; when it is set, requests need "
                         "'Authorization: Bearer KEY'" + (" (with --endpoint: the key sent)" if chat else ""))


def _serve_cmd_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", help="a Hugging Face model folder (a hare export, or any local causal LM)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sp.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port, printed)")
    sp.add_argument("--chat-template", default=None,
                    help="a chat template for a model without one (or to replace its own): hare, chatml or a Jinja "
                         "file")
    _serve_args(sp)


def cmd_chat(args: argparse.Namespace) -> int:
    """``hare chat MODEL`` or ``hare chat --endpoint URL``: a terminal chat."""
    import os

    import openai

    from hare.chat.client import Chat, repl

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = None
    if args.endpoint:
        url, model = args.endpoint, args.model
    elif args.model:
        from hare.chat.serve import Server, build_app

        try:
            app = build_app(args.model, _serve_limits(args), device=args.device,
                            continuous_batching=args.continuous_batching)
        except (FileNotFoundError, ImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        server = Server(app).start()
        url, model, key = server.url, args.model, None
    else:
        print("error: name a model folder, or --endpoint URL", file=sys.stderr)
        return 2
    client = openai.OpenAI(base_url=url, api_key=key or "none", max_retries=0)
    try:
        if model is None:
            model = client.models.list().data[0].id
        on_answer = None
        library = None
        if args.tools:
            from hare.tools.library import load_library

            library = load_library(args.tools)
        elif args.model and not args.endpoint:
            from hare.tools.openai import model_library

            library = model_library(args.model)
        if library is not None:
            from hare.tools.check import describe, parse_call

            on_answer = lambda text: describe(parse_call(text, library))  # noqa: E731
        return repl(Chat(client, model, system=args.system, max_tokens=args.max_tokens,
                         temperature=args.temperature, on_answer=on_answer))
    except openai.APIConnectionError as e:
        print(f"error: cannot reach {url}: {e}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()


def _chat_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", nargs="?", default=None,
                    help="a local model folder to chat with (served in this process), or with --endpoint the model "
                         "name to ask for (default: the endpoint's first)")
    sp.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    sp.add_argument("--system", default=None, help="system prompt (default: the chat template's)")
    sp.add_argument("--temperature", type=float, default=None, help="sampling temperature (0: greedy)")
    sp.add_argument("--tools", default=None, metavar="LIBRARY",
                    help="function library of a functional-token model: print each answer's parsed call (a local "
                         "model trained with hare sft --tools carries its own)")
    _serve_args(sp, chat=True)


def cmd_schema(args: argparse.Namespace) -> int:
    print("\n".join(schema_lines()))
    return 0


def _steps() -> list:
    from hare.steps import STEPS

    return STEPS



# Commands whose arguments are not "[RECIPE] --out-dir --force": name -> function adding them.
CUSTOM_ARGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {"audit": _audit_args, "eval": _eval_args,
                                                                   "study": _study_args,
                                                                   "tools-data": _tools_data_args,
                                                                   "eval-tools": _eval_tools_args}
CUSTOM_ARGS.update({"sft": _sft_args, "serve": _serve_cmd_args, "chat": _chat_args})

# name -> (function, one-line help). The single list of commands; README and tests read it.
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (_pipeline_command(None), "run every step of a recipe: " + " -> ".join(s.name for s in _steps())
            + " (unchanged steps are reused)"),
    **{s.name: (_pipeline_command([s.name]), s.help) for s in _steps()},
    "eval": (cmd_eval, "evaluate a model folder on the Open LLM Leaderboard suite (the paper's table) and "
                       "held-out perplexity, or run a recipe's eval step"),
    "sft": (cmd_sft, "fine-tune a model folder on chat data (TRL's SFTTrainer, the HARE chat template), or run a "
                     "recipe's sft step"),
    "serve": (cmd_serve, "an OpenAI-compatible server (/v1/models, /v1/completions, /v1/chat/completions, streaming) "
                         "for a local model folder, on transformers serve"),
    "chat": (cmd_chat, "chat with a model in the terminal: a local folder, or a server (--endpoint)"),
    "validate": (cmd_validate, "check a recipe and print it with every default filled in"),
    "audit": (cmd_audit, "leakage audit of a model: n-gram accuracy on benchmarks and their rewritten twins (Δ)"),
    "schema": (cmd_schema, "print every recipe key with its type, default and meaning"),
    "tools-data": (cmd_tools_data, "training and held-out queries of a function library as chat records whose "
                                   "answers are functional-token calls (for hare sft)"),
    "eval-tools": (cmd_eval_tools, "score a tool-calling model per function: function accuracy, exact call, BFCL "
                                   "AST check, irrelevance rejection, latency; with TF-IDF and prompted baselines"),
    "study": (cmd_study, "data-efficiency study: one model trained on raw, cleaned and full-hare data; held-out "
                         "bits per byte against tokens, and the tokens each arm needs to match raw"),
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
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("serve", "chat"):
        import signal

        # Interactive commands stop on Ctrl-C even when started from a shell's background job,
        # which starts its children with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return _main(argv)


def _main(argv: list[str] | None = None) -> int:
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
