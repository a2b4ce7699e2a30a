"""The one evaluation path, for ``hare eval MODEL`` and for the pipeline's eval step: held-out
perplexity and lm-evaluation-harness tasks on any local causal LM (a hare model or any Hugging Face
folder).

``evaluate`` writes into ``out``: ``tasks/`` and ``data/`` (the lm-eval task definitions and the rows
they read), ``lm_eval_results.json`` (lm-eval's own results), ``leaderboard.md`` (the paper's table
with the published rows beside this model's), ``perplexity.json`` (when documents are given) and
``summary.json`` (``EvalStats``: one row per task and metric, skipped tasks with the reason).

The task ``hare_heldout`` is the held-out perplexity itself, reported beside the lm-eval tasks with
lm-eval's metric names for a rolling log-likelihood task; it is computed once
(``hare.evals.heldout``), however it is asked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from hare.core.io import read_json, write_json, write_text
from hare.core.progress import Progress
from hare.core.step import Stats
from hare.evals.leaderboard import COLUMNS, markdown_table
from hare.evals.heldout import Perplexity, heldout_perplexity
from hare.evals.tasks import HELDOUT, LEADERBOARD, expand, prepare_tasks

log = logging.getLogger("hare.evals")

# lm-eval's default new-token budget for generation (HFLM.max_gen_toks); GSM8K needs a context longer than it
MAX_GEN_TOKS = 256


class TaskRow(BaseModel):
    task: str
    metric: str
    value: float
    stderr: float | None = None


class EvalStats(Stats):
    """What an evaluation measured (``summary.json``)."""

    model: str
    params: int | None = None
    max_length: int
    limit: int | None = None
    heldout_docs: int | None = None  # documents the held-out perplexity scored
    perplexity: Perplexity | None = None
    tasks: list[TaskRow] = []
    skipped_tasks: dict[str, str] = {}
    leaderboard: dict[str, float | None] | None = None
    # task -> the option that would let a skipped task run: "max_length" (a longer context) or
    # "benchmarks" (where its files are); the caller names it in its own words (a flag, a recipe key)
    skipped_for: dict[str, str] = {}
    backend: str | None = None  # which lm-eval model scored the tasks (hare's path, or HFLM's for a head it lacks)

    def counts(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {"heldout_docs": self.heldout_docs or 0,
                                       "tasks_run": len({r.task for r in self.tasks}),
                                       "tasks_skipped": len(self.skipped_tasks)}
        if self.perplexity is not None:
            out["heldout_bits_per_byte"] = round(self.perplexity.bits_per_byte, 5)
        return out


def drop_short_context(ready: list[str], skipped: dict[str, str], ctx_len: int) -> list[str]:
    """Move GSM8K to ``skipped`` when the context cannot hold its generation (lm-eval would assert);
    returns the tasks moved."""
    if "gsm8k" in ready and ctx_len <= MAX_GEN_TOKS:
        ready.remove("gsm8k")
        skipped["gsm8k"] = (f"the model's context ({ctx_len} tokens) is not longer than the {MAX_GEN_TOKS} tokens "
                            "GSM8K generates; give a longer context")
        return ["gsm8k"]
    return []


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()


# Weight files a Hugging Face model folder may hold (one file or shards with an index).
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")


def model_dir_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be evaluated as a model folder, or None: no folder, no (readable)
    config.json, or no weights."""
    path = Path(path)
    if not path.is_dir():
        return f"{path}: not a model folder"
    if not is_model_dir(path):
        return f"{path}: not a model folder (no config.json)"
    try:
        cfg = read_json(path / "config.json")
    except (ValueError, UnicodeDecodeError) as e:
        return f"{path / 'config.json'}: not a JSON file ({e})"
    if not isinstance(cfg, dict):
        return f"{path / 'config.json'}: not a model configuration (a JSON {type(cfg).__name__})"
    if not any(any(path.glob(pat)) for pat in WEIGHT_PATTERNS):
        return (f"{path}: config.json but no weights ({', '.join(WEIGHT_PATTERNS[::2])}); "
                "is the model fully downloaded or exported?")
    return None


def model_max_length(model_dir: Path) -> int:
    """The context lm-eval's HF model uses when not told: the first length field of config.json."""
    cfg = read_json(model_dir / "config.json")
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return 2048


class _RequestBar(Progress):
    """lm-eval's bar over a request type ("Running loglikelihood requests"), drawn as hare's."""

    def __init__(self, *args, desc: str | None = None, **kwargs):
        what = (desc or "requests").removeprefix("Running ")
        super().__init__(*args, desc=f"lm-eval: {what}", unit="request", **kwargs)


