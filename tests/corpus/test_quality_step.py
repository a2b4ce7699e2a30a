"""The corpus step with a quality band: reference speeches, raw reviews and web text."""

import json

import yaml

from hare.cli import main
from hare.core.io import read_json
from tests.conftest import nltk_texts


def test_quality_band_keeps_reference_like_text(tmp_path):
    def write(name, corpus, size=2500):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for fname, text in nltk_texts(corpus):
                for i in range(0, len(text) - size, size):
                    f.write(json.dumps({"text": text[i:i + size]}) + "\n")

    write("speeches", "state_union")
    write("web", "webtext")
    recipe = {
        "name": "q",
        "sources": [{"name": "speeches", "kind": "jsonl", "path": "speeches.jsonl"},
                    {"name": "web", "kind": "jsonl", "path": "web.jsonl"}],
        "corpus": {"heldout_fraction": 0.0, "clean": {"min_alpha_word_fraction": 0.5},
                   "quality": {"enabled": True, "reference_sources": ["speeches"], "sample_docs": 300,
                               "min_score": 0.5}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["corpus", str(tmp_path / "r.yaml"), "--out-dir", str(tmp_path / "runs")]) == 0
    stats = read_json(tmp_path / "runs" / "q" / "corpus" / "stats.json")
    sp, web = stats["sources"]["speeches"], stats["sources"]["web"]
    assert stats["quality"]["heldout_accuracy"] > 0.9 and stats["quality"]["terms"]["reference"]
    # most speech chunks stay, most chat and forum chunks go, each removal with its reason
    assert sp["removed"].get("quality_below_band", 0) < 0.1 * sp["docs_in"]
    assert web["removed"].get("quality_below_band", 0) > 0.7 * web["docs_in"]
    assert sum(sp["quality"]["before"]) >= sum(sp["quality"]["after"]) == sp["train"]
    assert sp["quality"]["mean_after"] >= sp["quality"]["mean_before"]
    s = stats["summary"]
    assert s["read"] == s["train"] + s["heldout"] + s["removed"] + s["quarantined"]
    assert (tmp_path / "runs" / "q" / "corpus" / "quality_scorer.pkl").exists()
    from hare.pipeline import build_report

    text = build_report(tmp_path / "runs" / "q", "q")
    assert "Quality consistency" in text and "<svg" in text and "held-out accuracy" in text


def test_parallel_cleaning_gives_the_same_corpus(tmp_path):
    from hare.core.documents import read_shards

    with open(tmp_path / "web.jsonl", "w") as f:
        for name, text in nltk_texts("webtext") + nltk_texts("movie_reviews", 300):
            for i in range(0, len(text), 3000):
                f.write(json.dumps({"text": text[i:i + 3000] + "\nContact me at someone@example.org"}) + "\n")
    outs = {}
    for procs in (1, 2):
        recipe = {"name": "p", "sources": [{"name": "web", "kind": "jsonl", "path": "web.jsonl"}],
                  "corpus": {"dedup": "minhash"}, "execution": {"workers": procs}}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        assert main(["corpus", str(tmp_path / "r.yaml"), "--out-dir", str(tmp_path / f"runs{procs}")]) == 0
        out = tmp_path / f"runs{procs}" / "p" / "corpus"
        outs[procs] = (read_json(out / "stats.json"),
                       [(d.id, d.text) for folder in ("train", "heldout") for d in read_shards(out / folder)])
    assert outs[1] == outs[2]
    stats = outs[1][0]["summary"]
    assert stats["formatter_changes"]["pii"] > 100 and stats["removed"] > 0
