"""The training data stream: packed data parts mixed by weight, stage after stage.

Each step draws ``samples_per_step`` windows. Within a stage, sample after sample goes to the part
whose share is furthest behind its weight (largest ``w_p * (n + 1) - count_p``), so at every point
of a stage each part is within one sample of its exact share: the weights are met to far better
than 1 % over any stage of more than a hundred samples. Each part reads its own windows in order
through its seeded per-epoch permutation (``PackedTokens``), continuing across stages, so a part
is never re-read before its epoch ends.

With ``train.max_epochs`` (``plan_stages``), a part whose share would read it more than that many
epochs over the run gets only what remains of its allowance, and the samples it gives up go to the
stage's other parts in proportion to their weights (water-filling): repeated data is worth much less
after about 4 epochs (Muennighoff et al. 2023, arXiv 2305.16264). The plan is a pure function of the
config and the parts' sizes, so a resumed run recomputes the same one.

The sampler's state (stage, counts, each part's cursor) goes into every checkpoint, and every
step is recorded in ``batches.jsonl`` as, per part, the range of part-local positions it read
(the first step of each stage also with the stage's effective weights, and the parts capped):
what the model saw can be replayed exactly.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hare.train.config import StageConfig
from hare.train.pack import PackedTokens, part_dirs

log = logging.getLogger("hare.train")


@dataclass
class Stage:
    name: str
    start: int  # first step
    end: int  # one past the last step
    weights: dict[str, float]  # normalized, effective: what the sampler serves
    asked: dict[str, float] = field(default_factory=dict)  # normalized, as configured (default: weights)
    capped: dict[str, str] = field(default_factory=dict)  # part at train.max_epochs -> why, its share asked -> given
    notes: list[str] = field(default_factory=list)  # the warnings the plan logged for this stage

    def __post_init__(self) -> None:
        if not self.asked:
            self.asked = dict(self.weights)


def part_seed(seed: int, part: str) -> int:
    return seed * 1_000_003 + zlib.crc32(part.encode())


def load_parts(folder: str | Path, seed: int, holdout: int = 0) -> dict[str, PackedTokens]:
    """Every packed part of a tokenize step's folder, each shuffled by its own seed; ``holdout``: the
    windows at each part's end that are never sampled (DDK measures on them)."""
    parts = {name: PackedTokens(path, seed=part_seed(seed, name), holdout=holdout)
             for name, path in part_dirs(folder).items()}
    if not parts:
        raise FileNotFoundError(f"{folder}: no packed data part (<part>/index.json)")
    return parts


def plan_stages(stages: list[StageConfig], parts: dict[str, PackedTokens], tokens_per_step: int,
                max_steps: int, samples_per_step: int | None = None, max_epochs: float | None = None) -> list[Stage]:
    """Stages as step ranges; with none configured, one stage mixing parts by their sequence counts.

    With ``max_epochs`` (and ``samples_per_step``), configured stages are capped in order: no part is
    planned more than ``max_epochs`` x its sequence count of reads over the run (``cap_stage``); the
    warnings are logged and kept in each stage's ``notes``. Pure: the same config and part sizes give
    the same plan."""
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
    if max_epochs is not None:
        if not samples_per_step:
            raise ValueError("plan_stages: max_epochs needs samples_per_step")
        read = {k: 0.0 for k in parts}  # samples planned per part by the stages before
        for i, stage in enumerate(out):
            cap_stage(stage, i, {k: p.n for k, p in parts.items()}, read, samples_per_step, max_epochs)
            for note in stage.notes:
                log.warning("%s", note)
    return out


def water_fill(asked: dict[str, float], samples: float,
               room: dict[str, float]) -> tuple[dict[str, float], list[str], float]:
    """Samples per part: ``samples`` shared by the (normalized) ``asked`` weights, but no part more than
    its ``room``; what a part at its room gives up goes to the parts below theirs in proportion to their
    weights, repeated until none passes its room (a part given more may then reach its own). Returns
    the samples per part, the parts at their room, and the overflow: what no part has room for (then
    every part is at its room, and the overflow is shared by ``asked``)."""
    full: list[str] = []
    while True:
        free = [k for k in asked if k not in full]
        left = samples - sum(room[k] for k in full)
        wsum = sum(asked[k] for k in free)
        over = [k for k in free if left * asked[k] / wsum > room[k] + 1e-9 * max(1.0, room[k])]
        if not over:
            return {k: room[k] if k in full else left * asked[k] / wsum for k in asked}, full, 0.0
        full += over
        if len(full) == len(asked):
            break
    overflow = max(0.0, samples - sum(room.values()))
    return {k: room[k] + overflow * asked[k] for k in asked}, full, overflow


def allowance(max_epochs: float, sequences: int) -> int:
    """The most samples a part of ``sequences`` may serve over the run: whole samples, rounded down."""
    return math.floor(max_epochs * sequences + 1e-9)