@contextlib.contextmanager
def _request_bars():
    """lm-eval draws the progress of its requests with ``tqdm`` in its Hugging Face model; for the run
    that name is hare's ``Progress``, so those bars reach the terminal with rate and ETA while the rest
    of lm-eval's output goes to the step's log."""
    import lm_eval.models.huggingface as hf

    old = getattr(hf, "tqdm", None)
    if old is None:  # another lm-eval layout: its bars stay in the log
        yield
        return
    hf.tqdm = _RequestBar
    try:
        yield
    finally:
        hf.tqdm = old


def run_lm_eval(model_dir: Path, task_dir: Path, tasks: list[str], *, limit: int | None, batch_size: int | str,
                num_fewshot: int | None = None, max_length: int | None = None, device: str = "cpu",
                apply_chat_template: bool = False, backend: str = "hare", max_batch_tokens: int | None = None,
                log_samples: bool = False) -> dict:
    """Run lm-evaluation-harness on a local HF model folder with the task YAMLs in ``task_dir``, with
    the model of ``backend`` (``hare.evals.backend``: hare's, lm-eval's ``hf`` or ``vllm``).

    ``apply_chat_template`` renders every prompt with the model's chat template (lm-eval's option of
    that name; its few-shot examples become earlier turns, ``fewshot_as_multiturn``), the way a chat
    model is asked.

    Returns lm-eval's results dict (what ``lm_eval --output_path`` saves), made JSON-safe; with
    ``log_samples``, its per-request ``samples`` too.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    from hare.evals.backend import lm_eval_model

    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    model, model_args, batch_size = lm_eval_model(backend, model_dir, batch_size=batch_size, device=device,
                                                  max_length=max_length, max_batch_tokens=max_batch_tokens)
    with _request_bars():
        out = lm_eval.simple_evaluate(
            model=model, model_args=model_args, tasks=tasks, task_manager=tm, limit=limit, batch_size=batch_size,
            num_fewshot=num_fewshot, device=device, log_samples=log_samples,
            bootstrap_iters=1000,  # every metric here is a mean, whose stderr is closed-form; no bootstrap runs
            apply_chat_template=apply_chat_template, fewshot_as_multiturn=apply_chat_template,
        )
    if not log_samples:
        out.pop("samples", None)
    out["hare_backend"] = model.describe() if hasattr(model, "describe") else backend
    return json.loads(json.dumps(out, default=str))


def summary_rows(results: dict) -> list[TaskRow]:
    """One row per task (or group) and metric; MMLU's 57 subjects stay in lm_eval_results.json."""
    rows = []
    for task, metrics in sorted(results.get("results", {}).items()):
        if task.startswith("mmlu_"):
            continue
        for key, value in metrics.items():
            if "_stderr" in key or key.startswith("sample_len") or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append(TaskRow(task=task, metric=metric if filt in ("", "none") else f"{metric} ({filt})",
                                value=value, stderr=stderr if isinstance(stderr, (int, float)) else None))
    mmlu = mmlu_weighted(results)
    if mmlu is not None:
        rows.append(TaskRow(task="mmlu", metric="acc (subjects weighted by size, lm-eval's mmlu group)", value=mmlu))
    return rows


