"""The synthetic-data stage's steps: d2, d3 and curate.

Each step reads its config and folders, calls the library function that does the work
(``hare.synth.d2``, ``hare.synth.d3``, ``hare.synth.curate``) with the recipe's teacher
(``hare.synth.common.Teacher``) and returns its stats.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hare.core.io import expand_paths
from hare.core.step import Step, StepContext, file_inputs
from hare.synth import d2, d3
from hare.synth.common import Teacher, synth_inputs
from hare.synth.stats import PARTS, CurateStats
from hare.synth.prompts import Templates

log = logging.getLogger("hare.synth")


def _teacher(ctx: StepContext) -> Teacher:
    """The recipe's teacher, its request caches in the run folder (or ``synth.cache_dir``)."""
    return Teacher.for_run(ctx.config.synth, ctx.config.seed, ctx.run_dir, ctx.config.execution)


class D2Step(Step):
    name = "d2"
    help = "generate topic-seeded synthetic text (D2) with the teacher"
    after = ("decontam", "cluster")
    reads = ("synth", "seed", "corpus.shard_docs", "execution")
    stats = d2.D2Stats

    def inputs(self, config) -> dict[str, Any]:
        return synth_inputs(config)

    def run(self, ctx: StepContext) -> d2.D2Stats:
        syn, seed = ctx.config.synth, ctx.config.seed
        if not syn.enabled:
            log.info("d2: synthetic data is off (synth.enabled: false)")
            return d2.D2Stats(enabled=False)
        return d2.generate_d2(_teacher(ctx), syn.d2, Templates(syn.templates_dir),
                              ctx.deps["cluster"], ctx.deps["decontam"], seed, ctx.out, ctx.config.corpus.shard_docs)

    def report_data(self, folder: Path, stats: d2.D2Stats) -> dict[str, Any]:
        return {"examples": d2.examples(folder)}


class D3Step(Step):
    name = "d3"
    help = "write NLP tasks (QA, multiple choice, cloze, summaries) with the teacher and convert labelled datasets (D3)"
    after = ("decontam", "d2")
    reads = ("synth", "seed", "corpus.shard_docs", "execution")
    stats = d3.D3Stats

    def inputs(self, config) -> dict[str, Any]:
        out = synth_inputs(config)
        if config.synth.enabled:
            for ds in config.synth.d3.datasets:
                out.update(file_inputs(**{f"dataset:{ds.name}:{i}": p for i, p in enumerate(expand_paths(ds.path))}))
        return out

    def run(self, ctx: StepContext) -> d3.D3Stats:
        syn, seed = ctx.config.synth, ctx.config.seed
        if not syn.enabled:
            log.info("d3: synthetic data is off (synth.enabled: false)")
            return d3.D3Stats(enabled=False)
        return d3.generate_d3(_teacher(ctx), syn.d3, Templates(syn.templates_dir),
                              ctx.deps["d2"], ctx.deps["decontam"], seed, ctx.out, ctx.config.corpus.shard_docs)

    def report_data(self, folder: Path, stats: d3.D3Stats) -> dict[str, Any]:
        return {"examples": d3.examples(folder)}


class CurateStep(Step):
    name = "curate"
    help = "clean, quality-band, deduplicate (against D1 too) and decontaminate the synthetic parts D2 and D3"
    after = ("corpus", "decontam", "d2", "d3")
    reads = ("synth", "corpus", "decontam", "seed")
    stats = CurateStats

    def run(self, ctx: StepContext) -> CurateStats:
        c = ctx.config
        if not c.synth.enabled:
            return CurateStats(enabled=False)
        from hare.synth.curate import curate

        return curate({p: ctx.deps[p] for p in PARTS}, ctx.deps["corpus"], ctx.deps["decontam"], c.corpus,
                      c.decontam, c.synth, ctx.out)


D2, D3, CURATE = D2Step(), D3Step(), CurateStep()
