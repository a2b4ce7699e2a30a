"""The eval step: held-out perplexity and lm-evaluation-harness tasks, all from local files.

Outputs: heldout.jsonl (the documents scored), tasks/*.yaml and data/ (the task definitions used
and the rows they read), lm_eval_results.json (lm-eval's own results), leaderboard.md (when a
leaderboard task ran: the paper's table with its published rows), summary.json (one row per task
and metric). ``eval.tasks`` may name tasks or suites (``leaderboard``, ``all``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hare.corpus.document import read_shards
from hare.evals.evaluate import (count_params, drop_short_context, heldout_perplexity, run_lm_eval, summary_rows,
                                 table_notes)
from hare.evals.leaderboard import markdown_table
from hare.evals.tasks import LEADERBOARD, SUITES, TASKS, expand, heldout_task, prepare_tasks, write_task
from hare.io import write_json, write_jsonl

log = logging.getLogger("hare.evals")

KNOWN_TASKS = ["hare_heldout", *TASKS, *SUITES]


def run_eval(ctx) -> dict:
    r = ctx.recipe
    cfg = r.eval
    model_dir = ctx.deps["train"] / "model"
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
    summary: dict = {"model": str(model_dir), "heldout_docs": len(docs), "skipped_tasks": {}}

    if cfg.heldout_perplexity and docs:
        summary["perplexity"] = heldout_perplexity(model_dir, [heldout], max_len=r.pack.seq_len)

    names = expand(cfg.tasks)
    tasks = []
    if "hare_heldout" in names:
        if docs:
            write_task(heldout_task(heldout.resolve()), ctx.out / "tasks")
            tasks.append("hare_heldout")
        else:
            summary["skipped_tasks"]["hare_heldout"] = "no held-out documents"
    bench = r.decontam.benchmarks_dir  # None: the registry looks in the local Hugging Face cache only
    ready, skipped = prepare_tasks([n for n in names if n != "hare_heldout"], bench, ctx.out)
    drop_short_context(ready, skipped, r.pack.seq_len, "pack.seq_len")  # lm-eval runs with the training context
    for name, why in skipped.items():
        if bench is None:
            why += " (decontam.benchmarks_dir is not set)"
        summary["skipped_tasks"][name] = why
        log.warning("task %s skipped: %s", name, why)
    tasks += ready
    rows = []
    if tasks:
        results = run_lm_eval(model_dir, ctx.out / "tasks", tasks, limit=cfg.limit, batch_size=cfg.batch_size,
                              num_fewshot=cfg.num_fewshot, max_length=r.pack.seq_len)
        write_json(ctx.out / "lm_eval_results.json", results)
        rows = summary_rows(results)
        if any(t in ready for t in LEADERBOARD):
            notes = table_notes(results, cfg.limit, summary["skipped_tasks"])
            if cfg.num_fewshot is not None:
                notes.append(f"eval.num_fewshot {cfg.num_fewshot} replaces every task's shot count.")
            (ctx.out / "leaderboard.md").write_text(
                markdown_table(r.name, count_params(model_dir), results, notes), encoding="utf-8")
    summary["tasks"] = rows
    write_json(ctx.out / "summary.json", summary)
    counts = {"heldout_docs": len(docs), "tasks_run": len(tasks), "tasks_skipped": len(summary["skipped_tasks"])}
    if "perplexity" in summary:
        counts["heldout_bits_per_byte"] = round(summary["perplexity"]["bits_per_byte"], 5)
    return counts
