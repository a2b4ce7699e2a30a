"""The evaluation stage's configuration (the recipe key ``eval``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hare.core.config import EXECUTION, Config


class EvalConfig(Config):
    """Held-out perplexity and lm-evaluation-harness tasks run from local files."""

    heldout_perplexity: bool = Field(True, description="Bits per byte and loss on the held-out documents.")
    tasks: list[str] = Field(
        default_factory=lambda: ["hare_heldout"],
        description="lm-eval tasks: hare_heldout (rolling log-likelihood of the held-out documents) and, "
        "when decontam.benchmarks_dir or the local Hugging Face cache has the files, arc_easy, arc_challenge, "
        "hellaswag, mmlu, truthfulqa_mc1, truthfulqa_mc2, winogrande, gsm8k, or the suites leaderboard (the "
        "paper's six, with leaderboard.md) and all.",
    )
    limit: int | None = Field(None, ge=1, description="Evaluate at most this many items per task.")
    num_fewshot: int | None = Field(None, ge=0, description="Override every task's few-shot count.")
    batch_size: int = Field(8, ge=1, description="Evaluation batch size.")
    backend: Literal["hare", "hf", "vllm"] = Field(
        "hare", description="lm-eval model: hare (continuations scored from one shared context, token-budget "
        "batches; a model whose head it does not reproduce is scored by HFLM's path), hf (lm-eval's Hugging Face "
        "model, the same results) or vllm (GPU; bf16 results differ in the last digits). Part of the eval step's "
        "fingerprint: the backends agree to about 1e-4, not bit for bit.")
    max_batch_tokens: int | None = Field(
        None, ge=1, description="hare backend: the most tokens one forward pass holds (default 8192).",
        json_schema_extra=EXECUTION)
    max_heldout_docs: int | None = Field(200, ge=1, description="Held-out documents used for perplexity.")

