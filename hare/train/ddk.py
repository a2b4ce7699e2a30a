"""DDK: the distillation mixture moves toward the data parts where the student lags the teacher most.

Liu et al. 2024 ("DDK: Distilling Domain Knowledge for Efficient Large Language Models", arXiv
2407.16154) re-weight the domains of a distillation mixture by the gap between the student's and
the teacher's loss on each domain's validation data, with a smoothed update so the mixture does not
swing. Here the domains are the data parts of the current training stage (with ``mix.split_sources``
every source is its own part). Every ``train.distill.ddk.every`` steps, and before the first:

1. the student's loss ``S_d`` is measured on part ``d``'s held-out windows (its last
   ``heldout_windows`` packed windows, never sampled for training); the teacher's ``T_d`` on the same
   windows comes from the teacher step (``window_loss.bin``) or, with the online teacher, from one
   forward at the start;
2. the target is the stage's planned weight times ``softmax_d(S_d / T_d / temperature)``,
   normalized (DDK's domain discrepancy factor, ``exp`` of the loss ratio);
3. the weights move ``smoothing`` of the way to it (DDK's factor-smooth update), and each stays
   within ``[planned / max_factor, planned x max_factor]`` (renormalized).

The weights are part of the sampler's state, so a run resumed from a checkpoint continues with the
weights it had, and every update is recorded in ``metrics.jsonl`` (``ddk``) and in the
``weights`` of the next step's record in ``batches.jsonl``.
"""

from __future__ import annotations

import math

import numpy as np


def bounded(weights: dict[str, float], base: dict[str, float], factor: float, rounds: int = 50) -> dict[str, float]:
    """``weights`` normalized with every one within ``[base / factor, base * factor]`` (clip, renormalize,
    until both hold)."""
    w = dict(weights)
    for _ in range(rounds):
        total = sum(w.values())
        w = {k: v / total for k, v in w.items()}
        clipped = {k: min(max(v, base[k] / factor), base[k] * factor) for k, v in w.items()}
        if all(abs(clipped[k] - w[k]) <= 1e-12 for k in w):
            break
        w = clipped
    return w


def ddk_update(current: dict[str, float], base: dict[str, float], student: dict[str, float],
               teacher: dict[str, float], smoothing: float, temperature: float, max_factor: float) -> dict[str, float]:
    """The next weights of the parts in ``current`` (see the module docstring); ``base``: the stage's
    planned weights, ``student``/``teacher``: mean held-out loss per part."""
    parts = list(current)
    ratio = np.array([student[k] / max(teacher[k], 1e-6) for k in parts]) / temperature
    score = np.exp(ratio - ratio.max())
    target = np.array([base[k] for k in parts]) * score
    target /= target.sum()
    moved = {k: (1 - smoothing) * current[k] + smoothing * float(t) for k, t in zip(parts, target)}
    return {k: round(v, 12) for k, v in bounded(moved, base, max_factor).items()}


def heldout_loss(model, windows: np.ndarray, device, batch: int = 8, chunked: bool = True) -> float:
    """The model's mean next-token cross-entropy (nats per token) over ``windows`` (n, L + 1);
    ``chunked``: from the hidden states a chunk at a time (not under FSDP, whose LM head is gathered
    only inside the model's forward: then the full logits, two windows at a time)."""
    import torch

    from hare.model.model import NextTokenLoss

    fwd = NextTokenLoss(model, chunked=chunked)
    batch = batch if chunked else min(batch, 2)
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(windows), batch):
            w = torch.from_numpy(np.asarray(windows[s:s + batch], dtype=np.int64)).to(device)
            n = w.shape[0] * (w.shape[1] - 1)
            total += float(fwd(w[:, :-1], w[:, 1:])) * n
            count += n
    model.train(was)
    return total / max(1, count) if count else math.nan
