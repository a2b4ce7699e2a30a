"""The training loop: AdamW, warmup + cosine, gradient accumulation, clipping, checkpoints, exact resume.

Batches are a pure function of the step: micro-batch ``m`` of step ``s`` reads the packed windows at
global positions ``(s * grad_accum + m) * micro_batch_size ...``, shuffled per epoch by the seed. A
checkpoint therefore needs only the step to put the data cursor back; with the model, optimizer,
scheduler and RNG states restored, a resumed run sees exactly the batches and produces the weights
an uninterrupted run would.

Outputs: checkpoints/step-NNNNNN.pt (last K kept, and on a wsd schedule the one at the start of the
decay), metrics.jsonl (loss, lr, grad norm, tokens/s, MFU), batches.jsonl (what every step read),
heldout.jsonl (with ``train.eval_every``: held-out bits per byte and loss against tokens seen),
model/ (a Hugging Face folder: config, safetensors weights, tokenizer).

A run resumed with another ``max_steps`` continues from the last checkpoint whose every step had
the learning rate the new schedule gives it (``resume_point``): on a wsd schedule, the checkpoint at
the start of the decay; a cosine schedule, whose every rate depends on ``max_steps``, starts over.
"""

from __future__ import annotations

import ctypes
import json
import logging
import platform
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hare.core import dist
from hare.core.io import atomic_dir, atomic_open
from hare.core.progress import Progress
from hare.core.tokenizer import load_tokenizer
from hare.model.perplexity import perplexity
from hare.model.model import NextTokenLoss, build_model, count_params, flops_per_token, mistral_config, peak_flops
from hare.core.config import config_dump
from hare.train.config import TrainConfig
from hare.train.data import MixtureSampler, load_parts, plan_stages
from hare.train.logs import HELDOUT, TrainStats, complete_lines
from hare.train.schedule import LRSchedule
from hare.train.pack import PackedTokens

log = logging.getLogger("hare.train")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based) under ``train``'s schedule (``LRSchedule``)."""
    return LRSchedule.from_config(cfg).at(step)


def decay_start(cfg: TrainConfig) -> int | None:
    """The first step of a wsd schedule's decay; a checkpoint taken there continues any longer run."""
    return LRSchedule.from_config(cfg).decay_start()


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the system.

    A training step frees and allocates the same buffers every step. By default glibc serves blocks
    of 32 MB and more (the logits of a micro-batch) with a fresh ``mmap`` and unmaps them when freed,
    and returns the free top of its heap once it passes a threshold, so every step page-faults its
    buffers in again: for the ``tiny`` preset and a step of 2 x 8 x 256 tokens, 65,000-68,000 page
    faults and 0.11-0.13 s of kernel time with the full logits, 20,000 faults with the chunked loss.
    With blocks up to 1 GB taken from the heap and up to 1 GB of its free top kept, about one a step
    (as jemalloc or tcmalloc, which PyTorch's CPU performance guide suggests preloading, would do).
    The setting holds for the rest of the process. Returns False where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on norms and biases (GPT-3, litgpt, nanoGPT)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def checkpoint_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("step-*.pt"))


def _full_state(model, opt, fsdp: bool) -> tuple[dict, dict]:
    """Unsharded model and optimizer state; under FSDP a collective every process must join."""
    if not fsdp:
        return model.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    o = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=o), get_optimizer_state_dict(model, opt, options=o)


