"""``hare eval-tools [MODEL]``: score a tool-calling model per function (``hare.chat.toolcall.score``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("score a tool-calling model per function: function accuracy, exact call, BFCL AST check, "
        "irrelevance rejection, latency; with TF-IDF and prompted baselines")


def run(args: argparse.Namespace) -> int:
    from hare.core.io import read_jsonl, write_json, write_jsonl
    from hare.chat.toolcall.data import Example, build_examples
    from hare.chat.toolcall.score import PromptedCaller, RetrievalBaseline, markdown, score
    from hare.chat.toolcall.library import load_library

    if args.log_samples and not args.out:
        print("error: --log-samples writes beside --out: give --out FILE.json", file=sys.stderr)
        return 2
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
    samples: dict[str, list] = {}  # --log-samples: every query's answer, per caller
    if args.model:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from hare.chat.toolcall.decode import ToolCaller

        model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
        results["functional tokens"] = score(ToolCaller(model, tok, lib), examples, lib,
                                             samples=samples.setdefault("functional tokens", []))
    if args.base:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = AutoModelForCausalLM.from_pretrained(args.base, local_files_only=True, dtype=torch.float32)
        base_tok = AutoTokenizer.from_pretrained(args.base, local_files_only=True)
        results["prompted base"] = score(PromptedCaller(base, base_tok, lib), examples, lib,
                                         samples=samples.setdefault("prompted base", []))
    if train:
        results["tf-idf retrieval"] = score(RetrievalBaseline(lib, train), examples, lib, arguments=False,
                                            samples=samples.setdefault("tf-idf retrieval", []))
    if not results:
        print("error: nothing to score: give MODEL, --base, or leave out --data to score the retrieval baseline",
              file=sys.stderr)
        return 2
    print(markdown(results), end="")
    if args.out:
        write_json(Path(args.out), results)
        print(f"written: {args.out}")
        if args.log_samples:
            rows = [{"caller": caller, **r} for caller, rs in samples.items() for r in rs]
            path = Path(args.out).with_suffix(".samples.jsonl")
            write_jsonl(path, rows)
            print(f"written: {path} ({len(rows)} answers)")
    return 0


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("model", nargs="?", default=None, help="model folder trained with the library's functional tokens")
    sp.add_argument("--library", default=None, help="function library JSON (default: the example phone library)")
    sp.add_argument("--data", default=None, help="queries to score (JSONL with query, function, arguments); "
                    "default: the held-out families of the library's query file")
    sp.add_argument("--base", default=None, help="also score this base model prompted with the tool schemas")
    sp.add_argument("--limit", type=int, default=None, help="score at most this many queries (evenly spread)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the query file's held-out families")
    sp.add_argument("--out", default=None, help="write the results as JSON here")
    sp.add_argument("--log-samples", action="store_true",
                    help="with --out: also write every query's expected and actual answer to OUT's name with "
                         ".samples.jsonl (as lm-eval's --log_samples)")
