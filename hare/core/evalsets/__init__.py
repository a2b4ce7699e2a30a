"""The evaluation sets: the Open LLM Leaderboard benchmarks (and benchmarks of your own) read from local
files in their usual layouts, for decontamination, evaluation and the leakage audit. (The
repository's ``benchmarks/`` folder is something else: performance scripts.)

One module per benchmark reads its layouts into ``Item`` objects (question, choices, answer, split)
and turns an item into the row lm-evaluation-harness's own task reads (``Benchmark.task_row``).
Files are looked up under a benchmark folder, in either the original release layout or the Hugging
Face row layout (JSONL, JSON, Parquet or CSV), and then in the local Hugging Face hub cache
(``$HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``) where a dataset downloaded earlier keeps
its Parquet files:

  benchmark    under <folder>/                                   hub cache (datasets--org--name)
  arc_easy     arc/ARC-Easy-{train,validation,test}.jsonl         allenai/ai2_arc ARC-Easy/*.parquet
  arc_challenge arc/ARC-Challenge-*.jsonl                         allenai/ai2_arc ARC-Challenge/
  hellaswag    hellaswag/*.{jsonl,parquet} (ctx or ctx_a/ctx_b)   Rowan/hellaswag
  mmlu         mmlu/{dev,val,test}/<subject>_<split>.csv           cais/mmlu <subject>/ or all/
  gsm8k        gsm8k/{train,test}.jsonl                            openai/gsm8k main/
  truthfulqa   truthfulqa/TruthfulQA.csv (or HF generation rows)  truthfulqa/truthful_qa generation/
  winogrande   winogrande/*.jsonl (sentence, option1/2, answer)   allenai/winogrande winogrande_xl/

The split of a file comes from its name (train, val/validation/dev, test). A user adds a benchmark
of their own with ``CustomBenchmark`` (a file and its field names) in the recipe.
"""

from __future__ import annotations

from pathlib import Path

from hare.core.evalsets import arc, gsm8k, hellaswag, mmlu, truthfulqa, winogrande
from hare.core.evalsets.base import Benchmark, BenchmarkMissing, Item
from hare.core.evalsets.custom import CustomBenchmark, load_custom

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    arc.EASY, arc.CHALLENGE, hellaswag.HELLASWAG, mmlu.MMLU, gsm8k.GSM8K, truthfulqa.TRUTHFULQA,
    winogrande.WINOGRANDE)}

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkMissing", "CustomBenchmark", "Item", "load_benchmark", "load_custom"]


def load_benchmark(name: str, folder: str | Path | None) -> list[Item]:
    """Every item of every split of ``name``; raises BenchmarkMissing naming the expected path."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name].load(folder)