def save_checkpoint(folder: Path, step: int, model, opt, sched, cfg_dump: dict, keep: int,
                    data_state: dict | None = None, fsdp: bool = False, protect: frozenset[int] = frozenset()) -> Path:
    """Write ``step-NNNNNN.pt`` atomically (rank 0) and keep the last ``keep`` and those of the steps in
    ``protect``; every rank calls it under FSDP."""
    path = folder / f"step-{step:06d}.pt"
    if not fsdp and not dist.is_main():  # only FSDP needs every rank to gather the full state
        return path
    model_sd, opt_sd = _full_state(model, opt, fsdp)
    if not dist.is_main():
        return path
    state = {
        "step": step,
        "data": data_state,
        "parallel": "fsdp" if fsdp else "ddp",
        "model": model_sd,
        "optimizer": opt_sd,
        "scheduler": sched.state_dict(),
        "rng": {"python": random.getstate(), "numpy": _numpy_rng_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "config": cfg_dump,
    }
    # Written through an open file: given a path, torch.save names the archive's records after the
    # file, here the random temporary name, so two identical runs wrote different bytes.
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    for old in checkpoint_paths(folder)[:-keep]:
        if checkpoint_step(old) not in protect:
            old.unlink()
    return path


def checkpoint_step(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _numpy_rng_state() -> dict:
    """NumPy's global generator state as tensors and numbers (a checkpoint holds no other objects)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def read_checkpoint(path: Path, mmap: bool = False) -> dict:
    """A checkpoint's contents, unpickled with ``weights_only=True``: tensors, numbers, strings and
    containers only, so a checkpoint file can never run code. ``mmap`` maps the tensors instead of
    reading them (to look at the config)."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: holds objects other than tensors, numbers and strings (a checkpoint of an "
                         f"earlier hare version?); it is not loaded: {str(e).splitlines()[0]}") from None


def resume_point(ckpts: list[Path], cfg: TrainConfig) -> tuple[Path | None, str]:
    """The last checkpoint a run with ``cfg`` can continue from, and why later ones cannot be used.

    A checkpoint of step k continues a run exactly when the k steps before it had the same learning
    rates under ``cfg`` as under the config it was written with (everything else but the execution
    settings must be equal); the next rates come from ``cfg``."""
    want = config_dump(cfg, without=("execution", "continuable"))
    why = ""
    for path in reversed(ckpts):
        try:
            old = TrainConfig.model_validate(read_checkpoint(path, mmap=True)["config"]["train"])
        except ValueError as e:
            why = str(e)
            continue
        k = checkpoint_step(path)
        old_lr, new_lr = LRSchedule.from_config(old), LRSchedule.from_config(cfg)
        if config_dump(old, without=("execution", "continuable")) != want:
            why = f"{path.name} was written with other training settings"
        elif k > cfg.max_steps:
            why = f"{path.name} is beyond train.max_steps {cfg.max_steps}"
        elif any(old_lr.at(s) != new_lr.at(s) for s in range(k)):
            why = (f"{path.name} was trained with learning rates that train.max_steps {cfg.max_steps} changes "
                   f"(schedule {cfg.schedule}, written with max_steps {old.max_steps})")
        else:
            return path, why
    return None, why


def load_checkpoint(path: Path, model, opt, sched, sampler=None, fsdp: bool = False) -> int:
    state = read_checkpoint(path)
    if state.get("parallel", "ddp") != ("fsdp" if fsdp else "ddp"):
        raise ValueError(f"{path} was written by a {state.get('parallel', 'ddp')} run; train.parallel must match")
    if sampler is not None:
        if state.get("data") is not None:
            sampler.load_state_dict(state["data"])
        else:  # a checkpoint without the data cursor: replay the plan up to its step
            for _ in range(int(state["step"])):
                sampler.next_step()
    if fsdp:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        o = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, state["model"], options=o)
        set_optimizer_state_dict(model, opt, optim_state_dict=state["optimizer"], options=o)
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rng = state["rng"]
    random.setstate(rng["python"])
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"])


def grad_accum_steps(cfg: TrainConfig, seq_len: int, world: int) -> int:
    """Micro-batches per process per step: from ``batch_tokens`` when given, else ``grad_accum``."""
    if cfg.batch_tokens is None:
        return cfg.grad_accum
    per = cfg.micro_batch_size * seq_len * world
    if cfg.batch_tokens % per:
        raise ValueError(f"train.batch_tokens={cfg.batch_tokens} is not a multiple of micro_batch_size x seq_len x "
                         f"processes = {cfg.micro_batch_size} x {seq_len} x {world} = {per}")
    return cfg.batch_tokens // per


