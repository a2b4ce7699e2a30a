import json
from collections import Counter

import pytest

from hare.evals.benchmarks import BenchmarkMissing, load_benchmark


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
