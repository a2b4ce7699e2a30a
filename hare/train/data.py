"""The training data stream: packed data parts mixed by weight, stage after stage.

Each step draws ``samples_per_step`` windows. Within a stage, sample after sample goes to the part
whose share is furthest behind its weight (largest ``w_p * (n + 1) - count_p``), so at every point
of a stage each part is within one sample of its exact share: the weights are met to far better
than 1 % over any stage of more than a hundred samples. Each part reads its own windows in order
through its seeded per-epoch permutation (``PackedTokens``), continuing across stages, so a part
is never re-read before its epoch ends.

The sampler's state (stage, counts, each part's cursor) goes into every checkpoint, and every
step is recorded in ``batches.jsonl`` as, per part, the range of part-local positions it read:
what the model saw can be replayed exactly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hare.train.config import StageConfig
from hare.train.pack import PackedTokens, part_dirs


@dataclass
class Stage:
    name: str
    start: int  # first step
    end: int  # one past the last step
    weights: dict[str, float]  # normalized


def part_seed(seed: int, part: str) -> int:
    return seed * 1_000_003 + zlib.crc32(part.encode())


def load_parts(folder: str | Path, seed: int) -> dict[str, PackedTokens]:
    """Every packed part of a tokenize step's folder, each shuffled by its own seed."""
    parts = {name: PackedTokens(path, seed=part_seed(seed, name)) for name, path in part_dirs(folder).items()}
    if not parts:
        raise FileNotFoundError(f"{folder}: no packed data part (<part>/index.json)")
    return parts


def plan_stages(stages: list[StageConfig], parts: dict[str, PackedTokens], tokens_per_step: int,
                max_steps: int) -> list[Stage]:
    """Stages as step ranges; with none configured, one stage mixing parts by their sequence counts."""
    if not stages:
        total = sum(p.n for p in parts.values())
        return [Stage("all", 0, max_steps, {k: p.n / total for k, p in parts.items()})]
    out, start = [], 0
    for i, st in enumerate(stages):
        missing = sorted(k for k, w in st.weights.items() if w > 0 and k not in parts)
        if missing:
            raise ValueError(f"train.stages[{i}] ({st.name}) needs data parts {missing}; packed parts: {sorted(parts)}")
        steps = max_steps - start if st.tokens is None else -(-st.tokens // tokens_per_step)
        end = min(max_steps, start + steps)
        wsum = sum(st.weights.values())
        out.append(Stage(st.name, start, end, {k: w / wsum for k, w in sorted(st.weights.items()) if w > 0}))
        start = end
        if start >= max_steps:
            break
    if start < max_steps:  # the last stage runs to the end of training
        out[-1].end = max_steps
    return out


class MixtureSampler:
    """Which window of which part fills each sample of each step; resumable from ``state_dict``."""

    def __init__(self, parts: dict[str, PackedTokens], stages: list[Stage], samples_per_step: int):
        self.parts = parts
        self.stages = stages
        self.samples_per_step = samples_per_step
        self.seq_len = next(iter(parts.values())).seq_len
        self.step = 0
        self.cursor = {k: 0 for k in parts}  # windows each part has served so far (all stages)
        self.stage_counts = {k: 0 for k in parts}  # samples per part in the current stage
        self.stage_samples = 0

    def stage_at(self, step: int) -> Stage:
        for st in self.stages:
            if st.start <= step < st.end:
                return st
        return self.stages[-1]

    def next_step(self) -> tuple[Stage, list[tuple[str, int]]]:
        """The (part, part-local position) of every sample of the next step, in order."""
        stage = self.stage_at(self.step)
        if self.step == stage.start:
            self.stage_counts = {k: 0 for k in self.parts}
            self.stage_samples = 0
        names = list(stage.weights)
        w = np.array([stage.weights[k] for k in names])
        counts = np.array([self.stage_counts[k] for k in names], dtype=np.float64)
        plan = []
        for _ in range(self.samples_per_step):
            k = int(np.argmax(w * (self.stage_samples + 1) - counts))
            name = names[k]
            plan.append((name, self.cursor[name]))
            self.cursor[name] += 1
            counts[k] += 1
            self.stage_samples += 1
        for k, name in enumerate(names):
            self.stage_counts[name] = int(counts[k])
        self.step += 1
        return stage, plan

    def windows(self, plan: list[tuple[str, int]]) -> np.ndarray:
        """The token windows (L + 1 tokens each) of ``plan``."""
        L = self.seq_len
        tokens = {name: self.parts[name].tokens() for name in {name for name, _ in plan}}  # one memmap per part
        rows = []
        for name, j in plan:
            i = self.parts[name].sequence_id(j)
            rows.append(np.asarray(tokens[name][i * L: i * L + L + 1], dtype=np.int64))
        return np.stack(rows)

    @staticmethod
    def record(step: int, stage: Stage, plan: list[tuple[str, int]]) -> dict:
        """What step ``step`` read: per part, the half-open range of part-local positions."""
        ranges: dict[str, list[int]] = {}
        for name, j in plan:
            r = ranges.setdefault(name, [j, j])
            r[1] = j + 1
        return {"step": step, "stage": stage.name, "parts": ranges}

    def state_dict(self) -> dict:
        return {"step": self.step, "cursor": dict(self.cursor), "stage_counts": dict(self.stage_counts),
                "stage_samples": self.stage_samples}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.cursor = {k: state["cursor"].get(k, 0) for k in self.parts}
        self.stage_counts = {k: state["stage_counts"].get(k, 0) for k in self.parts}
        self.stage_samples = state["stage_samples"]