def tokens_per_step(cfg: TrainConfig, seq_len: int, world: int) -> int:
    """Tokens one optimizer step trains on, over all ``world`` processes."""
    return cfg.micro_batch_size * seq_len * grad_accum_steps(cfg, seq_len, world) * world


def train(model_config, data: PackedTokens | dict[str, PackedTokens], cfg: TrainConfig, out: Path, seed: int,
          resume: bool = False, stop_after: int | None = None,
          evaluate: Callable[[torch.nn.Module], dict] | None = None, tokenizer=None,
          teacher_out: Path | None = None) -> dict:
    """Train from scratch (or from the last checkpoint in ``out`` when ``resume``); returns a summary.

    Under torchrun every process runs this function: each reads its own slice of every global
    batch, DDP averages the gradients, and only rank 0 writes metrics and checkpoints.
    ``stop_after`` ends the loop early at that step (without a checkpoint), as a crash would.
    ``evaluate(model)`` (with ``cfg.eval_every``) scores the model before the first step, every
    ``eval_every`` steps and after the last; rank 0 appends its numbers to ``heldout.jsonl``.
    Three parts: ``setup`` (model, optimizer, schedule, data), ``restore`` (the checkpoint to
    continue from, and the logs trimmed to it) and ``fit`` (the loop).
    With ``cfg.distill``, ``tokenizer`` (the run's) and, for the cached source, ``teacher_out`` (the
    teacher step's folder) give the teacher's targets (``hare.train.kd``).
    """
    run = setup(model_config, data, cfg, out, seed, tokenizer, teacher_out)
    step = restore(run, resume)
    return fit(run, step, stop_after, evaluate)


@dataclass
class Run:
    """A training run in progress: what ``setup`` builds and ``fit`` steps."""

    cfg: TrainConfig
    model_config: Any
    out: Path
    seed: int
    device: torch.device
    dtype: torch.dtype | None
    fsdp: bool
    autocast: Any
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    sampler: MixtureSampler
    seq_len: int
    accum: int
    tokens_per_step: int
    distiller: Any = None  # hare.train.kd.Distiller with train.distill

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"


def setup(model_config, data: PackedTokens | dict[str, PackedTokens], cfg: TrainConfig, out: Path, seed: int,
          tokenizer=None, teacher_out: Path | None = None) -> Run:
    """The process group, the model (sharded under FSDP), AdamW, the schedule, the data sampler and,
    with ``train.distill``, the teacher's side."""
    device = dist.init(cfg.device)
    world = dist.world_size()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cpu":
        keep_freed_memory()
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else None, "float32": None,
             "bfloat16": torch.bfloat16}[cfg.dtype]
    fsdp = cfg.parallel == "fsdp" and dist.distributed()
    # Under FSDP the parameters are kept in dtype by its mixed-precision policy instead of autocast.
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None and not fsdp else nullcontext()
    random.seed(seed)
    np.random.seed(seed)
    model = build_model(model_config, seed=seed).to(device)
    if cfg.activation_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    if fsdp:
        shard_model(model, dtype)
    model.train()
    # The fused kernel (one pass over each parameter) runs on CPU and GPU alike; FSDP's DTensors take foreach.
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            eps=cfg.eps, fused=not fsdp)
    # LambdaLR multiplies the base lr; express the schedule as a factor of the peak.
    schedule = LRSchedule.from_config(cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule.at(s) / cfg.lr)

    parts = data if isinstance(data, dict) else {"data": data}
    L = next(iter(parts.values())).seq_len
    accum = grad_accum_steps(cfg, L, world)
    samples_per_step = cfg.micro_batch_size * accum * world
    stages = plan_stages(cfg.stages, parts, samples_per_step * L, cfg.max_steps, samples_per_step=samples_per_step,
                         max_epochs=cfg.max_epochs)
    sampler = MixtureSampler(parts, stages, samples_per_step)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    distiller = None
    if cfg.distill is not None:
        from hare.train.kd import Distiller

        if tokenizer is None:
            raise ValueError("train.distill: train() needs the run's tokenizer")
        distiller = Distiller(cfg.distill, parts, tokenizer, device, teacher_out)
    return Run(cfg, model_config, out, seed, device, dtype, fsdp, autocast, model, opt, sched, sampler, L, accum,
               samples_per_step * L, distiller)


