import json
from collections import Counter

import pytest

from hare.core.evalsets import BenchmarkMissing, load_benchmark


@pytest.mark.parametrize("name,split,count", [
    ("arc_easy", "test", 2376), ("arc_challenge", "test", 1172), ("arc_challenge", "train", 1119),
    ("gsm8k", "test", 1319), ("gsm8k", "train", 7473), ("mmlu", "test", 14042), ("mmlu", "dev", 285),
    ("hellaswag", "validation", 10042), ("truthfulqa", "validation", 817),
])
def test_counts_match_the_published_splits(shared_data, name, split, count):
    items = load_benchmark(name, shared_data)
    assert Counter(it.split for it in items)[split] == count


def test_item_fields(shared_data):
    arc = load_benchmark("arc_easy", shared_data)[0]
    assert arc.question and len(arc.choices) >= 3 and isinstance(arc.answer, int)
    mmlu = next(it for it in load_benchmark("mmlu", shared_data) if it.meta["subject"] == "anatomy")
    assert len(mmlu.choices) == 4 and mmlu.answer in range(4)
    gsm = load_benchmark("gsm8k", shared_data)[0]
    assert "####" in gsm.answer_text and gsm.answer_text in gsm.text()
    tqa = load_benchmark("truthfulqa", shared_data)[0]
    assert tqa.meta["correct"] and tqa.meta["incorrect"] and tqa.answer_text
    hs = load_benchmark("hellaswag", shared_data)[0]
    assert len(hs.choices) == 4 and hs.answer in range(4)


def test_winogrande_fixture_in_published_format(tmp_path):
    (tmp_path / "winogrande").mkdir()
    rows = [{"qID": "3QHITW7OYO7Q6B6ISU2UMJB84ZLAQE-2", "sentence": "Ian volunteered to eat Dennis's menudo after "
             "already having a bowl because _ despised eating intestine.", "option1": "Ian", "option2": "Dennis",
             "answer": "2"}]
    (tmp_path / "winogrande" / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    [it] = load_benchmark("winogrande", tmp_path)
    assert it.split == "validation" and it.choices == ["Ian", "Dennis"] and it.answer == 1


@pytest.mark.parametrize("name", ["arc_easy", "hellaswag", "mmlu", "gsm8k", "truthfulqa", "winogrande"])
def test_missing_files_name_the_expected_path(tmp_path, name):
    with pytest.raises(BenchmarkMissing) as e:
        load_benchmark(name, tmp_path)
    assert str(tmp_path) in str(e.value)


def _to_parquet(rows, path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_hub_cache_parquet_layout_is_found_without_a_folder(tmp_path, monkeypatch, shared_data):
    """Datasets downloaded earlier sit in the hub cache as Parquet shards; they load offline."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = tmp_path / "hub" / "datasets--allenai--ai2_arc" / "snapshots" / "abc123"
    rows = [json.loads(l) for l in (shared_data / "arc" / "ARC-Easy-test.jsonl").read_text().splitlines()[:30]]
    _to_parquet(rows, snap / "ARC-Easy" / "test-00000-of-00001.parquet")
    items = load_benchmark("arc_easy", None)
    local = load_benchmark("arc_easy", shared_data)
    assert len(items) == 30 and items[0].split == "test"
    assert [(i.question, i.choices, i.answer) for i in items] == [(i.question, i.choices, i.answer) for i in local[:30]]
    with pytest.raises(BenchmarkMissing, match="hub cache copy of allenai/ai2_arc"):
        load_benchmark("arc_challenge", None)


def test_hf_row_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    base = tmp_path / "hub"
    _to_parquet([{"question": "What is 2+2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"],
                  "answer": 1}], base / "datasets--cais--mmlu" / "snapshots" / "r" / "all" / "test-00000.parquet")
    _to_parquet([{"question": "Is the sky green?",
                  "mc1_targets": {"choices": ["No", "Yes"], "labels": [1, 0]},
                  "mc2_targets": {"choices": ["No", "It is blue", "Yes"], "labels": [1, 1, 0]}}],
                tmp_path / "b" / "truthfulqa" / "multiple_choice" / "validation-00000.parquet")
    _to_parquet([{"ind": 4, "activity_label": "Baking", "ctx_a": "She mixes flour.", "ctx_b": "then she",
                  "ctx": "She mixes flour. then she", "endings": ["a", "b", "c", "d"], "label": "2"}],
                tmp_path / "b" / "hellaswag" / "validation-00000.parquet")
    [m] = load_benchmark("mmlu", None)
    assert m.meta["subject"] == "elementary_mathematics" and m.answer_text == "4"
    [t] = load_benchmark("truthfulqa", tmp_path / "b")
    assert t.answer_text == "No" and t.meta["correct"] == ["No", "It is blue"] and t.meta["incorrect"] == ["Yes"]
    [h] = load_benchmark("hellaswag", tmp_path / "b")
    assert h.question == "Baking: She mixes flour. then she" and h.answer == 2 and h.meta["ctx_b"] == "then she"


def test_custom_benchmark_from_a_few_field_names(tmp_path):
    from hare.core.evalsets import CustomBenchmark, load_custom

    p = tmp_path / "quiz.jsonl"
    p.write_text(json.dumps({"q": "Capital of France?", "opts": ["Rome", "Paris"], "gold": 1}) + "\n")
    [it] = load_custom(CustomBenchmark(name="quiz", path=str(p), question_field="q", choices_field="opts",
                                       answer_field="gold"))
    assert it.benchmark == "quiz" and it.answer_text == "Paris" and "Capital of France?" in it.text()
    with pytest.raises(ValueError, match="no field 'question'"):
        load_custom(CustomBenchmark(name="quiz", path=str(p)))


def test_malformed_benchmark_files_name_file_row_and_field(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    bad = tmp_path / "gsm8k" / "test.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + '\n{"question": "broken\n')
    with pytest.raises(ValueError, match=r"test.jsonl:2: bad JSON"):
        load_benchmark("gsm8k", tmp_path)
    bad.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"test.jsonl: row 1 has no field 'answer'"):
        load_benchmark("gsm8k", tmp_path)
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    (tmp_path / "mmlu" / "test" / "anatomy_test.csv").write_text("What is x?,a,b,c,d,A\nshort,row\n")
    with pytest.raises(ValueError, match=r"anatomy_test.csv: row 2 has 2 fields"):
        load_benchmark("mmlu", tmp_path)
