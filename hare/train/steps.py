"""The training stage's steps: tokenize and train.

Each step reads its config and folders, calls the library function that does the work
(``hare.train.pack.tokenize_mix``, ``hare.train.loop.train_model``) and returns its stats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hare.core.step import Step, StepContext, file_inputs
from hare.train.logs import TrainStats, training_logs
from hare.train.pack import TokenizeStats, tokenize_mix


class TokenizeStep(Step):
    name = "tokenize"
    help = "train or load the tokenizer and pack the mix into token shards"
    after = ("mix",)
    reads = ("tokenizer", "pack", "execution")
    stats = TokenizeStats

    def inputs(self, config) -> dict[str, Any]:
        return file_inputs(tokenizer=config.tokenizer.path)

    def run(self, ctx: StepContext) -> TokenizeStats:
        c = ctx.config
        return tokenize_mix(ctx.deps["mix"] / "train", ctx.out, c.tokenizer, c.pack, workers=c.execution.workers)


class TrainStep(Step):
    name = "train"
    help = "train the model (resumes from the last checkpoint)"
    after = ("tokenize", "corpus", "teacher")
    reads = ("model", "train", "seed")
    stats = TrainStats

    def inputs(self, config) -> dict[str, Any]:
        return file_inputs(eval_docs=config.train.eval_docs, eval_tasks=config.train.eval_tasks)

    def run(self, ctx: StepContext) -> TrainStats:
        c = ctx.config
        from hare.train.loop import train_model  # torch: imported when a model is trained, not to list steps

        return train_model(ctx.deps["tokenize"], ctx.deps["corpus"], c.model, c.train, c.seed, ctx.out,
                           resume=ctx.resume, teacher_out=ctx.deps["teacher"])

    def report_data(self, folder: Path, stats: TrainStats) -> dict:
        return training_logs(folder)


TOKENIZE, TRAIN = TokenizeStep(), TrainStep()
