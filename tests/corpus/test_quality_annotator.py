"""The corpus step's annotator mode with the packaged teacher on real text (ABC science news and web
chat): the teacher grades a seeded sample under the grade schema, a classifier fitted to the grades
scores every document; a second run asks the teacher nothing, and a run killed with SIGKILL while
the teacher grades finishes, when started again, with what an uninterrupted run writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from hare.cli import main
from hare.core.documents import read_shards
from hare.core.io import read_json
from tests.conftest import nltk_texts
from tests.synth.test_resume import kill_midway

ANNOTATIONS = 12
CACHE_COUNTS = ("requests_sent", "requests_cached")


def write_inputs(folder: Path) -> None:
    for name, corpus in (("science", "abc"), ("web", "webtext")):
        with open(folder / f"{name}.jsonl", "w") as f:
            n = 0
            for _, text in nltk_texts(corpus):
                for i in range(0, len(text) - 1200, 1200):
                    f.write(json.dumps({"text": text[i:i + 1200]}) + "\n")
                    n += 1
                    if n == 40:
                        break
                if n == 40:
                    break


def recipe(folder: Path, name: str, cache: str, max_score: float = 1.0) -> Path:
    r = {"name": "a",
         "sources": [{"name": "science", "kind": "jsonl", "path": "science.jsonl"},
                     {"name": "web", "kind": "jsonl", "path": "web.jsonl"}],
         "corpus": {"heldout_fraction": 0.0, "shard_docs": 40,
                    "clean": {"min_alpha_word_fraction": 0.5, "language_id": "wordlist"},
                    "quality": {"enabled": True, "mode": "annotator", "annotate_docs": ANNOTATIONS,
                                "annotate_chars": 300, "annotate_max_tokens": 8, "features": "hashed",
                                "min_score": 0.0, "max_score": max_score, "cache_dir": cache, "sample_docs": 20}},
         "synth": {"teacher": {"packaged": "smollm2", "batch_size": 4, "threads": 2}},
         "execution": {"workers": 1}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def without_cache_counts(stats: dict) -> dict:
    return {**stats, "quality": {k: v for k, v in stats["quality"].items() if k not in CACHE_COUNTS}}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, smollm2):
    folder = tmp_path_factory.mktemp("annotator")
    write_inputs(folder)
    path = recipe(folder, "r", str(folder / "cache"))
    assert main(["corpus", str(path), "--out-dir", str(folder / "runs")]) == 0
    return folder, folder / "runs" / "a" / "corpus"


def test_the_teacher_grades_a_seeded_sample_and_the_classifier_scores_every_document(straight):
    folder, out = straight
    stats = read_json(out / "stats.json")
    q = stats["quality"]
    assert q["mode"] == "annotator" and q["teacher"] == "packaged:smollm2"
    # the grade schema: every answer of the 135M teacher is a grade
    assert q["annotations"] == q["graded"] == sum(q["grades"]) == ANNOTATIONS and len(q["grades"]) == 6
    assert q["grades_by_source"]["science"] and sum(q["grades_by_source"]["science"]) == ANNOTATIONS // 2
    assert q["requests_sent"] == ANNOTATIONS and q["requests_cached"] == 0
    c = q["classifier"]
    assert c["features"] == "hashed" and c["heldout"]["n"] + c["train"] == ANNOTATIONS
    assert len((folder / "cache" / "annotations.jsonl").read_text().splitlines()) == ANNOTATIONS
    kept = [d for d in read_shards(out / "train")]
    # a band of [0, 1] keeps every document (however the small teacher grades): each has its score
    assert len(kept) == stats["summary"]["train"] > 0 and all(0 <= d.metadata["quality"] <= 1 for d in kept)
    for name, st in stats["sources"].items():
        by_rules = sum(v for k, v in st["removed"].items() if not k.startswith("quality"))
        assert sum(st["quality"]["before"]) == st["docs_in"] - by_rules
        assert sum(st["quality"]["after"]) == st["train"]
    s = stats["summary"]
    assert s["read"] == s["train"] + s["heldout"] + s["removed"] + s["quarantined"]
    from hare.pipeline import build_report

    assert "graded" in build_report(folder / "runs" / "a", "a")


def test_a_second_run_asks_the_teacher_nothing(straight):
    folder, out = straight
    path = recipe(folder, "r2", str(folder / "cache"), max_score=0.999)  # another band: the step runs again
    assert main(["corpus", str(path), "--out-dir", str(folder / "runs2")]) == 0
    again = read_json(folder / "runs2" / "a" / "corpus" / "stats.json")["quality"]
    first = read_json(out / "stats.json")["quality"]
    assert again["requests_sent"] == 0 and again["requests_cached"] == ANNOTATIONS
    assert again["grades_by_source"] == first["grades_by_source"] and again["classifier"]["heldout"]["f1"] >= 0


@pytest.mark.slow
def test_killed_while_grading_reruns_to_the_corpus_of_an_uninterrupted_run(straight):
    folder, out = straight
    path = recipe(folder, "k", str(folder / "cache-killed"))
    runs = folder / "killed"
    held = kill_midway([sys.executable, "-m", "hare", "corpus", str(path), "--out-dir", str(runs)],
                       folder / "cache-killed" / "annotations.jsonl", ANNOTATIONS)
    assert not (runs / "a" / "corpus" / "manifest.json").exists()
    assert main(["corpus", str(path), "--out-dir", str(runs)]) == 0
    resumed = runs / "a" / "corpus"
    stats = read_json(resumed / "stats.json")
    assert stats["quality"]["requests_sent"] == ANNOTATIONS - held
    assert without_cache_counts(stats) == without_cache_counts(read_json(out / "stats.json"))
    for part, prefix in (("train", "shard"), ("removed", "removed")):
        docs = [[(d.id, d.text, d.metadata) for d in read_shards(folder / part, prefix)] for folder in (resumed, out)]
        assert docs[0] == docs[1]
