"""Training throughput: hare's loop against a plain ``transformers.Trainer`` on the same model and data.

Both train the same Mistral preset, from the same initial weights, on the same packed windows of
real text (the Python standard library's documentation, tokenized with a BPE trained here), with
the same batch, optimizer and schedule; each side keeps its own defaults for the rest (hare: the
loss taken from the hidden states a chunk of tokens at a time, freed memory kept for reuse on CPU,
fused AdamW; Trainer: its model forward and loss, fused AdamW). Each run is a process of its own,
and the two sides run ``--repeats`` times each, alternated (hare, Trainer, hare, ...), so that a
change in the machine's load falls on both. Each step is timed; the first ``--warmup`` steps of
every run are left out and the median step time gives tokens/s. Prints both figures and the ratio
hare / Trainer, the median of each run, and the time of all steps with the warm-up (and the
compilation, with ``--compile``) counted; on a GPU with a known peak, hare's MFU.

    python benchmarks/train_throughput.py                       # tiny preset on CPU
    python benchmarks/train_throughput.py --preset hare-1.1b --seq-len 2048 --micro-batch 8 --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_data(folder: Path, seq_len: int, vocab: int, modules: int):
    from hare.corpus.read import Quarantine, read_source
    from hare.corpus.config import SourceConfig
    from hare.train.pack import PackedTokens, pack_documents, train_tokenizer

    src = SourceConfig(name="pydoc", kind="pydoc", limit=modules * 10)
    texts = [d.text for d in read_source(src, Quarantine())]
    tok = train_tokenizer(texts, vocab, folder / "tokenizer")
    pack_documents(texts, tok, folder, seq_len)
    return tok, PackedTokens(folder, seed=0)


def step_times_hare(config, data, cfg, out: Path) -> list[float]:
    from hare.core.io import read_jsonl
    from hare.train.loop import train

    train(config, data, cfg, out, seed=0)
    tokens_per_step = cfg.micro_batch_size * cfg.grad_accum * data.seq_len
    return [tokens_per_step / m["tokens_per_s"] for m in read_jsonl(out / "metrics.jsonl")]


def step_times_trainer(config, data, cfg, out: Path, device: torch.device) -> list[float]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from hare.model.model import build_model

    class Windows(torch.utils.data.Dataset):
        def __len__(self):
            return cfg.max_steps * cfg.grad_accum * cfg.micro_batch_size

        def __getitem__(self, g):
            batch, _ = data.batch(g, 1)
            ids = torch.from_numpy(batch[0, :-1])
            return {"input_ids": ids, "labels": ids}

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)

    model = build_model(config, seed=0)
    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="cosine", weight_decay=cfg.weight_decay, adam_beta1=cfg.beta1, adam_beta2=cfg.beta2,
        adam_epsilon=cfg.eps, max_grad_norm=cfg.grad_clip, logging_steps=10 ** 9, save_strategy="no",
        report_to=[], dataloader_num_workers=0, use_cpu=device.type == "cpu",
        bf16=cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.type == "cuda"),
        torch_compile=cfg.compile, seed=0, disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=Windows(), callbacks=[Timer()]).train()
    return times


def run_side(side: str, a, data_dir: Path, out: Path) -> list[float]:
    """Step times of one run of ``side``, in a fresh process (see ``main``)."""
    argv = [sys.executable, __file__, "--side", side, "--data", str(data_dir), "--out", str(out)]
    for k, v in vars(a).items():
        if k not in ("side", "data", "out", "compile") and v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    argv += ["--compile"] if a.compile else []
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{side} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    from hare.model.model import flops_per_token, mistral_config, peak_flops
    from hare.core.dist import init as resolve_device
    from hare.core.tokenizer import load_tokenizer
    from hare.train.config import TrainConfig
    from hare.train.pack import PackedTokens

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps of each run left out of the median")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each side, alternated")
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary trained for the benchmark")
    ap.add_argument("--modules", type=int, default=60, help="standard-library modules of text")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="autocast dtype for both sides (auto: bfloat16 on GPU, float32 on CPU)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile on both sides (compile time in the first steps: out of the median, in the total)")
    ap.add_argument("--side", choices=["hare", "trainer"], help=argparse.SUPPRESS)  # one run, in a child process
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()

    device = resolve_device(a.device)
    tokens = a.micro_batch * a.grad_accum * a.seq_len
    if a.side:
        data = PackedTokens(Path(a.data), seed=0)
        config = mistral_config(a.preset, {"max_position_embeddings": max(a.seq_len, 128)},
                                vocab_size=len(load_tokenizer(Path(a.data) / "tokenizer")))
        cfg = TrainConfig(max_steps=a.steps, micro_batch_size=a.micro_batch, grad_accum=a.grad_accum, lr=3e-4,
                          min_lr=3e-5, warmup_steps=2, log_every=1, checkpoint_every=10 ** 9, device=a.device,
                          dtype=a.dtype, compile=a.compile)
        if a.side == "hare":
            times = step_times_hare(config, data, cfg, Path(a.out))
        else:
            times = step_times_trainer(config, data, cfg, Path(a.out), device)
        print(json.dumps(times))
        return
    # Each run is a fresh process: neither side inherits the other's allocator state, threads or caches.
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok, _ = build_data(tmp / "data", a.seq_len, a.vocab, a.modules)
        config = mistral_config(a.preset, {"max_position_embeddings": max(a.seq_len, 128)}, vocab_size=len(tok))
        runs: dict[str, list[list[float]]] = {"hare": [], "trainer": []}
        for r in range(a.repeats):
            for side in runs:
                runs[side].append(run_side(side, a, tmp / "data", tmp / f"{side}-{r}"))
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"threads {torch.get_num_threads()}; preset {a.preset}, seq {a.seq_len}, {tokens:,} tokens/step, "
          f"{a.repeats} x {a.steps} steps per side ({a.warmup} warmup left out of each), dtype {a.dtype}"
          f"{', compiled' if a.compile else ''}")
    tps = {}
    for side, name in (("hare", "hare loop"), ("trainer", "transformers.Trainer")):
        tps[side] = tokens / statistics.median([t for run in runs[side] for t in run[a.warmup:]])
        per_run = ", ".join(f"{tokens / statistics.median(run[a.warmup:]):,.0f}" for run in runs[side])
        total = ", ".join(f"{sum(run):.1f}" for run in runs[side])
        print(f"{name:20s} {tps[side]:12,.0f} tokens/s  (runs: {per_run}; all steps incl. warmup: {total} s)")
    print(f"ratio hare / Trainer {tps['hare'] / tps['trainer']:12.2f}x")
    peak = peak_flops(device)
    if peak:
        print(f"hare MFU             {tps['hare'] * flops_per_token(config, a.seq_len) / peak:12.1%}")


if __name__ == "__main__":
    main()