def restore(run: Run, resume: bool) -> int:
    """The step to start from: with ``resume``, the last checkpoint a run of ``run.cfg`` can continue
    (``resume_point``), loaded, and later ones deleted; the logs are cut back to that step."""
    cfg, step = run.cfg, 0
    ckpts = checkpoint_paths(run.ckpt_dir)
    if resume and ckpts:
        start, why = resume_point(ckpts, cfg)
        if why:
            log.warning("%s; %s", why, f"continuing from {start.name}" if start else
                        "no checkpoint can be continued, training starts over (a wsd schedule keeps the checkpoint "
                        "at the start of its decay, which longer runs continue from)")
        dist.barrier()
        if dist.is_main():
            for p in ckpts:
                if start is None or checkpoint_step(p) > checkpoint_step(start):
                    p.unlink()
        if start is not None:
            step = load_checkpoint(start, run.model, run.opt, run.sched, run.sampler, fsdp=run.fsdp)
            for g in run.opt.param_groups:  # the rate of the next step comes from this run's schedule
                g["lr"] = lr_at(step, cfg)
            log.info("resumed from %s (step %d)", start, step)
    if dist.is_main():
        heldout_path = run.out / HELDOUT
        for path in (run.out / "metrics.jsonl", run.out / "batches.jsonl", heldout_path):
            if path == heldout_path and not path.exists():  # drop lines logged after the resumed checkpoint
                continue
            # a DDK line at the resumed step was written after its checkpoint: the resumed run writes it again
            old = [m for m in complete_lines(path) if m["step"] < step or (m["step"] == step and "ddk" not in m)] \
                if path.exists() and step else []
            with atomic_open(path) as f:
                for m in old:
                    f.write(json.dumps(m) + "\n")
    dist.barrier()
    return step


