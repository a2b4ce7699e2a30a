"""The training loop: AdamW, warmup + cosine, gradient accumulation, clipping, checkpoints, exact resume.

Batches are a pure function of the step: micro-batch ``m`` of step ``s`` reads the packed windows at
global positions ``(s * grad_accum + m) * micro_batch_size ...``, shuffled per epoch by the seed. A
checkpoint therefore needs only the step to put the data cursor back; with the model, optimizer,
scheduler and RNG states restored, a resumed run sees exactly the batches and produces the weights
an uninterrupted run would.

Outputs: checkpoints/step-NNNNNN.pt (last K kept), metrics.jsonl (loss, lr, grad norm, tokens/s,
MFU), model/ (a Hugging Face folder: config, safetensors weights, tokenizer).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hare.io import atomic_open, atomic_path, read_jsonl
from hare.model.model import build_model, count_params, flops_per_token, mistral_config, peak_flops
from hare.progress import Progress
from hare.recipe import TrainConfig
from hare.train.pack import PackedTokens, load_tokenizer

log = logging.getLogger("hare.train")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``max_steps``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on norms and biases (GPT-3, litgpt, nanoGPT)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def checkpoint_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("step-*.pt"))


def save_checkpoint(folder: Path, step: int, model, opt, sched, cfg_dump: dict, keep: int) -> Path:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "config": cfg_dump,
    }
    path = folder / f"step-{step:06d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in checkpoint_paths(folder)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, model, opt, sched) -> int:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"])


def train(model_config, data: PackedTokens, cfg: TrainConfig, out: Path, seed: int, resume: bool = False,
          stop_after: int | None = None) -> dict:
    """Train from scratch (or from the last checkpoint in ``out`` when ``resume``); returns a summary.

    ``stop_after`` ends the loop early at that step (after its checkpoint), as a crash would.
    """
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else None, "float32": None,
             "bfloat16": torch.bfloat16}[cfg.dtype]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    random.seed(seed)
    np.random.seed(seed)
    model = build_model(model_config, seed=seed).to(device)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            eps=cfg.eps, fused=device.type == "cuda")
    # LambdaLR multiplies the base lr; express the schedule as a factor of the peak.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg) / cfg.lr)

    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    step = 0
    ckpts = checkpoint_paths(ckpt_dir)
    if resume and ckpts:
        step = load_checkpoint(ckpts[-1], model, opt, sched)
        log.info("resumed from %s (step %d)", ckpts[-1], step)
    old = [m for m in read_jsonl(metrics_path) if m["step"] <= step] if metrics_path.exists() and step else []
    with atomic_open(metrics_path) as f:  # drop lines logged after the checkpoint we resume from
        for m in old:
            f.write(json.dumps(m) + "\n")

    L = data.seq_len
    tokens_per_step = cfg.micro_batch_size * cfg.grad_accum * L
    fpt = flops_per_token(model_config, L)
    peak = peak_flops(device)
    n_params = count_params(model)
    log.info("model: %s parameters; %d tokens per step; %d steps; device %s%s", f"{n_params:,}", tokens_per_step,
             cfg.max_steps, device, f" ({dtype})" if dtype else "")
    bar = Progress(total=cfg.max_steps, initial=step, desc="train", unit="step")
    last_loss = float("nan")
    t_log = time.perf_counter()
    steps_since = 0
    with open(metrics_path, "a", encoding="utf-8") as mf:
        while step < cfg.max_steps:
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                start = (step * cfg.grad_accum + micro) * cfg.micro_batch_size
                batch, _ = data.batch(start, cfg.micro_batch_size)
                batch = torch.from_numpy(batch).to(device, non_blocking=True)
                x, y = batch[:, :-1], batch[:, 1:]
                with autocast:
                    logits = model(input_ids=x).logits
                loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
                (loss / cfg.grad_accum).backward()
                loss_sum += loss.item()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip else float("inf"))
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            steps_since += 1
            last_loss = loss_sum / cfg.grad_accum
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                dt = time.perf_counter() - t_log
                tps = steps_since * tokens_per_step / dt
                rec = {"step": step, "loss": round(last_loss, 5), "lr": lr, "grad_norm": round(float(gnorm), 5),
                       "tokens": step * tokens_per_step, "tokens_per_s": round(tps, 1)}
                if peak:
                    rec["mfu"] = round(tps * fpt / peak, 4)
                mf.write(json.dumps(rec) + "\n")
                mf.flush()
                bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tps:,.0f}", refresh=False)
                t_log, steps_since = time.perf_counter(), 0
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                save_checkpoint(ckpt_dir, step, model, opt, sched, {"train": cfg.model_dump()}, cfg.keep_checkpoints)
            if stop_after is not None and step >= stop_after:
                break
    bar.close()
    return {"model": model, "step": step, "final_loss": last_loss, "params": n_params,
            "tokens": step * tokens_per_step, "flops_per_token": fpt}


def export_model(model, tokenizer, folder: Path) -> None:
    """Save a Hugging Face folder (config, safetensors, tokenizer) atomically: built aside, then renamed."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def run_train(ctx) -> dict:
    r = ctx.recipe
    tok_dir = ctx.deps["tokenize"]
    tokenizer = load_tokenizer(tok_dir / "tokenizer")
    data = PackedTokens(tok_dir, seed=r.seed)
    overrides = dict(r.model.overrides)
    overrides.setdefault("max_position_embeddings", max(data.seq_len, 128))
    config = mistral_config(r.model.preset, overrides, vocab_size=len(tokenizer))
    res = train(config, data, r.train, ctx.out, r.seed, resume=ctx.resume)
    model = res.pop("model")
    model.config.use_cache = True
    export_model(model.cpu(), tokenizer, ctx.out / "model")
    log.info("exported %s", ctx.out / "model")
    return {**res, "sequences": data.n, "epochs": round(res["tokens"] / (data.n * data.seq_len), 3)}
