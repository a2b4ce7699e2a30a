"""``hare tools-data``: a function library's queries as chat records (``hare.chat.toolcall.data``)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("training and held-out queries of a function library as chat records whose answers are "
        "functional-token calls (for hare sft)")


def run(args: argparse.Namespace) -> int:
    from hare.core.io import write_jsonl
    from hare.chat.toolcall.data import build_examples, chat_record
    from hare.chat.toolcall.library import load_library

    lib = load_library(args.library)
    examples = build_examples(lib, args.queries, per_template=args.per_template, seed=args.seed)
    out = Path(args.out)
    for split in ("train", "test"):
        rows = [{**chat_record(e, lib), **e.record()} for e in examples if e.split == split]
        write_jsonl(out / f"{split}.jsonl", rows)
        print(f"{split}: {len(rows):,} queries, {len({r['family'] for r in rows})} families -> {out / f'{split}.jsonl'}")
    return 0


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--library", default=None, help="function library JSON (default: the example phone library)")
    sp.add_argument("--queries", default=None, help="query templates (default: <library>.queries.json)")
    sp.add_argument("--out", required=True, help="folder for train.jsonl and test.jsonl (chat records)")
    sp.add_argument("--per-template", type=int, default=6, help="slot fillings per template")
    sp.add_argument("--seed", type=int, default=0, help="seed of the slot values and of the held-out families")
