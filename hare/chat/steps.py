"""The chat stage's step: sft (off unless ``sft.enabled``).

The step reads its config and folders, calls ``hare.chat.sft.sft`` and returns its stats.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hare.chat.sft import SftStats, sft, sft_metrics
from hare.core.io import expand_paths, fingerprint_path
from hare.core.step import Step, StepContext

log = logging.getLogger("hare.chat")


class SftStep(Step):
    name = "sft"
    help = "fine-tune the trained model on chat data (sft.enabled; TRL's SFTTrainer, the HARE chat template)"
    after = ("train",)
    reads = ("sft", "seed")
    stats = SftStats

    def inputs(self, config) -> dict[str, Any]:
        if not config.sft.enabled:
            return {}
        return {"data": [fingerprint_path(f) for p in config.sft.data for f in expand_paths(p)]}

    def run(self, ctx: StepContext) -> SftStats:
        c = ctx.config
        if not c.sft.enabled:
            log.info("sft: disabled (sft.enabled: false)")
            return SftStats(enabled=False)
        res = sft(ctx.deps["train"] / "model", c.sft.data, c.sft, ctx.out, c.seed, resume=ctx.resume)
        res.pop("model")
        res.pop("interrupted")
        return SftStats(enabled=True, **res)

    def report_data(self, folder: Path, stats: SftStats) -> dict:
        return {"metrics": sft_metrics(folder)}


SFT = SftStep()