def fit(run: Run, step: int, stop_after: int | None = None,
        evaluate: Callable[[torch.nn.Module], dict] | None = None) -> dict:
    """Train from ``step`` to ``cfg.max_steps``: the loop, its logs, held-out scores and checkpoints.
    (About 80 lines: the loop's order of logging, scoring and checkpointing is the resume contract,
    and reads best in one place.)"""
    cfg, main, world = run.cfg, dist.is_main(), dist.world_size()
    # The loss from the final hidden states a chunk of tokens at a time, except under FSDP (it gathers
    # the LM head's weight only inside the model's own forward) and torch.compile (which fuses the
    # loss of the full logits itself; a chunk loop would be unrolled into a slower graph).
    kd = cfg.distill
    fwd_model = NextTokenLoss(run.model, chunked=not run.fsdp and not cfg.compile,
                              alpha=kd.alpha if kd else 0.0, temperature=kd.temperature if kd else 1.0)
    ddp = None
    if dist.distributed() and not run.fsdp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd_model = ddp = DDP(fwd_model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    if cfg.compile:
        fwd_model = torch.compile(fwd_model)
    tb = _tensorboard(run.out) if cfg.tensorboard and main else None
    fpt = flops_per_token(run.model_config, run.seq_len)
    peak = peak_flops(run.device)
    n_params = count_params(run.model)
    log.info("model: %s parameters; %d tokens per step (%d x %d x %d processes x %d); %d steps; device %s%s",
             f"{n_params:,}", run.tokens_per_step, cfg.micro_batch_size, run.accum, world, run.seq_len,
             cfg.max_steps, run.device, f" ({run.dtype})" if run.dtype else "")
    keep_at = decay_start(cfg)
    if evaluate is not None and run.fsdp:
        log.warning("train.eval_every: held-out scoring during training is not done under FSDP (the eval step "
                    "scores the exported model)")
        evaluate = None
    every = cfg.eval_every if evaluate is not None else None
    score = _scorer(run, evaluate)
    if every and step == 0:
        score(0)
    bar = Progress(total=cfg.max_steps, initial=step, desc="train", unit="step", disable=not main)
    last_loss = float("nan")
    t_log = time.perf_counter()
    steps_since = 0
    ddk = kd.ddk if kd is not None else None
    with open(run.out / "metrics.jsonl", "a", encoding="utf-8") if main else nullcontext() as mf, \
            open(run.out / "batches.jsonl", "a", encoding="utf-8") if main else nullcontext() as bf:
        while step < cfg.max_steps:
            moved = None
            if ddk is not None and step % ddk.every == 0:
                moved = run.distiller.reweigh(step, run.sampler, run.model, run.fsdp)
                if main and moved:
                    _log_metrics({"step": step, "stage": run.sampler.stage_at(step).name, "ddk": moved}, mf, None)
                    log.info("step %d: DDK weights %s", step, ", ".join(f"{k} {v['weight']:.3f} (student "
                             f"{v['student']:.3f}, teacher {v['teacher']:.3f})" for k, v in moved.items()))
            stage, plan = run.sampler.next_step()
            if main:
                rec = MixtureSampler.record(step + 1, stage, plan)
                if moved:
                    rec["weights"], rec["ddk"] = dict(stage.weights), True
                bf.write(json.dumps(rec) + "\n")
            loss, gnorm, lr = _step(run, fwd_model, ddp, plan)
            step += 1
            steps_since += 1
            last_loss = dist.mean(loss, run.device)
            bar.update(1)
            if main and (step % cfg.log_every == 0 or step == cfg.max_steps):
                dt = time.perf_counter() - t_log
                tps = steps_since * run.tokens_per_step / dt
                rec = {"step": step, "stage": stage.name, "loss": round(last_loss, 5), "lr": lr,
                       "grad_norm": round(float(gnorm), 5),
                       "tokens": step * run.tokens_per_step, "tokens_per_s": round(tps, 1)}
                if peak:
                    rec["mfu"] = round(tps * fpt / (peak * world), 4)
                _log_metrics(rec, mf, tb)
                bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tps:,.0f}", refresh=False)
                t_log, steps_since = time.perf_counter(), 0
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or step == keep_at:
                if main:
                    bf.flush()
                if every and (step % every == 0 or step == cfg.max_steps):
                    score(step)  # before the checkpoint: a run resumed from it has this point already
                save_checkpoint(run.ckpt_dir, step, run.model, run.opt, run.sched,
                                {"train": cfg.model_dump(mode="json")}, cfg.keep_checkpoints,
                                run.sampler.state_dict(), fsdp=run.fsdp,
                                protect=frozenset({keep_at}) if keep_at else frozenset())
            elif every and step % every == 0:
                score(step)
            if stop_after is not None and step >= stop_after:
                break
    bar.close()
    if tb is not None:
        tb.close()
    raw_model = run.model
    if run.fsdp:  # gather the weights into an unsharded copy on rank 0 for export
        full, _ = _full_state(run.model, run.opt, True)
        raw_model = None
        if main:
            raw_model = build_model(run.model_config, seed=run.seed)
            raw_model.load_state_dict(full)
    dist.barrier()
    reads = {k: {"sequences": p.n, "samples_read": run.sampler.cursor[k],
                 "epochs": round(run.sampler.cursor[k] / p.n, 3) if p.n else 0.0}
             for k, p in run.sampler.parts.items()}
    return {"model": raw_model, "step": step, "final_loss": last_loss, "params": n_params,
            "tokens": step * run.tokens_per_step, "flops_per_token": fpt, "processes": world,
            "parts": reads, "capped": [note for st in run.sampler.stages for note in st.notes],
            "distill": _distill_summary(run)}


def _distill_summary(run: Run) -> dict:
    """What the stats say of distillation: the teacher and loss settings, and DDK's last weights."""
    kd = run.cfg.distill
    if kd is None:
        return {}
    from hare.train.teacher import teacher_name

    out = {"teacher": teacher_name(kd), "source": kd.source, "alpha": kd.alpha, "temperature": kd.temperature}
    if kd.source == "cached":
        out["top_k"] = kd.top_k
    if kd.ddk is not None:
        out["ddk_weights"] = {k: {p: round(w, 4) for p, w in v.items()} for k, v in run.sampler.reweighted.items()}
        out["teacher_heldout_loss"] = {k: round(v, 5) for k, v in run.distiller.teacher_loss.items()}
    return out


