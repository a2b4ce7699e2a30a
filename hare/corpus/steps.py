"""The corpus stage's steps: corpus, decontam, cluster and mix.

Each step reads its config and folders, calls the library function that does the work
(``hare.corpus.build``, ``hare.filters.decontam``, ``hare.corpus.cluster``, ``hare.corpus.mix``)
and returns its stats (the step contract: ``hare.core.step``). Each step imports its library (and
numpy) when it runs, not to list the steps; their stats are in ``hare.corpus.stats`` and
``hare.filters.stats``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from hare.core.step import Step, StepContext, file_inputs
from hare.corpus.stats import ClusterStats, CorpusStats, MixStats
from hare.filters.stats import DecontamStats

log = logging.getLogger("hare.corpus")


class CorpusStep(Step):
    """``grader``: the teacher's grading of texts that ``corpus.quality.mode: annotator`` asks
    (``hare.corpus.build.Grader``); the step registry gives the synthetic-data stage's, which this
    stage does not import."""

    name = "corpus"
    help = "read the sources, clean them, keep a quality band, remove exact and near duplicates, hold out the evaluation slice"
    reads = ("sources", "seed", "corpus", "execution")
    stats = CorpusStats

    def __init__(self, grader: Callable | None = None):
        self.grader = grader

    def inputs(self, config) -> dict[str, Any]:
        from hare.corpus.build import source_inputs

        out = source_inputs(config.sources)
        q = config.corpus.quality
        if q.enabled and q.mode == "annotator":  # only then: the fingerprints of other recipes stay as they were
            out.update(file_inputs(quality_rubric=q.rubric_path))
        return out

    def run(self, ctx: StepContext) -> CorpusStats:
        from hare.corpus.build import build_corpus  # numpy: imported when the step runs, not to list the steps

        c = ctx.config
        x = c.execution
        return build_corpus(c.sources, c.corpus, c.seed, ctx.out, resume=ctx.resume, executor=x.executor,
                            workers=x.workers, ray_address=x.ray_address, grader=self.grader)

    def report_data(self, folder: Path, stats: CorpusStats) -> dict[str, Any]:
        from hare.corpus.build import near_duplicate_examples

        return {"near_duplicates": near_duplicate_examples(folder)}


class DecontamStep(Step):
    name = "decontam"
    help = "remove training text that overlaps held-out documents and benchmark items"
    after = ("corpus",)
    reads = ("decontam", "sources", "corpus.clean.min_words", "corpus.shard_docs")
    stats = DecontamStats

    def inputs(self, config) -> dict[str, Any]:
        cfg = config.decontam
        out = file_inputs(benchmarks_dir=cfg.benchmarks_dir)
        out.update(file_inputs(**{f"custom:{cb.name}": cb.path for cb in cfg.custom_benchmarks}))
        return out

    def run(self, ctx: StepContext) -> DecontamStats:
        from hare.filters.decontam import decontaminate

        c = ctx.config
        return decontaminate(ctx.deps["corpus"], ctx.out, c.decontam, [s.name for s in c.sources],
                             min_words_after_cut=c.corpus.clean.min_words, shard_docs=c.corpus.shard_docs)

    def report_data(self, folder: Path, stats: DecontamStats) -> dict[str, Any]:
        from hare.filters.decontam import overlap_examples

        return {"examples": overlap_examples(folder)}


class ClusterStep(Step):
    name = "cluster"
    help = "embed the training documents, cluster them into topics and name each topic"
    after = ("decontam",)
    reads = ("cluster", "seed")
    stats = ClusterStats

    def inputs(self, config) -> dict[str, Any]:
        return file_inputs(model=config.cluster.model_path)

    def run(self, ctx: StepContext) -> ClusterStats:
        from hare.corpus.cluster import cluster  # numpy: imported when the step runs, not to list the steps

        cfg = ctx.config.cluster
        if not cfg.enabled:
            log.info("cluster: disabled (cluster.enabled: false); the mix samples sources only")
            return ClusterStats(enabled=False)
        return cluster(ctx.deps["decontam"] / "train", ctx.out, cfg, ctx.config.seed)

    def report_data(self, folder: Path, stats: ClusterStats) -> dict[str, Any]:
        from hare.corpus.cluster import load_topics

        return {"topics": sorted(load_topics(folder), key=lambda t: -t.size)}


class MixStep(Step):
    name = "mix"
    help = "sample the sources by weight, and their topics by temperature, into the training set"
    after = ("decontam", "cluster", "curate")
    reads = ("mix", "seed", "sources", "corpus.shard_docs")
    stats = MixStats

    def depends_on(self, earlier: list[str]) -> tuple[str, ...]:
        return tuple(s for s in self.after if s != "curate" or "curate" in earlier)

    def run(self, ctx: StepContext) -> MixStats:
        from hare.corpus.mix import build_mix  # numpy: imported when the step runs, not to list the steps

        c = ctx.config
        return build_mix(ctx.out, ctx.deps["decontam"] / "train", c.sources, c.mix, c.seed, c.corpus.shard_docs,
                         cluster_dir=ctx.deps.get("cluster"),
                         synthetic=ctx.deps["curate"] / "train" if "curate" in ctx.deps else None)


CORPUS, DECONTAM, CLUSTER, MIX = CorpusStep(), DecontamStep(), ClusterStep(), MixStep()
