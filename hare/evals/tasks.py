"""lm-evaluation-harness task definitions that read local files only.

For every task, hare turns the benchmark registry's items (``hare.core.evalsets``: a local folder
or the local Hugging Face cache, never the hub) into the Hugging Face rows that lm-eval's built-in
task expects (each benchmark module's ``task_row``), writes them as ``data/<benchmark>/<split>.jsonl``
and writes a task YAML with ``dataset_path: json`` and absolute ``data_files``.
``TaskManager(include_path=..., include_defaults=False)`` then loads only these files. Prompts,
few-shot settings and metrics are those of lm-eval's own YAMLs (``lm_eval/tasks/<name>/``, named
beside each definition); ``tests/evals/test_tasks.py`` renders items with both and compares. Shot
counts are the Open LLM Leaderboard v1's (ARC-Challenge 25, HellaSwag 10, MMLU 5, TruthfulQA 0,
Winogrande 5, GSM8K 5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hare.core.evalsets import BENCHMARKS, BenchmarkMissing, Item, load_benchmark
from hare.core.evalsets import hellaswag, truthfulqa
from hare.core.io import write_jsonl, write_text

log = logging.getLogger("hare.evals.tasks")

HELDOUT = "hare_heldout"  # held-out perplexity, reported as a task (hare.evals.evaluate)
LEADERBOARD = ["mmlu", "arc_challenge", "truthfulqa_mc2", "winogrande", "hellaswag", "gsm8k"]
SUITES = {"leaderboard": LEADERBOARD, "all": [*LEADERBOARD, "arc_easy", "truthfulqa_mc1"]}
# Where hare's data differs from what lm-eval's built-in task reads, the task's metadata says so
# (``hare_notes``); lm-eval copies it into its results, and the table prints it.
TRUTHFULQA_NOTE = truthfulqa.NOTE
HELLASWAG_NOTE = hellaswag.JOINED_CTX_NOTE


class Function(str):
    """A ``!function hooks.<name>`` entry of a task YAML (the hooks live in hooks.py)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Function, lambda d, v: d.represent_scalar("!function", f"hooks.{v}"))

_ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
_ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}

