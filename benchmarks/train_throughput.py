"""Training throughput: hare's loop against a plain ``transformers.Trainer`` on the same model and data.

Both train the same Mistral preset, from the same initial weights, on the same packed windows of
real text (the Python standard library's documentation, tokenized with a BPE trained here), with
the same batch, optimizer and schedule. Each step is timed; the first ``--warmup`` steps are left
out and the median step time gives tokens/s. Prints both figures and the ratio hare / Trainer; on a
GPU with a known peak it also prints hare's MFU.

    python benchmarks/train_throughput.py                       # tiny preset on CPU
    python benchmarks/train_throughput.py --preset hare-1.1b --seq-len 2048 --micro-batch 8 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_data(folder: Path, seq_len: int, vocab: int, modules: int):
    from hare.corpus.read import Quarantine, read_source
    from hare.recipe import SourceConfig
    from hare.train.pack import PackedTokens, pack_documents, train_tokenizer

    src = SourceConfig(name="pydoc", kind="pydoc", limit=modules * 10)
    texts = [d.text for d in read_source(src, Quarantine())]
    tok = train_tokenizer(texts, vocab, folder / "tokenizer")
    pack_documents(texts, tok, folder, seq_len)
    return tok, PackedTokens(folder, seed=0)


def step_times_hare(config, data, cfg, out: Path) -> list[float]:
    from hare.io import read_jsonl
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


def main() -> None:
    from hare.model.model import flops_per_token, mistral_config, peak_flops
    from hare.recipe import TrainConfig
    from hare.train.dist import init as resolve_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary trained for the benchmark")
    ap.add_argument("--modules", type=int, default=60, help="standard-library modules of text")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="autocast dtype for both sides (auto: bfloat16 on GPU, float32 on CPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile on both sides (compile time left out)")
    a = ap.parse_args()

    device = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok, data = build_data(tmp / "data", a.seq_len, a.vocab, a.modules)
        config = mistral_config(a.preset, {"max_position_embeddings": max(a.seq_len, 128)}, vocab_size=len(tok))
        cfg = TrainConfig(max_steps=a.steps, micro_batch_size=a.micro_batch, grad_accum=a.grad_accum, lr=3e-4,
                          min_lr=3e-5, warmup_steps=2, log_every=1, checkpoint_every=10 ** 9, device=a.device,
                          dtype=a.dtype, compile=a.compile)
        tokens = a.micro_batch * a.grad_accum * a.seq_len
        hare_t = step_times_hare(config, data, cfg, tmp / "hare")[a.warmup:]
        base_t = step_times_trainer(config, data, cfg, tmp / "trainer", device)[a.warmup:]
    hare_tps = tokens / statistics.median(hare_t)
    base_tps = tokens / statistics.median(base_t)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"threads {torch.get_num_threads()}; preset {a.preset}, seq {a.seq_len}, {tokens:,} tokens/step, "
          f"{a.steps} steps ({a.warmup} warmup left out), dtype {a.dtype}{', compiled' if a.compile else ''}")
    print(f"hare loop            {hare_tps:12,.0f} tokens/s")
    print(f"transformers.Trainer {base_tps:12,.0f} tokens/s")
    print(f"ratio hare / Trainer {hare_tps / base_tps:12.2f}x")
    peak = peak_flops(device)
    if peak:
        print(f"hare MFU             {hare_tps * flops_per_token(config, a.seq_len) / peak:12.1%}")


if __name__ == "__main__":
    main()