def _log_metrics(rec: dict, mf, tb) -> None:
    """One line of metrics.jsonl (flushed: a killed run keeps it), and the same numbers in TensorBoard."""
    mf.write(json.dumps(rec) + "\n")
    mf.flush()
    if tb is not None:
        for k, v in rec.items():
            if k not in ("step", "stage"):
                tb.add_scalar(f"train/{k}", v, rec["step"])


def _step(run: Run, fwd_model, ddp, plan) -> tuple[float, Any, float]:
    """One optimizer step over this process's micro-batches of ``plan``: (mean loss of this process,
    the gradient norm before clipping, the learning rate the step used)."""
    cfg, world, rank = run.cfg, dist.world_size(), dist.rank()
    loss_sum = 0.0
    for micro in range(run.accum):
        first = (micro * world + rank) * cfg.micro_batch_size
        mine = plan[first:first + cfg.micro_batch_size]
        batch = torch.from_numpy(run.sampler.windows(mine)).to(run.device, non_blocking=True)
        x, y = batch[:, :-1], batch[:, 1:]
        teacher = run.distiller.teacher(run.sampler.sequence_ids(mine), x) if run.distiller is not None else None
        # Gradients are averaged across processes only on the last micro-batch of a step.
        if run.fsdp:
            run.model.set_requires_gradient_sync(micro == run.accum - 1)
            sync = nullcontext()
        else:
            sync = nullcontext() if micro == run.accum - 1 or ddp is None else ddp.no_sync()
        with sync:
            with run.autocast:
                loss = fwd_model(x, y) if teacher is None else fwd_model(x, y, teacher)
            (loss / run.accum).backward()
        loss_sum += loss.item()
    gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip if cfg.grad_clip else float("inf"))
    if hasattr(gnorm, "full_tensor"):  # a DTensor under FSDP
        gnorm = gnorm.full_tensor()
    lr = run.opt.param_groups[0]["lr"]
    run.opt.step()
    run.sched.step()
    run.opt.zero_grad(set_to_none=True)
    return loss_sum / run.accum, gnorm, lr


def _scorer(run: Run, evaluate) -> Callable[[int], None]:
    """``score(step)``: rank 0 scores the held-out documents and appends them to ``heldout.jsonl``;
    the weights and every random state are left as they were."""

    def score(at: int) -> None:
        if dist.is_main():
            t = time.perf_counter()
            res = evaluate(run.model)
            run.model.train()
            rec = {"step": at, "tokens": at * run.tokens_per_step, **res,
                   "seconds": round(time.perf_counter() - t, 2)}
            with open(run.out / HELDOUT, "a", encoding="utf-8") as hf:
                hf.write(json.dumps(rec) + "\n")
            log.info("step %d: held-out %s", at, ", ".join(f"{k} {v:.4f}" for k, v in res.items()))
        dist.barrier()

    return score