# lm_eval/tasks/arc/arc_easy.yaml (arc_challenge.yaml includes it)
_ARC = {
    "output_type": "multiple_choice",
    "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_target": "{{choices.label.index(answerKey)}}",
    "doc_to_choice": "{{choices.text}}",
    "metric_list": [_ACC, _ACC_NORM],
    "metadata": {"version": 1.0},
}
# lm_eval/tasks/hellaswag/hellaswag.yaml
_HELLASWAG = {
    "output_type": "multiple_choice",
    "process_docs": Function("hellaswag_process_docs"),
    "doc_to_text": "{{query}}",
    "doc_to_target": "{{label}}",
    "doc_to_choice": "choices",
    "metric_list": [_ACC, _ACC_NORM],
    "metadata": {"version": 1.0},
}
# lm_eval/tasks/truthfulqa/truthfulqa_mc1.yaml: six fixed QA pairs, then the question
_TQA_PROMPT = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)
_TRUTHFULQA_MC1 = {
    "output_type": "multiple_choice",
    "doc_to_text": _TQA_PROMPT + "\n\nQ: {{question}}\nA:",
    "doc_to_target": 0,
    "doc_to_choice": "{{mc1_targets.choices}}",
    "metric_list": [_ACC],
    "metadata": {"version": 2.0, "hare_notes": [TRUTHFULQA_NOTE]},
}
# lm_eval/tasks/truthfulqa/truthfulqa_mc2.yaml
_TRUTHFULQA_MC2 = {
    **_TRUTHFULQA_MC1,
    "doc_to_choice": "{{mc2_targets.choices}}",
    "process_results": Function("truthfulqa_process_results_mc2"),
    "metadata": {"version": 3.0, "hare_notes": [TRUTHFULQA_NOTE]},
}
# lm_eval/tasks/winogrande/default.yaml (partial evaluation: one context per option)
_WINOGRANDE = {
    "output_type": "multiple_choice",
    "doc_to_text": Function("winogrande_doc_to_text"),
    "doc_to_target": Function("winogrande_doc_to_target"),
    "doc_to_choice": Function("winogrande_doc_to_choice"),
    "metric_list": [_ACC],
    "metadata": {"version": 1.0},
}
# lm_eval/tasks/gsm8k/gsm8k.yaml: greedy generation; "strict-match" takes the number after "####"
# (the standard GSM8K answer extraction, the leaderboard's score), "flexible-extract" the last number
_GSM8K = {
    "output_type": "generate_until",
    "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_target": "{{answer}}",
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True,
                     "ignore_punctuation": False, "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
    "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False, "temperature": 0.0},
    "repeats": 1,
    "filter_list": [
        {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                                            {"function": "take_first"}]},
        {"name": "flexible-extract", "filter": [{"function": "regex", "group_select": -1,
                                                 "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                                                {"function": "take_first"}]},
    ],
    "metadata": {"version": 3.0},
}
# lm_eval/tasks/mmlu/default/_default_template_yaml and mmlu_<subject>.yaml
_MMLU = {
    "output_type": "multiple_choice",
    "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                   "D. {{choices[3]}}\nAnswer:",
    "doc_to_choice": ["A", "B", "C", "D"],
    "doc_to_target": "answer",
    "fewshot_config": {"sampler": "first_n"},
    "metric_list": [_ACC],
    "metadata": {"version": 1.0},
}


@dataclass(frozen=True)
class TaskSpec:
    """One lm-eval task over one registry benchmark.

    ``eval_split`` is scored; shots come from ``shot_split``. Where ``shot_split`` is missing and
    ``shots_from_eval`` is set, the shots are drawn from the eval split itself: lm-eval then leaves
    the scored item out of its own shots (its rule when the few-shot split equals the test split).
    """

    benchmark: str
    eval_split: str
    config: dict[str, Any]
    num_fewshot: int = 0
    shot_split: str | None = None
    shots_from_eval: bool = False
    files: dict[str, str] = field(default_factory=dict)  # split -> file expected under the benchmark folder


TASKS: dict[str, TaskSpec] = {
    "arc_easy": TaskSpec("arc_easy", "test", _ARC, 0, "train", False,
                         {"test": "arc/ARC-Easy-test.jsonl", "train": "arc/ARC-Easy-train.jsonl"}),
    "arc_challenge": TaskSpec("arc_challenge", "test", _ARC, 25, "train", False,
                              {"test": "arc/ARC-Challenge-test.jsonl", "train": "arc/ARC-Challenge-train.jsonl"}),
    "hellaswag": TaskSpec("hellaswag", "validation", _HELLASWAG, 10, "train", True,
                          {"validation": "hellaswag/hellaswag_val.jsonl", "train": "hellaswag/hellaswag_train.jsonl"}),
    "mmlu": TaskSpec("mmlu", "test", _MMLU, 5, "dev", False,
                     {"test": "mmlu/test/<subject>_test.csv", "dev": "mmlu/dev/<subject>_dev.csv"}),
    "truthfulqa_mc1": TaskSpec("truthfulqa", "validation", _TRUTHFULQA_MC1, 0, None, False,
                               {"validation": "truthfulqa/TruthfulQA.csv"}),
    "truthfulqa_mc2": TaskSpec("truthfulqa", "validation", _TRUTHFULQA_MC2, 0, None, False,
                               {"validation": "truthfulqa/TruthfulQA.csv"}),
    "winogrande": TaskSpec("winogrande", "validation", _WINOGRANDE, 5, "train", True,
                           {"validation": "winogrande/dev.jsonl", "train": "winogrande/train_xl.jsonl"}),
    "gsm8k": TaskSpec("gsm8k", "test", _GSM8K, 5, "train", False,
                      {"test": "gsm8k/test.jsonl", "train": "gsm8k/train.jsonl"}),
}


def expand(names: list[str]) -> list[str]:
    """Task names with suite names (``leaderboard``, ``all``) replaced by their tasks, duplicates dropped."""
    out: list[str] = []
    for n in names:
        for t in SUITES.get(n, [n]):
            if t not in out:
                out.append(t)
    return out


def write_task(cfg: dict[str, Any], folder: Path) -> Path:
    """Write one task YAML atomically (its ``!function`` entries resolve to the hooks.py that
    ``prepare_tasks`` writes beside it)."""
    name = cfg["group"] if "group" in cfg else cfg["task"]
    path = folder / f"{name}.yaml"
    write_text(path, yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
    return path


def _missing(bench_dir: Path | None, rel: str) -> BenchmarkMissing:
    return BenchmarkMissing(str(Path(bench_dir) / rel) if bench_dir is not None else rel)


def _split_rows(spec: TaskSpec, items: list[Item]) -> dict[str, list[dict]]:
    """Labelled items of the eval and shot splits as HF rows (Winogrande's train sizes xs..xl share ids)."""
    rows: dict[str, list[dict]] = {}
    seen: set[tuple[str, str]] = set()
    for it in items:
        if it.split not in (spec.eval_split, spec.shot_split) or it.answer is None or it.answer == "":
            continue
        if spec.benchmark == "winogrande":
            if (it.split, it.id) in seen:
                continue
            seen.add((it.split, it.id))
        rows.setdefault(it.split, []).append(BENCHMARKS[spec.benchmark].task_row(it))
    return rows


def _dataset(files: dict[str, Path], split_names: dict[str, str]) -> dict[str, Any]:
    """dataset_path/kwargs and the split keys of a task config for the files written."""
    data_files = {split: str(path) for split, path in files.items()}
    cfg: dict[str, Any] = {"dataset_path": "json", "dataset_kwargs": {"data_files": data_files}}
    for split, key in split_names.items():
        if split in files:
            cfg[key] = split
    return cfg


def _single_task(name: str, spec: TaskSpec, items: list[Item], bench_dir: Path | None, out: Path) -> list[str]:
    rows = _split_rows(spec, items)
    if spec.eval_split not in rows:
        raise _missing(bench_dir, spec.files[spec.eval_split])
    if spec.num_fewshot and spec.shot_split not in rows and not spec.shots_from_eval:
        raise _missing(bench_dir, spec.files[spec.shot_split])
    notes = list(spec.config["metadata"].get("hare_notes", []))
    if spec.num_fewshot and spec.shot_split not in rows:
        notes.append(f"{name}: no {spec.shot_split} split, so its {spec.num_fewshot} shots come from the "
                     f"{spec.eval_split} split (never the item itself)")
        log.warning(notes[-1])
    if name == "hellaswag" and any("ctx_a" not in it.meta for it in items):
        notes.append(HELLASWAG_NOTE)
    files = {}
    for split, split_rows in rows.items():
        files[split] = out / "data" / spec.benchmark / f"{split}.jsonl"
        write_jsonl(files[split], split_rows)
    # lm-eval's own split roles: the eval split is "test" where the benchmark has labelled test data,
    # else "validation" (HellaSwag, Winogrande, TruthfulQA), and shots come from "train"
    roles = {spec.eval_split: "test_split" if spec.eval_split == "test" else "validation_split"}
    if spec.shot_split:
        roles[spec.shot_split] = "training_split"
    cfg = {"task": name, **_dataset(files, roles), **spec.config,
           "metadata": {**spec.config["metadata"], "hare_notes": notes}}
    if spec.benchmark == "gsm8k":
        cfg["fewshot_split"] = "train"  # as lm-eval's gsm8k.yaml
    if spec.num_fewshot:
        cfg["num_fewshot"] = spec.num_fewshot
    write_task(cfg, out / "tasks")
    return [name]


def _mmlu_tasks(spec: TaskSpec, items: list[Item], bench_dir: Path | None, out: Path) -> list[str]:
    """One task per subject (shots: the subject's first five dev questions) and the ``mmlu`` group.

    The group is the plain mean of the subject accuracies, as the Open LLM Leaderboard v1 computed
    MMLU (its read_evals.py averages every hendrycksTest-* score); lm-eval's own mmlu group weights
    subjects by size, which summary.json reports as well.
    """
    by_subject: dict[str, list[Item]] = {}
    for it in items:
        by_subject.setdefault(it.meta.get("subject", ""), []).append(it)
    subjects = sorted(s for s, its in by_subject.items() if any(it.split == "test" for it in its))
    if not subjects:
        raise _missing(bench_dir, spec.files["test"])
    no_dev = [s for s in subjects if not any(it.split == "dev" for it in by_subject[s])]
    if no_dev:
        raise _missing(bench_dir, spec.files["dev"].replace("<subject>", no_dev[0])
                       + (f" (and {len(no_dev) - 1} more subjects)" if len(no_dev) > 1 else ""))
    names = []
    for subject in subjects:
        rows = _split_rows(spec, by_subject[subject])
        files = {}
        for split, split_rows in rows.items():
            files[split] = out / "data" / "mmlu" / subject / f"{split}.jsonl"
            write_jsonl(files[split], split_rows)
        cfg = {"task": f"mmlu_{subject}", "task_alias": subject, **_dataset(files, {"test": "test_split"}),
               "fewshot_split": "dev",
               "description": f"The following are multiple choice questions (with answers) about "
                              f"{' '.join(subject.split('_'))}.\n\n",
               **spec.config, "num_fewshot": spec.num_fewshot}
        write_task(cfg, out / "tasks")
        names.append(cfg["task"])
    write_task({"group": "mmlu", "task": names,
                "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
                "metadata": {"version": 2}}, out / "tasks")
    if len(subjects) != 57:
        log.warning("mmlu: %d subjects found, the benchmark has 57", len(subjects))
    return ["mmlu"]


def prepare_tasks(names: list[str], bench_dir: str | Path | None, out: Path) -> tuple[list[str], dict[str, str]]:
    """Write data and task YAMLs for ``names`` under ``out`` (``data/``, ``tasks/``).

    Returns the lm-eval task names ready to run and, for each task that cannot run, why (the
    missing file it needs). ``hare_heldout`` is not handled here (it needs the run's documents).
    """
    bench_dir = Path(bench_dir) if bench_dir is not None else None
    ready: list[str] = []
    skipped: dict[str, str] = {}
    cache: dict[str, list[Item] | BenchmarkMissing] = {}
    for name in expand(names):
        spec = TASKS.get(name)
        if spec is None:
            raise ValueError(f"unknown task '{name}'; known: {', '.join([*TASKS, *SUITES])}")
        if spec.benchmark not in cache:
            try:
                cache[spec.benchmark] = load_benchmark(spec.benchmark, bench_dir)
            except BenchmarkMissing as e:
                cache[spec.benchmark] = e
        items = cache[spec.benchmark]
        try:
            if isinstance(items, BenchmarkMissing):
                raise items
            if name == "mmlu":
                ready += _mmlu_tasks(spec, items, bench_dir, out)
            else:
                ready += _single_task(name, spec, items, bench_dir, out)
        except BenchmarkMissing as e:
            skipped[name] = f"missing file {e}"
    if ready:
        write_text(out / "tasks" / "hooks.py", Path(__file__).with_name("hooks.py").read_text(encoding="utf-8"))
    return ready, skipped