def cap_stage(stage: Stage, index: int, sequences: dict[str, int], read: dict[str, float], samples_per_step: int,
              max_epochs: float) -> None:
    """Cap ``stage``'s weights so that no part passes ``max_epochs`` x its sequences over the run, given
    the samples ``read`` planned by the stages before (updated with this stage's). Sets ``weights``,
    ``capped`` and ``notes``; a stage with no part capped keeps its configured weights exactly."""
    samples = (stage.end - stage.start) * samples_per_step
    asked = stage.asked
    room = {k: max(0.0, allowance(max_epochs, sequences[k]) - read[k]) for k in asked}
    give, full, overflow = water_fill(asked, samples, room)
    if not full:
        for k in asked:
            read[k] += asked[k] * samples
        return
    stage.weights = {k: give[k] / samples for k in asked}
    share = {k: f"{asked[k]:.1%} -> {stage.weights[k]:.1%}" for k in asked}
    where = f"train.stages[{index}] ({stage.name})"
    free = [k for k in asked if k not in full]
    rest = ("; the rest to " + ", ".join(f"{k} ({share[k]})" for k in free) if free else
            "; no part has room for the rest")
    for k in full:
        n = sequences[k]
        per = n or float("nan")  # an empty part has no epochs to speak of
        why = (f"its weight would read {(read[k] + asked[k] * samples) / per:.2f} epochs by the stage's end"
               if asked[k] * samples > room[k] else "the samples other parts give up would take it past it")
        before = f", {read[k] / per:.2f} epochs read before this stage" if read[k] else ""
        stage.capped[k] = (f"{n:,} sequences{before}; {why}, over train.max_epochs {max_epochs:g}: share "
                           f"{share[k]} of the stage's {samples:,} samples")
        stage.notes.append(f"{where}: data part {k} capped: {stage.capped[k]}{rest}")
    if overflow:
        stage.notes.append(
            f"{where}: every data part reaches train.max_epochs {max_epochs:g}, the cap cannot hold: {overflow:,.0f} "
            f"of the stage's {samples:,} samples ({overflow / samples:.1%}) are read beyond it, shared by the "
            f"configured weights (more data, a shorter stage or a higher max_epochs avoids it)")
    for k in asked:
        read[k] += give[k]


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
        self.reweighted: dict[str, dict[str, float]] = {}  # stage -> the weights set_weights gave it
        self.planned = {st.name: dict(st.weights) for st in stages}  # stage -> its weights as planned

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

    def sequence_ids(self, plan: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The (part, packed window) each sample of ``plan`` reads."""
        return [(name, self.parts[name].sequence_id(j)) for name, j in plan]

    def windows(self, plan: list[tuple[str, int]]) -> np.ndarray:
        """The token windows (L + 1 tokens each) of ``plan``."""
        L = self.seq_len
        tokens = {name: self.parts[name].tokens() for name in {name for name, _ in plan}}  # one memmap per part
        rows = [np.asarray(tokens[name][i * L: i * L + L + 1], dtype=np.int64) for name, i in self.sequence_ids(plan)]
        return np.stack(rows)

    def set_weights(self, step: int, weights: dict[str, float]) -> Stage:
        """Serve ``weights`` (normalized, over the parts of the stage of ``step``) from ``step`` on, until
        the stage ends or they are set again (DDK); kept in the state."""
        stage = self.stage_at(step)
        stage.weights = dict(weights)
        self.reweighted[stage.name] = dict(weights)
        return stage

    @staticmethod
    def record(step: int, stage: Stage, plan: list[tuple[str, int]]) -> dict:
        """What step ``step`` (1-based) read: per part, the half-open range of part-local positions; the
        first step of a stage also carries its effective ``weights`` and, when parts are capped, ``capped``."""
        ranges: dict[str, list[int]] = {}
        for name, j in plan:
            r = ranges.setdefault(name, [j, j])
            r[1] = j + 1
        rec: dict = {"step": step, "stage": stage.name, "parts": ranges}
        if step - 1 == stage.start:  # a stage's first step: the shares it serves, and why they differ
            rec["weights"] = dict(stage.weights)
            if stage.capped:
                rec["capped"] = dict(stage.capped)
        return rec

    def state_dict(self) -> dict:
        state = {"step": self.step, "cursor": dict(self.cursor), "stage_counts": dict(self.stage_counts),
                 "stage_samples": self.stage_samples}
        if self.reweighted:
            state["reweighted"] = {k: dict(v) for k, v in self.reweighted.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.cursor = {k: state["cursor"].get(k, 0) for k in self.parts}
        self.stage_counts = {k: state["stage_counts"].get(k, 0) for k in self.parts}
        self.stage_samples = state["stage_samples"]
        self.reweighted = {k: dict(v) for k, v in state.get("reweighted", {}).items()}
        for st in self.stages:
            if st.name in self.reweighted:
                st.weights = dict(self.reweighted[st.name])
