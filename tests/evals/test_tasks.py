"""hare's task definitions render the prompts of lm-evaluation-harness's own, on the same items."""

from __future__ import annotations

import json
from pathlib import Path

import lm_eval
import pytest
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from hare.core.evalsets import load_benchmark
from hare.evals.tasks import TASKS, expand, prepare_tasks
from tests.evals.conftest import link_shared, write_winogrande

BUILTIN = Path(lm_eval.__file__).parent / "tasks"
BUILTIN_YAML = {
    "arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml", "hellaswag": "hellaswag/hellaswag.yaml",
    "mmlu_anatomy": "mmlu/default/mmlu_anatomy.yaml", "truthfulqa_mc1": "truthfulqa/truthfulqa_mc1.yaml",
    "truthfulqa_mc2": "truthfulqa/truthfulqa_mc2.yaml", "winogrande": "winogrande/default.yaml",
    "gsm8k": "gsm8k/gsm8k.yaml",
}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


def _hf_hellaswag_rows(shared: Path, n: int = 16) -> list[dict]:
    """HellaSwag rows in the Hugging Face layout (activity_label, ctx_a, ctx_b) made from the joined ctx.

    ActivityNet contexts end with an unfinished sentence: ctx_b is what follows the last ". ".
    """
    rows = []
    for it in load_benchmark("hellaswag", shared):
        label, _, ctx = it.question.partition(": ")
        head, sep, tail = ctx.rpartition(". ")
        if sep and tail and tail[0].islower():
            rows.append({"ind": len(rows), "activity_label": label, "ctx_a": head + ".", "ctx_b": tail,
                         "ctx": f"{head}. {tail}", "endings": it.choices, "label": str(it.answer)})
        if len(rows) == n:
            break
    return rows


@pytest.fixture(scope="module")
def parity_tasks(tmp_path_factory, shared_data) -> Path:
    """hare's task folder over the shared benchmarks, HellaSwag in the HF layout, Winogrande items."""
    tmp = tmp_path_factory.mktemp("parity")
    bench = link_shared(tmp / "bench", shared_data, ["arc", "mmlu", "gsm8k", "truthfulqa"])
    write_winogrande(bench)
    (bench / "hellaswag").mkdir()
    (bench / "hellaswag" / "hellaswag_val.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _hf_hellaswag_rows(shared_data)))
    ready, skipped = prepare_tasks(["all"], bench, tmp / "out")
    assert not skipped and set(ready) == set(TASKS)
    return tmp / "out" / "tasks"


def _builtin_task(name: str, data_files: dict) -> ConfigurableTask:
    """lm-eval's own definition of ``name``, reading ``data_files`` instead of the hub."""
    cfg = load_yaml(BUILTIN / BUILTIN_YAML[name])
    for key in ("tag", "group", "include"):
        cfg.pop(key, None)
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files})
    for key in SPLIT_KEYS:  # splits the local data does not have fall back as lm-eval's rules say
        if cfg.get(key) not in data_files:
            cfg[key] = None
    return ConfigurableTask(config=cfg)


def _rendered(task: ConfigurableTask, n_shot: int, k: int = 2) -> list[tuple]:
    task.set_fewshot_seed(1234)
    out = []
    for doc in list(task.eval_docs)[:k]:
        choices = task.doc_to_choice(doc) if task.config.doc_to_choice else None
        out.append((task.fewshot_context(doc, n_shot), task.doc_to_target(doc), choices))
    return out


@pytest.mark.parametrize("name", sorted(BUILTIN_YAML))
def test_prompt_target_and_choices_equal_lm_evals_own_task(parity_tasks, name):
    mine = ConfigurableTask(config=load_yaml(parity_tasks / f"{name}.yaml"))
    theirs = _builtin_task(name, mine.config.dataset_kwargs["data_files"])
    n_shot = mine.config.num_fewshot or 0
    assert n_shot == {"arc_challenge": 25, "hellaswag": 10, "mmlu_anatomy": 5, "winogrande": 5,
                      "gsm8k": 5}.get(name, 0)
    assert mine.config.output_type == theirs.config.output_type
    assert [m["metric"] for m in mine.config.metric_list] == [m["metric"] for m in theirs.config.metric_list]
    a, b = _rendered(mine, n_shot), _rendered(theirs, n_shot)
    assert a == b
    context = a[0][0]
    assert (context.count("\n\n") >= n_shot) if isinstance(context, str) else all(c.count("\n\n") >= n_shot
                                                                                  for c in context)


def test_gsm8k_filters_and_generation_are_lm_evals(parity_tasks):
    mine = load_yaml(parity_tasks / "gsm8k.yaml")
    theirs = load_yaml(BUILTIN / BUILTIN_YAML["gsm8k"])
    for key in ("filter_list", "generation_kwargs", "metric_list", "doc_to_target", "fewshot_split"):
        assert mine[key] == theirs[key], key


