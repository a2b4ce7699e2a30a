"""D2, D3 and curate through the pipeline, with a real teacher behind a real server and in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hare.core.documents import read_shards
from hare.core.io import read_json, read_jsonl
from hare.pipeline import Pipeline
from hare.recipe import load_recipe
from hare.synth.d3 import validate
from tests.conftest import SHARED, nltk_texts


def recipe(folder: Path, teacher: dict, name: str, shared: Path) -> Path:
    with open(folder / "reviews.jsonl", "w") as f:
        for i, (_, text) in enumerate(nltk_texts("movie_reviews", 60)):
            f.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    r = {"name": name, "out_dir": str(folder / "runs"),
         "sources": [{"name": "reviews", "kind": "jsonl", "path": "reviews.jsonl", "id_field": "id"}],
         "corpus": {"heldout_fraction": 0.05, "shard_docs": 100},
         "decontam": {"benchmarks": ["arc_easy"], "benchmarks_dir": str(shared)},
         "cluster": {"k": 2},
         "synth": {"enabled": True, "teacher": teacher,
                   "d2": {"docs_per_topic": 2, "max_tokens": 24, "temperature": 0.0, "min_words": 3},
                   "d3": {"seeds_from_d2": 2, "seeds_from_d1": 1, "max_tokens": 24, "temperature": 0.0,
                          "max_reasks": 1, "datasets": [{"name": "dolly", "limit": 30,
                                                         "path": str(shared / "dolly" / "dolly-15k-head.jsonl")}]}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


@pytest.fixture(scope="module")
def served(tiny_server, tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("synth-http")
    path = recipe(folder, {"endpoints": [tiny_server.url], "model": tiny_server.model, "concurrency": 4}, "http",
                  shared_data)
    before = tiny_server.received()
    Pipeline(load_recipe(path)).run(["mix"])
    return load_recipe(path), tiny_server.received() - before


@pytest.mark.slow
def test_d2_and_d3_through_the_server_with_provenance_reasks_and_quarantine(served):
    rec, received = served
    run = rec.run_dir
    d2, d3, cur = (read_json(run / s / "stats.json") for s in ("d2", "d3", "curate"))
    assert d2["topics"] == 2 and d2["requests"] == 4 and d2["usage"]["sent"] == 4
    assert d2["usage"]["completion_tokens"] > 0
    gen = list(read_shards(run / "d2" / "generated"))
    assert len(gen) + sum(d2["rejected"].values()) == 4
    for d in gen:
        assert {"template", "category", "style", "audience", "topic", "seed_id", "seed_source"} <= set(d.metadata)
    # The random-weight teacher never writes valid JSON: every QA, MC and cloze answer is asked again
    # once, then quarantined with both raw answers; summaries need no JSON.
    seeds = d3["seeds"]
    assert seeds == min(2, len(gen)) + 1
    for task in ("qa", "mc", "cloze"):
        asked = seeds - d3["tasks"][task].get("no_sentence", 0)  # a cloze item needs a whole sentence to blank
        assert d3["tasks"][task]["requests"] == 2 * asked
        assert d3["tasks"][task]["reasked"] == asked and d3["tasks"][task]["quarantined"] == asked
    assert d3["tasks"]["cloze"]["requests"] > 0  # the reviews have sentences
    q = [r for r in read_jsonl(run / "d3" / "quarantine.jsonl") if r.get("task") == "mc"]
    assert len(q) == seeds and all(len(r["attempts"]) == 2 and r["attempts"][0]["reason"] for r in q)
    assert d3["usage"]["sent"] == received - d2["usage"]["sent"]  # every request the server saw is accounted
    assert d3["datasets"]["dolly"]["samples"] + d3["datasets"]["dolly"].get("too_long", 0) == 30
    samples = [d for d in read_shards(run / "d3" / "generated") if d.metadata["origin"] == "dataset:dolly"]
    assert len({d.metadata["template"] for d in samples}) >= 2  # several templates per task type
    # curate: the parts the mix takes, with what was removed and why
    assert cur["parts"]["d3"]["decontam_ngram"] == 8 and cur["parts"]["d2"]["decontam_ngram"] == 13
    assert cur["parts"]["d3"]["docs_out"] > 0
    assert cur["docs_in"] == cur["docs_out"] + sum(sum(p["removed"].values()) for p in cur["parts"].values())
    mixed = {d.source for d in read_shards(run / "mix" / "train" / "d3")}
    assert mixed == {"d3"}
    # the report's sections for the three steps render from their stats
    from hare.report.html import render_report
    from hare.synth.steps import CURATE, D2, D3

    html = render_report(run, "t", [(D2, run / "d2"), (D3, run / "d3"), (CURATE, run / "curate")])
    assert "D2: topic-seeded" in html and "D3: NLP tasks" in html and "Curation of D2 and D3" in html
    assert "quarantined" in html and "decontamination n" in html


@pytest.mark.slow
def test_a_rerun_sends_nothing_and_the_local_backend_gives_the_same_parts(served, tiny, tmp_path):
    rec, _ = served
    Pipeline(rec).run(["curate"], force=["d2"])  # the same requests: every answer from the cache
    assert read_json(rec.run_dir / "d2" / "stats.json")["usage"]["sent"] == 0
    assert read_json(rec.run_dir / "d3" / "stats.json")["usage"]["sent"] == 0
    local = rec.model_copy(deep=True)
    local.name = "local"
    local.synth.teacher.endpoints = []
    local.synth.teacher.model = rec.synth.teacher.model
    local.synth.teacher.local = str(tiny)
    local.synth.d3.constrain = False  # transformers serve ignores response_format: compare unconstrained decoding
    Pipeline(local).run(["curate"])
    assert read_json(local.run_dir / "d2" / "stats.json")["usage"]["sent"] == 4  # its own cache, same prompts
    for part in ("d2", "d3"):
        a = [(d.id, d.text) for d in read_shards(rec.run_dir / "curate" / "train" / part)]
        b = [(d.id, d.text) for d in read_shards(local.run_dir / "curate" / "train" / part)]
        assert a == b


def test_multiple_choice_and_cloze_validation():
    ok, why = validate("mc", 'Sure! ```json\n{"question": "Q?", "answer": "rain", "wrong_answers": '
                             '["snow", "hail", "fog"]}```')
    assert why is None and ok["answer"] == "rain"
    assert "wrong_answers" in validate("mc", '{"question": "Q?", "answer": "rain", "wrong_answers": ["snow"]}')[1]
    assert validate("mc", '{"question": "Q?", "answer": "rain", "wrong_answers": ["Rain", "hail", "fog"]}')[1]
    assert validate("mc", "no json here")[1] == "no JSON object found"
    assert validate("cloze", '{"sentence": "The sky is blue today.", "answer": "blue"}')[1] is None
    assert validate("cloze", '{"sentence": "The sky is blue today.", "answer": "green"}')[1]
