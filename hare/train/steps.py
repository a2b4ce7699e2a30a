"""The training stage's steps: tokenize, teacher and train.

Each step reads its config and folders, calls the library function that does the work
(``hare.train.pack.tokenize_mix``, ``hare.train.teacher.teacher_pass``, ``hare.train.loop.train_model``)
and returns its stats. The work (numpy, torch) is imported when a step runs, not to list the steps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hare.core.step import Step, StepContext, file_inputs
from hare.train.logs import TrainStats, training_logs
from hare.train.stats import TeacherStats, TokenizeStats

log = logging.getLogger("hare.train.teacher")


class TokenizeStep(Step):
    name = "tokenize"
    help = "train or load the tokenizer and pack the mix into token shards"
    after = ("mix",)
    reads = ("tokenizer", "pack", "execution")
    stats = TokenizeStats

    def inputs(self, config) -> dict[str, Any]:
        return file_inputs(tokenizer=config.tokenizer.path)

    def run(self, ctx: StepContext) -> TokenizeStats:
        from hare.train.pack import tokenize_mix

        c = ctx.config
        return tokenize_mix(ctx.deps["mix"] / "train", ctx.out, c.tokenizer, c.pack, workers=c.execution.workers)


class TeacherStep(Step):
    name = "teacher"
    help = "run the distillation teacher once over the packed tokens and store its top-k log-probabilities"
    after = ("tokenize",)
    reads = ("train.distill",)
    stats = TeacherStats

    def config(self, recipe: Any, without: tuple[str, ...] = ("execution",)) -> dict[str, Any]:
        """Only what the files depend on: changing alpha or DDK does not run the teacher again."""
        d = recipe.train.distill
        if d is None or d.source != "cached":
            return {"train.distill": None}
        return {"train.distill": {k: getattr(d, k) for k in ("local", "packaged", "top_k", "temperature")}}

    def inputs(self, config) -> dict[str, Any]:
        d = config.train.distill
        return file_inputs(teacher=d.local) if d is not None else {}

    def run(self, ctx: StepContext) -> TeacherStats:
        d = ctx.config.train.distill
        if d is None or d.source != "cached":
            log.info("teacher: nothing to compute (%s)", "train.distill is off" if d is None else
                     "train.distill.source is online: the teacher runs beside training")
            return TeacherStats(enabled=False)
        from hare.train.teacher import teacher_pass

        return teacher_pass(ctx.deps["tokenize"], ctx.out, d)


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


TOKENIZE, TEACHER, TRAIN = TokenizeStep(), TeacherStep(), TrainStep()
