"""What the train step writes that its report reads, without torch: its stats and its logs
(``metrics.jsonl``, ``heldout.jsonl``), read whole lines only (a killed run may leave half a line)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from hare.core.io import RecordError, read_jsonl
from hare.core.step import Stats

HELDOUT = "heldout.jsonl"


class PartReads(BaseModel):
    """How much of a data part the run read: its sequences, the samples drawn from it, and their ratio."""

    sequences: int
    samples_read: int
    epochs: float  # samples_read / sequences, 3 decimals


class TrainStats(Stats):
    step: int
    final_loss: float
    params: int
    tokens: int
    flops_per_token: float
    processes: int
    sequences: int
    epochs: float
    parts: dict[str, PartReads] = {}  # per data part: sequences, samples read, epochs
    capped: list[str] = []  # train.max_epochs: each part it held, per stage, and each stage it could not hold
    distill: dict = {}  # train.distill: teacher, source, alpha, temperature, and DDK's last weights per stage


def complete_lines(path: Path) -> list[dict]:
    """JSON lines of a log that a killed run may have left with a half-written last line."""
    out: list[dict] = []
    try:
        for rec in read_jsonl(path):
            out.append(rec)
    except RecordError:  # the half-written line, and nothing after it
        pass
    return out


def training_logs(folder: Path) -> dict[str, list[dict]]:
    """A train folder's metrics and held-out scores (the report plots them)."""
    path, held = folder / "metrics.jsonl", folder / HELDOUT
    lines = complete_lines(path) if path.exists() else []
    return {"metrics": [m for m in lines if "loss" in m], "ddk": [m for m in lines if "ddk" in m],
            "heldout": complete_lines(held) if held.exists() else []}
