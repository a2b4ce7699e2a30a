"""The learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup to ``lr`` over ``warmup_steps``; then ``cosine``: cosine decay to ``min_lr`` at
    ``max_steps``; or ``wsd`` (warmup-stable-decay): ``lr`` held, then a linear decay to ``min_lr``
    over the last ``decay_fraction`` of the steps (Hägele et al. 2024 find a 20 % cooldown matches
    cosine, and a run can be extended from any stable-phase checkpoint)."""

    lr: float
    min_lr: float
    max_steps: int
    warmup_steps: int = 0
    schedule: str = "cosine"
    decay_fraction: float = 0.2

    @classmethod
    def from_config(cls, cfg) -> "LRSchedule":
        """The schedule of a ``hare.train.config.TrainConfig``."""
        return cls(cfg.lr, cfg.min_lr, cfg.max_steps, cfg.warmup_steps, cfg.schedule, cfg.decay_fraction)

    def at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "wsd":
            decay_steps = max(1, round(self.max_steps * self.decay_fraction))
            start = self.max_steps - decay_steps
            if step < start:
                return self.lr
            return self.lr + (self.min_lr - self.lr) * min(1.0, (step - start + 1) / decay_steps)
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def decay_start(self) -> int | None:
        """The first step of a wsd schedule's decay; a checkpoint taken there continues any longer run."""
        if self.schedule != "wsd":
            return None
        return self.max_steps - max(1, round(self.max_steps * self.decay_fraction))
