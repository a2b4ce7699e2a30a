"""What distillation adds to the train step (``train.distill``): the teacher's targets of every
micro-batch, and DDK's re-weighting of the mixture.

- ``source: cached``: the targets are the teacher step's top-k rows of the very windows the
  micro-batch reads (``hare.train.teacher.TeacherTargets``), sparse KD;
- ``source: online``: the teacher runs on the micro-batch (in inference mode, replicated on every
  process), its full distribution, dense KD.

The loss is ``hare.model.distill``'s; the student must share the teacher's tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from hare.train.data import MixtureSampler
from hare.train.ddk import ddk_update, heldout_loss
from hare.train.teacher import TeacherTargets, check_shared_tokenizer, load_teacher, teacher_folder

log = logging.getLogger("hare.train")


class Distiller:
    """The teacher side of a distilled run."""

    def __init__(self, cfg, parts: dict, tokenizer, device, teacher_out: Path | None = None):
        self.cfg = cfg
        self.device = device
        self.vocab = len(tokenizer)
        folder = teacher_folder(cfg)
        check_shared_tokenizer(folder, tokenizer)
        self.targets = self.model = None
        if cfg.source == "cached":
            if teacher_out is None:
                raise ValueError("train.distill.source cached: the teacher step's outputs are needed (hare teacher)")
            self.targets = TeacherTargets(teacher_out, cfg.temperature)
            self.targets.check(parts)
        else:
            self.model = load_teacher(folder, device)
        self.teacher_loss: dict[str, float] = {}
        if cfg.ddk is not None:
            for name, p in parts.items():
                if self.targets is not None:
                    self.teacher_loss[name] = float(np.mean(self.targets.window_loss(name)[p.n:p.n + p.holdout]))
                else:
                    self.teacher_loss[name] = heldout_loss(self.model, p.heldout(), device)
            log.info("DDK: the teacher's held-out loss per part: %s",
                     ", ".join(f"{k} {v:.4f}" for k, v in self.teacher_loss.items()))

    def teacher(self, ids: list[tuple[str, int]], x: torch.Tensor) -> tuple:
        """The teacher's targets for the micro-batch ``x`` whose windows are ``ids`` (part, window)."""
        if self.targets is not None:
            idx, lp = self.targets.rows(ids)
            return ("sparse", idx.to(self.device, non_blocking=True), lp.to(self.device, non_blocking=True))
        with torch.inference_mode():
            logits = self.model(input_ids=x, use_cache=False).logits[..., :self.vocab].float()
            lp = torch.log_softmax(logits / self.cfg.temperature, dim=-1)
        return ("dense", lp.clone())  # out of inference mode: autograd may save it

    def reweigh(self, step: int, sampler: MixtureSampler, model, fsdp: bool = False) -> dict | None:
        """DDK at ``step``: measure the student on every part of the stage, move the weights
        (``hare.train.ddk``), give them to the sampler; returns what to log (None: one part, nothing to move)."""
        from hare.core import dist

        stage = sampler.stage_at(step)
        if len(stage.weights) < 2:
            return None
        base = sampler.planned[stage.name]
        student = {k: heldout_loss(model, sampler.parts[k].heldout(), self.device, chunked=not fsdp)
                   for k in stage.weights}
        ddk = self.cfg.ddk
        new = ddk_update(dict(stage.weights), base, student, self.teacher_loss, ddk.smoothing, ddk.temperature,
                         ddk.max_factor)
        new = dist.broadcast_object(new)
        sampler.set_weights(step, new)
        return {k: {"student": round(student[k], 5), "teacher": round(self.teacher_loss[k], 5),
                    "weight": round(new[k], 6)} for k in new}