def heldout_rows(p: Perplexity) -> list[TaskRow]:
    """The held-out perplexity as rows of the task ``hare_heldout``, under lm-eval's metric names."""
    return [TaskRow(task=HELDOUT, metric=m, value=getattr(p, m))
            for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")]


def mmlu_weighted(results: dict) -> float | None:
    """MMLU accuracy over all questions (lm-eval's own group aggregation), beside the leaderboard's subject mean."""
    res, n = results.get("results", {}), results.get("n-samples", {})
    num = den = 0.0
    for task, m in res.items():
        if task.startswith("mmlu_") and isinstance(m.get("acc,none"), (int, float)) and task in n:
            k = n[task]["effective"]
            num += m["acc,none"] * k
            den += k
    return num / den if den else None


def table_notes(results: dict, limit: int | None, skipped: dict[str, str]) -> list[str]:
    """What a reader of the table must know: limits, tasks that did not run, data differences."""
    notes = []
    if limit:
        notes.append(f"--limit {limit}: at most {limit} items per task (per MMLU subject): a quick look, "
                     "not comparable with the published numbers.")
    for name, why in skipped.items():
        notes.append(f"{name} did not run: {why}.")
    for _, cfg in sorted(results.get("configs", {}).items()):
        for note in cfg.get("metadata", {}).get("hare_notes", []):
            if note + "." not in notes:
                notes.append(note + ".")
    if "mmlu" in results.get("results", {}):
        notes.append("MMLU is the mean of the subject accuracies, as the Open LLM Leaderboard v1 computed it.")
    return notes


@dataclass
class EvalOptions:
    """How ``evaluate`` runs (every field has the default of ``hare eval MODEL``).

    ``benchmarks``: the folder of benchmark files (None: the local Hugging Face cache only);
    ``limit``: items per task; ``max_length``: the context of every task and of the perplexity
    windows (default: the model's, at most 2048 tokens for perplexity); ``heldout``: documents for
    held-out perplexity (``heldout_limit`` of them, their text in ``text_field``);
    ``apply_chat_template``: render prompts with the model's chat template; ``backend`` and
    ``max_batch_tokens``: the lm-eval model (``hare.evals.backend``)."""

    benchmarks: str | Path | None = None
    limit: int | None = None
    batch_size: int | str = 8
    device: str = "cpu"
    max_length: int | None = None
    num_fewshot: int | None = None
    heldout: list[str | Path] = field(default_factory=list)
    heldout_limit: int | None = None
    text_field: str = "text"
    apply_chat_template: bool = False
    backend: str = "hare"
    max_batch_tokens: int | None = None


def evaluate(model_dir: str | Path, out: str | Path, tasks: list[str], options: EvalOptions | None = None,
             name: str | None = None) -> EvalStats:
    """Evaluate a local model on ``tasks`` (names or suites; ``hare_heldout`` included) and, with
    ``options.heldout`` documents, held-out perplexity; writes the files of the module docstring.
    ``name`` is the model's name in the tables. A task that cannot run is skipped with its reason
    (``EvalStats.skipped_tasks``) and the option that would let it run (``skipped_for``)."""
    from hare.evals.backend import check_backend

    o = options or EvalOptions()
    model_dir, out = Path(model_dir), Path(out)
    problem = model_dir_problem(model_dir)
    if problem:
        raise FileNotFoundError(problem)
    check_backend(o.backend)
    name = name or model_dir.name
    for old in ("tasks", "data"):  # a new evaluation never mixes with the files of an earlier one
        shutil.rmtree(out / old, ignore_errors=True)
    for old in ("lm_eval_results.json", "leaderboard.md", "perplexity.json", "summary.json"):
        (out / old).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    ctx_len = o.max_length or model_max_length(model_dir)
    names = expand(tasks)
    from hare.model.model import count_params  # torch: imported when a model is evaluated

    stats = EvalStats(model=str(model_dir.resolve()), params=count_params(model_dir), max_length=ctx_len, limit=o.limit)

    if o.heldout:
        stats.perplexity = heldout_perplexity(model_dir, o.heldout, device=o.device,
                                              max_len=o.max_length or min(ctx_len, 2048), text_field=o.text_field,
                                              limit=o.heldout_limit)
        stats.heldout_docs = stats.perplexity.docs
        write_json(out / "perplexity.json", stats.perplexity.model_dump(mode="json"))

    t0 = time.perf_counter()
    ready, skipped = prepare_tasks([n for n in names if n != HELDOUT], o.benchmarks, out)
    stats.skipped_for = {t: "benchmarks" for t in skipped}
    stats.skipped_for.update({t: "max_length" for t in drop_short_context(ready, skipped, ctx_len)})
    if HELDOUT in names and stats.perplexity is None:
        skipped[HELDOUT] = "no held-out documents"
    stats.skipped_tasks = skipped
    for task, why in skipped.items():
        log.warning("task %s skipped: %s", task, why)
    if skipped and ready:
        log.warning("tasks that can still run: %s", ", ".join(ready))
    log.info("prepared %d tasks in %.1fs: %s", len(ready), time.perf_counter() - t0, ", ".join(ready) or "none")

    results: dict = {}
    if ready:
        log.info("running lm-evaluation-harness on %d tasks (its other output goes to the log)", len(ready))
        results = run_lm_eval(model_dir, out / "tasks", ready, limit=o.limit, batch_size=o.batch_size,
                              num_fewshot=o.num_fewshot, max_length=o.max_length, device=o.device,
                              apply_chat_template=o.apply_chat_template, backend=o.backend,
                              max_batch_tokens=o.max_batch_tokens)
        write_json(out / "lm_eval_results.json", results)
        stats.backend = results.get("hare_backend")
        log.info("log-likelihoods scored by %s", stats.backend)
    rows = heldout_rows(stats.perplexity) if HELDOUT in names and stats.perplexity is not None else []
    stats.tasks = rows + summary_rows(results)
    if any(t in ready for t in LEADERBOARD):
        notes = table_notes(results, o.limit, skipped)
        if o.num_fewshot is not None:
            notes.append(f"num_fewshot {o.num_fewshot} replaces every task's shot count.")
        if o.apply_chat_template:
            notes.append("Prompts were rendered with the model's chat template (few-shot examples as earlier turns).")
        if stats.backend and "HFLM" in stats.backend:
            notes.append(f"Scored by {stats.backend}.")
        write_text(out / "leaderboard.md", markdown_table(name, stats.params, results, notes))
        stats.leaderboard = {col: results.get("results", {}).get(t, {}).get(m) for col, (t, m) in COLUMNS.items()}
    write_json(out / "summary.json", stats.dump())
    return stats
