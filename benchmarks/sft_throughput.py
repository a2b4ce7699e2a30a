"""SFT throughput: packed, padding-free batches (hare's default) against padded ones, both on TRL.

Both sides fine-tune the same base (default: the packaged SmolLM2-135M-Instruct) on the same chat
records with ``hare.chat.sft.sft`` and the same settings, except ``packing``: on, conversations are
packed best-fit into ``--max-length`` rows without padding (position ids restart per conversation);
off, each batch holds ``--batch-size`` conversations padded to the longest. tokens/s counts the
conversations' tokens only (TRL's ``num_tokens``: the attention mask's sum when padded, the row's
length when padding-free), the median over the steps after ``--warmup``. The sides run
``--repeats`` times each, alternated, so that a change in the machine's load falls on both.
Prints both figures and the ratio packed / padded.

    python benchmarks/sft_throughput.py --data dolly.jsonl --steps 8
    python benchmarks/sft_throughput.py --data dolly.jsonl --preset tiny --threads 1   # a fresh hare base

``--preset`` builds the base from a hare model preset, freshly initialised, with a byte-level BPE
(``--vocab`` tokens) trained on the chat records' text.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def run(base: Path, data: Path, packing: bool, args, out: Path) -> float:
    from hare.chat.sft import sft
    from hare.core.io import read_jsonl
    from hare.chat.config import SftConfig

    cfg = SftConfig(max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length, packing=packing,
                    padding_free=packing, log_every=1, eval_fraction=0, checkpoint_every=10_000, device=args.device,
                    threads=args.threads, lr=1e-5)
    sft(base, [data], cfg, out, seed=0)
    tps = [m["tokens_per_s"] for m in read_jsonl(out / "metrics.jsonl") if "loss" in m][args.warmup:]
    return statistics.median(tps)


def preset_base(preset: str, data: Path, vocab: int, folder: Path) -> Path:
    from hare.chat.data import read_chats
    from hare.model.model import build_model, mistral_config
    from hare.train.pack import train_tokenizer

    texts = [t["content"] for c in read_chats([data]).conversations for t in c]
    tok = train_tokenizer(texts, vocab, folder)
    build_model(mistral_config(preset, vocab_size=len(tok)), seed=0).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="chat records (messages, ShareGPT or Alpaca/Dolly)")
    p.add_argument("--base", default=None, help="model folder (default: the packaged SmolLM2-135M-Instruct)")
    p.add_argument("--preset", default=None, help="build the base from this hare model preset instead")
    p.add_argument("--vocab", type=int, default=4096, help="with --preset: the BPE's vocabulary")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4, help="rows per step (packed) / conversations (padded)")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    res: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.preset:
            args.base = preset_base(args.preset, Path(args.data), args.vocab, Path(tmp) / f"base-{args.preset}")
        elif args.base is None:
            from hare.core.packaged import smollm2_folder

            args.base = smollm2_folder()
        for r in range(args.repeats):
            for packing in (True, False):
                res[packing].append(run(Path(args.base), Path(args.data), packing, args, Path(tmp) / f"{packing}{r}"))
    packed, padded = statistics.median(res[True]), statistics.median(res[False])
    print(f"base {args.preset or Path(args.base).name}, batch {args.batch_size}, max_length {args.max_length}, {args.steps} steps "
          f"({args.warmup} warm-up), device {args.device}")
    print(f"packed (padding-free): {packed:,.0f} tokens/s   runs: {', '.join(f'{v:,.0f}' for v in res[True])}")
    print(f"padded:                {padded:,.0f} tokens/s   runs: {', '.join(f'{v:,.0f}' for v in res[False])}")
    print(f"ratio packed / padded: {packed / padded:.2f}")


if __name__ == "__main__":
    main()
