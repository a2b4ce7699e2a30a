"""The eval step: held-out perplexity and lm-evaluation-harness tasks, all from local files.

Outputs: heldout.jsonl (the documents scored), tasks/*.yaml (the task definitions used),
lm_eval_results.json (lm-eval's own results), summary.json (one row per task and metric).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hare.corpus.document import read_shards
from hare.evals.benchmarks import BenchmarkMissing
from hare.evals.perplexity import perplexity
from hare.evals.tasks import BENCHMARK_TASKS, heldout_task, write_task
from hare.io import write_json, write_jsonl

log = logging.getLogger("hare.evals")

KNOWN_TASKS = ["hare_heldout", *BENCHMARK_TASKS]


def run_lm_eval(model_dir: Path, task_dir: Path, tasks: list[str], *, limit: int | None, batch_size: int,
                num_fewshot: int | None, max_length: int, device: str = "cpu") -> dict:
    """Run lm-evaluation-harness on a local HF model folder with the task YAMLs in ``task_dir``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_dir), "dtype": "float32", "max_length": max_length,
                    "trust_remote_code": False},
        tasks=tasks, task_manager=tm, limit=limit, batch_size=batch_size, num_fewshot=num_fewshot,
        device=device, log_samples=False, bootstrap_iters=0,
    )
    return json.loads(json.dumps({k: out[k] for k in ("results", "configs", "versions", "n-shot", "n-samples")
                                  if k in out}, default=str))


def summary_rows(results: dict) -> list[dict]:
    rows = []
    for task, metrics in sorted(results.get("results", {}).items()):
        for key, value in metrics.items():
            if key == "alias" or "_stderr" in key or key.startswith("sample_len") or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            stderr = metrics.get(f"{metric}_stderr,{key.split(',')[1]}" if "," in key else "")
            rows.append({"task": task, "metric": metric, "value": value,
                         "stderr": stderr if isinstance(stderr, (int, float)) else None})
    return rows


def run_eval(ctx) -> dict:
    import torch

    from hare.train.pack import load_tokenizer

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
        from transformers import AutoModelForCausalLM

        tok = load_tokenizer(model_dir)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        summary["perplexity"] = perplexity(model, tok, (d["text"] for d in docs), max_len=r.pack.seq_len,
                                           total=len(docs))
        log.info("held-out: loss %.4f, perplexity %.2f, %.4f bits/byte", summary["perplexity"]["loss"],
                 summary["perplexity"]["perplexity"], summary["perplexity"]["bits_per_byte"])
        del model

    task_dir = ctx.out / "tasks"
    tasks = []
    for name in cfg.tasks:
        if name == "hare_heldout":
            if not docs:
                summary["skipped_tasks"][name] = "no held-out documents"
                continue
            write_task(heldout_task(heldout.resolve()), task_dir)
        else:
            if not r.decontam.benchmarks_dir:
                summary["skipped_tasks"][name] = "decontam.benchmarks_dir is not set"
                continue
            try:
                write_task(BENCHMARK_TASKS[name](Path(r.decontam.benchmarks_dir)), task_dir)
            except BenchmarkMissing as e:
                summary["skipped_tasks"][name] = f"missing file {e}"
                log.warning("task %s skipped: missing file %s", name, e)
                continue
        tasks.append(name)
    rows = []
    if tasks:
        results = run_lm_eval(model_dir, task_dir, tasks, limit=cfg.limit, batch_size=cfg.batch_size,
                              num_fewshot=cfg.num_fewshot, max_length=r.pack.seq_len)
        write_json(ctx.out / "lm_eval_results.json", results)
        rows = summary_rows(results)
    summary["tasks"] = rows
    write_json(ctx.out / "summary.json", summary)
    counts = {"heldout_docs": len(docs), "tasks_run": len(tasks), "tasks_skipped": len(summary["skipped_tasks"])}
    if "perplexity" in summary:
        counts["heldout_bits_per_byte"] = round(summary["perplexity"]["bits_per_byte"], 5)
    return counts