def test_mc2_scores_the_probability_mass_of_true_answers(parity_tasks):
    mine = ConfigurableTask(config=load_yaml(parity_tasks / "truthfulqa_mc2.yaml"))
    doc = {"mc2_targets": {"choices": ["a", "b", "c"], "labels": [1, 0, 0]}}
    ll = [(-1.0, False), (-2.0, False), (-3.0, False)]
    theirs = _builtin_task("truthfulqa_mc2", mine.config.dataset_kwargs["data_files"])
    assert mine.process_results(doc, ll)["acc"] == pytest.approx(theirs.process_results(doc, ll)["acc"])
    # hundreds of nats below: lm-eval's exp() underflows to 0/0, hare's stable form does not
    assert mine.process_results(doc, [(-900.0, False), (-901.0, False), (-902.0, False)])["acc"] == \
        pytest.approx(mine.process_results(doc, ll)["acc"])


def test_mmlu_group_has_every_subject_with_the_leaderboards_mean(parity_tasks):
    group = load_yaml(parity_tasks / "mmlu.yaml")
    assert len(group["task"]) == 57 and group["aggregate_metric_list"][0]["weight_by_size"] is False
    cfg = load_yaml(parity_tasks / "mmlu_high_school_us_history.yaml")
    assert cfg["description"] == ("The following are multiple choice questions (with answers) about "
                                  "high school us history.\n\n")


def test_joined_hellaswag_context_differs_only_in_ctx_b_capitalisation(tmp_path, shared_data):
    bench = link_shared(tmp_path / "bench", shared_data, ["hellaswag"])
    ready, _ = prepare_tasks(["hellaswag"], bench, tmp_path / "out")
    task = ConfigurableTask(config=load_yaml(tmp_path / "out" / "tasks" / "hellaswag.yaml"))
    doc = task.eval_docs[0]
    assert task.doc_to_text(doc) == "Roof shingle removal: A man is sitting on a roof. he"
    assert task.doc_to_target(doc) == 3 and task.doc_to_choice(doc)[3] == "starts pulling up roofing on a roof."
    hf = {"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
          "endings": doc["endings"], "label": "3"}
    from lm_eval.tasks.hellaswag.utils import process_docs  # lm-eval's own preprocessing of the HF row
    import datasets

    [theirs] = process_docs(datasets.Dataset.from_list([hf]))
    assert theirs["query"] == "Roof shingle removal: A man is sitting on a roof. He"


def test_truthfulqa_targets_come_from_the_csv_columns(parity_tasks):
    rows = [json.loads(l) for l in (parity_tasks.parent / "data" / "truthfulqa" / "validation.jsonl").open()]
    assert len(rows) == 817
    first = rows[0]
    assert first["question"] == "What happens to you if you eat watermelon seeds?"
    assert first["mc1_targets"]["choices"][0] == "The watermelon seeds pass through your digestive system."
    assert first["mc1_targets"]["labels"] == [1] + [0] * 7
    assert first["mc2_targets"]["labels"] == [1] * 5 + [0] * 7
    assert all(c.endswith(".") for c in first["mc2_targets"]["choices"])


def test_a_missing_file_is_named_and_the_other_tasks_still_build(tmp_path, shared_data):
    bench = link_shared(tmp_path / "bench", shared_data, ["arc", "truthfulqa"])
    (bench / "mmlu" / "test").mkdir(parents=True)
    (bench / "mmlu" / "test" / "anatomy_test.csv").write_text("question,choice0,choice1,choice2,choice3,answer\n"
                                                              "Which bone?,a,b,c,d,1\n")
    ready, skipped = prepare_tasks(["leaderboard"], bench, tmp_path / "out")
    assert ready == ["arc_challenge", "truthfulqa_mc2"]
    assert set(skipped) == {"mmlu", "winogrande", "hellaswag", "gsm8k"}
    assert str(bench / "mmlu" / "dev" / "anatomy_dev.csv") in skipped["mmlu"]
    assert str(bench / "gsm8k") in skipped["gsm8k"] and "winogrande" in skipped["winogrande"]
    (bench / "gsm8k").mkdir()
    (bench / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    _, skipped = prepare_tasks(["gsm8k"], bench, tmp_path / "out2")
    assert skipped["gsm8k"] == f"missing file {bench / 'gsm8k' / 'train.jsonl'}"  # its 5 shots come from train


def test_suites_expand_to_known_tasks():
    assert expand(["hare_heldout", "leaderboard"]) == ["hare_heldout", "mmlu", "arc_challenge", "truthfulqa_mc2",
                                                       "winogrande", "hellaswag", "gsm8k"]
    assert set(expand(["all"])) == set(TASKS)
    with pytest.raises(ValueError, match="unknown task 'arc'"):
        prepare_tasks(["arc"], None, Path("unused"))
