"""``hare sft BASE DATA...`` (fine-tune a model folder) or ``hare sft [RECIPE]`` (a recipe's sft step)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hare.commands.pipeline import command

HELP = ("fine-tune a model folder on chat data (TRL's SFTTrainer, the HARE chat template), or run a recipe's "
        "sft step")


def run(args: argparse.Namespace) -> int:
    """``hare sft BASE DATA...``: fine-tune a model folder on chat files; ``hare sft [RECIPE]``: the recipe's step."""
    from pydantic import ValidationError

    from hare.chat.sft import sft
    from hare.core.progress import step_output
    from hare.evals.evaluate import is_model_dir
    from hare.chat.config import SftConfig

    target = args.target
    if target is None or not is_model_dir(target):
        if args.data:
            print(f"error: {target}: not a model folder (no config.json)", file=sys.stderr)
            return 2
        args.recipe = target
        return command(["sft"])(args)
    if not args.data:
        print("error: hare sft BASE DATA...: name the chat files to fine-tune on", file=sys.stderr)
        return 2
    fields = {k: getattr(args, k) for k in ("template", "format", "max_steps", "epochs", "lr", "batch_size",
                                             "grad_accum", "max_length", "eval_fraction", "device", "threads",
                                             "tools", "neftune_noise_alpha", "soup")
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
            res = sft(target, args.data, cfg, out, seed=args.seed, resume=args.resume)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs = res.get("runs") or []
    if runs:
        print("sft: " + "; ".join(f"run {i} (seed {r['seed']}): loss {r['final_loss']:.4f}"
                                  + (f", held-out {r['eval_loss']:.4f}" if r["eval_loss"] is not None else "")
                                  for i, r in enumerate(runs)))
    print(f"sft: {'soup of ' + str(len(runs)) + ' runs, ' if runs else ''}{res['step']} steps, "
          f"{'mean ' if runs else ''}loss {res['final_loss']:.4f}"
          + (f", held-out loss {res['eval_loss']:.4f}" if res["eval_loss"] is not None else "")
          + f", {res['conversations']} conversations, {res['quarantined']} quarantined, "
            f"{res['tokens_per_s']:,.0f} tokens/s")
    print(f"model: {out / 'model'}")
    return 0


def add_arguments(sp: argparse.ArgumentParser) -> None:
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
    sp.add_argument("--neftune", dest="neftune_noise_alpha", type=float, default=None, metavar="ALPHA",
                    help="NEFTune: noise on the input embeddings while training, of magnitude ALPHA / sqrt(length x "
                    "hidden size) (the paper: 5; default: none)")
    sp.add_argument("--soup", type=int, default=None, metavar="N",
                    help="fine-tune N times (training seeds --seed, --seed+1, ...) and export the uniform model soup "
                         "of the runs (hare soup); each run is kept in OUT/run-K (default: 1, no soup)")
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
