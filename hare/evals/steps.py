"""The evaluation stage's step, eval: ``hare.evals.evaluate`` on the run's model, its held-out
documents and the benchmarks.

Outputs: heldout.jsonl (the held-out documents scored) and what ``evaluate`` writes: tasks/*.yaml and
data/ (the task definitions used and the rows they read), lm_eval_results.json, leaderboard.md (when
a leaderboard task ran: the paper's table with its published rows), summary.json. ``eval.tasks`` may
name tasks or suites (``leaderboard``, ``all``); lm-eval runs with the training context
(``pack.seq_len``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hare.core.documents import read_shards
from hare.core.io import write_jsonl
from hare.core.step import Step, StepContext, file_inputs
from hare.evals.evaluate import EvalOptions, EvalStats, evaluate
from hare.evals.tasks import HELDOUT, SUITES, TASKS, expand

log = logging.getLogger("hare.evals")

KNOWN_TASKS = [HELDOUT, *TASKS, *SUITES]
# The recipe key of each option a skipped task asks for (``EvalStats.skipped_for``).
RECIPE_KEYS = {"max_length": "pack.seq_len", "benchmarks": "decontam.benchmarks_dir"}


class EvalStep(Step):
    name = "eval"
    help = "held-out perplexity and lm-evaluation-harness tasks"
    after = ("corpus", "train")
    reads = ("eval", "name", "pack.seq_len", "decontam.benchmarks_dir")
    stats = EvalStats

    def inputs(self, config) -> dict[str, Any]:
        return file_inputs(benchmarks_dir=config.decontam.benchmarks_dir)

    def run(self, ctx: StepContext) -> EvalStats:
        c = ctx.config
        cfg = c.eval
        unknown = [t for t in cfg.tasks if t not in KNOWN_TASKS]
        if unknown:
            raise ValueError(f"eval.tasks: unknown {unknown}; known tasks: {', '.join(KNOWN_TASKS)}")
        docs = []
        for d in read_shards(ctx.deps["corpus"] / "heldout"):
            docs.append({"id": d.id, "source": d.source, "text": d.text})
            if cfg.max_heldout_docs and len(docs) >= cfg.max_heldout_docs:
                break
        heldout = ctx.out / "heldout.jsonl"
        write_jsonl(heldout, docs)
        scored = docs and (cfg.heldout_perplexity or HELDOUT in expand(cfg.tasks))
        bench = c.decontam.benchmarks_dir  # None: the registry looks in the local Hugging Face cache only
        stats = evaluate(ctx.deps["train"] / "model", ctx.out, cfg.tasks, EvalOptions(
            benchmarks=bench, limit=cfg.limit, batch_size=cfg.batch_size, max_length=c.pack.seq_len,
            num_fewshot=cfg.num_fewshot, heldout=[heldout] if scored else [], backend=cfg.backend,
            max_batch_tokens=cfg.max_batch_tokens), name=c.name)
        for task, option in stats.skipped_for.items():
            key = RECIPE_KEYS[option] + (" (it is not set)" if option == "benchmarks" and not bench else "")
            log.warning("eval: %s can run with another %s", task, key)
        return stats

    def report_data(self, folder: Path, stats: EvalStats) -> dict[str, Any]:
        board = folder / "leaderboard.md"
        return {"leaderboard": board.read_text(encoding="utf-8") if board.exists() else ""}


EVAL = EvalStep()