def shard_model(model, dtype) -> None:
    """FSDP2: shard every decoder layer, then the rest (embeddings, final norm, LM head)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype is not None else None
    kw = {"mp_policy": mp} if mp is not None else {}
    for layer in model.model.layers:
        fully_shard(layer, **kw)
    fully_shard(model, **kw)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: metrics.jsonl has the same numbers
        log.info("train.tensorboard is on but the tensorboard package is not installed; logging to metrics.jsonl only")
        return None
    return SummaryWriter(str(out / "tensorboard"))


def export_model(model, tokenizer, folder: Path) -> None:
    """Save a Hugging Face folder (config, safetensors, tokenizer) atomically: built aside, then renamed."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def heldout_scorer(cfg: TrainConfig, corpus_dir: Path, tokenizer, seq_len: int):
    """``evaluate`` for ``train``: bits per byte and loss on the first ``eval_max_docs`` held-out
    documents, in windows of the training length (``hare.model.perplexity``); per source too
    (``bits_per_byte/<source>``, Paloma's per-domain fit) when the documents are JSON Lines records
    of several ``source`` values; and, with ``eval_tasks``, every task's choice metrics
    (``task/<task>/bits_per_byte``, ``acc``, ``correct_prob``: ``hare.model.choices``)."""
    if not cfg.eval_every:
        return None
    from hare.model.choices import choice_metrics, read_choice_items, score_choices
    from hare.model.perplexity import read_labelled_documents

    paths = [cfg.eval_docs] if cfg.eval_docs else [corpus_dir / "heldout"]
    docs = list(read_labelled_documents(paths, label_field="source", limit=cfg.eval_max_docs))
    items = read_choice_items(cfg.eval_tasks) if cfg.eval_tasks else []
    if not docs and not items:
        log.warning("train.eval_every: no held-out documents in %s; nothing is scored during training",
                    ", ".join(map(str, paths)))
        return None
    groups: dict[str, list[str]] = {}
    for text, label in docs:
        groups.setdefault(label or "", []).append(text)
    log.info("held-out scoring every %d steps: %d documents from %s%s%s", cfg.eval_every, len(docs),
             ", ".join(map(str, paths)), f" ({len(groups)} sources)" if len(groups) > 1 else "",
             f", {len(items)} choice items of {len({it.task for it in items})} tasks" if items else "")

    def evaluate(model) -> dict:
        dev = next(model.parameters()).device
        out: dict[str, float] = {}
        if docs:
            res = {g: perplexity(model, tokenizer, texts, max_len=seq_len, device=dev, quiet=True)
                   for g, texts in groups.items()}
            bits = sum(r.bits_per_byte * r.bytes for r in res.values())
            nll = sum(r.loss * r.tokens for r in res.values())
            out["bits_per_byte"] = round(bits / max(1, sum(r.bytes for r in res.values())), 6)
            out["loss"] = round(nll / max(1, sum(r.tokens for r in res.values())), 6)
            if len(res) > 1:
                out.update({f"bits_per_byte/{g}": round(r.bits_per_byte, 6) for g, r in sorted(res.items())})
        if items:
            metrics = choice_metrics(items, score_choices(model, tokenizer, items, max_len=seq_len, device=dev))
            for task, m in metrics.items():
                out.update({f"task/{task}/{k}": round(m[k], 6) for k in ("bits_per_byte", "acc", "correct_prob")})
        return out

    return evaluate


def train_model(tokenized: Path, corpus_dir: Path, model_cfg, cfg: TrainConfig, seed: int, out: Path,
                resume: bool = False, teacher_out: Path | None = None) -> TrainStats:
    """Train the model of ``model_cfg`` (``hare.model.config.ModelConfig``) on the packed parts in
    ``tokenized`` (the train step's work), scoring ``corpus_dir``'s held-out documents on the way
    when ``cfg.eval_every`` is set, and export it to ``out/model``; ``teacher_out``: the teacher
    step's folder (``train.distill``)."""
    tokenizer = load_tokenizer(tokenized / "tokenizer")
    ddk = cfg.distill.ddk if cfg.distill is not None else None
    parts = load_parts(tokenized, seed, holdout=ddk.heldout_windows if ddk else 0)
    seq_len = next(iter(parts.values())).seq_len
    overrides = dict(model_cfg.overrides)
    overrides.setdefault("max_position_embeddings", max(seq_len, 128))
    config = mistral_config(model_cfg.preset, overrides, vocab_size=len(tokenizer))
    evaluate = heldout_scorer(cfg, corpus_dir, tokenizer, seq_len)
    res = train(config, parts, cfg, out, seed, resume=resume, evaluate=evaluate, tokenizer=tokenizer,
                teacher_out=teacher_out)
    model = res.pop("model")
    if dist.is_main():
        model.config.use_cache = True
        export_model(model.cpu(), tokenizer, out / "model")
        log.info("exported %s", out / "model")
    dist.barrier()
    n_seq = sum(p.n for p in parts.values())
    return TrainStats(**res, sequences=n_seq, epochs=round(res["tokens"] / (n_seq * seq_len), 3))
