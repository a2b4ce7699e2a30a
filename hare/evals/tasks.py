"""lm-evaluation-harness task definitions that read local files only.

Each task is written as a YAML file with ``dataset_path: json`` and absolute ``data_files``, then
loaded through ``TaskManager(include_path=..., include_defaults=False)``: no task can reach the hub.
Prompts, choices and metrics follow lm-evaluation-harness's own definitions of the same tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from hare.evals.benchmarks import BenchmarkMissing


def heldout_task(data_file: Path) -> dict[str, Any]:
    """Rolling log-likelihood of the run's held-out documents (as lm-eval's wikitext task)."""
    return {
        "task": "hare_heldout",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "output_type": "loglikelihood_rolling",
        "test_split": "test",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
        "metadata": {"version": 1.0},
    }


def _arc_task(subset: str) -> Callable[[Path], dict[str, Any]]:
    def build(bench_dir: Path) -> dict[str, Any]:
        files = {split: bench_dir / "arc" / f"ARC-{subset}-{split}.jsonl" for split in ("train", "validation", "test")}
        if not files["test"].exists():
            raise BenchmarkMissing(str(files["test"]))
        cfg = {
            "task": f"arc_{subset.lower()}",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items() if v.exists()}},
            "output_type": "multiple_choice",
            "test_split": "test",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_target": "{{choices.label.index(answerKey)}}",
            "doc_to_choice": "{{choices.text}}",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        }
        if files["train"].exists():
            cfg["training_split"] = "train"
        if files["validation"].exists():
            cfg["validation_split"] = "validation"
        return cfg

    return build


BENCHMARK_TASKS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "arc_easy": _arc_task("Easy"),
    "arc_challenge": _arc_task("Challenge"),
}


def write_task(cfg: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg['task']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path
