"""A reduced study end to end on real reviews: arms differ only in their data, the curve, the ratio,
the outputs, and a second run that redoes nothing."""

from __future__ import annotations

import pytest
import yaml

from hare.cli import main
from hare.core.io import read_json, read_jsonl
from hare.study import Noise, add_noise, interpolate_tokens
from hare.study.run import DATA_KEYS, DATA_SECTIONS
from tests.conftest import write_corpus_jsonl

BATCHES = "batches.jsonl"  # what every training step read, per stage and part

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1}


def study_recipe(folder):
    write_corpus_jsonl(folder / "reviews.jsonl", "movie_reviews", 160)
    r = {"name": "s", "sources": [{"name": "reviews", "kind": "jsonl", "path": "reviews.jsonl"}],
         "corpus": {"dedup": "minhash"},
         "cluster": {"enabled": True, "k": 4},
         "mix": {"max_chars": 300_000},
         "tokenizer": {"vocab_size": 512},
         "pack": {"seq_len": 64},
         "model": {"preset": "tiny", "overrides": TINY},
         "train": {"max_steps": 12, "micro_batch_size": 4, "grad_accum": 1, "warmup_steps": 2, "log_every": 4,
                   "threads": 1, "device": "cpu"}}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def shared_settings(recipe: dict) -> dict:
    """An arm's recipe without its data settings (the sections and keys an arm may change)."""
    rest = {k: v for k, v in recipe.items() if k not in DATA_SECTIONS + ("name",)}
    for section, key in DATA_KEYS:
        rest[section] = {k: v for k, v in rest[section].items() if k != key}
    return rest


@pytest.mark.slow
def test_reduced_study_end_to_end(tmp_path, capsys):
    recipe = study_recipe(tmp_path)
    out = tmp_path / "study"
    args = ["study", str(recipe), "--out", str(out), "--noise", "--eval-points", "3", "--heldout-docs", "16",
            "--eval-docs", "4", "--seeds", "2", "--figure", str(tmp_path / "fig.png")]
    assert main(args) == 0
    res = read_json(out / "study.json")
    arms = {a["arm"]: a for a in res["arms"]}
    assert list(arms) == ["raw", "clean", "hare"]
    seed = read_json(out / "arms" / "raw.recipe.json")["seed"]
    assert res["seeds"] == [seed, seed + 1] and res["tier"] == "smoke" and "smoke test" in res["tier_note"]
    task = "task/heldout-ending/bits_per_byte"
    assert res["data"]["tasks"]["heldout-ending"] >= 10
    for name, a in arms.items():
        # two seeds, each its own run: other initial weights, so other numbers from the first evaluation on
        assert [r["seed"] for r in a["runs"]] == res["seeds"]
        first, second = (r["curve"] for r in a["runs"])
        assert first[0]["bits_per_byte"] != second[0]["bits_per_byte"]
        assert (out / "arms" / name / "seeds" / str(seed + 1) / "heldout.jsonl").exists()
        # every metric at the end has its mean and 95 % interval over the two seeds
        for m in ("bits_per_byte", task, "task/heldout-ending/acc", "task/heldout-ending/correct_prob"):
            iv = a["final"][m]
            assert iv["n"] == 2 and iv["lo"] <= iv["mean"] <= iv["hi"], (name, m)
            assert iv["mean"] == pytest.approx(sum(r["curve"][-1][m] for r in a["runs"]) / 2)
        assert 0 <= a["final"]["task/heldout-ending/acc"]["mean"] <= 1
        assert a["curve"][-1][f"{task}_lo"] <= a["curve"][-1][task] <= a["curve"][-1][f"{task}_hi"]
        # the epoch accounting: tokens trained on over the unique tokens of the arm's packed data
        tok = read_json(out / "arms" / name / "tokenize" / "stats.json")
        assert a["unique_tokens"] == tok["num_tokens"]
        assert a["epochs"] == pytest.approx(a["tokens"] / tok["num_tokens"], abs=1e-3)
        # comparisons with raw, paired by seed, say whether they can be told apart
        if name != "raw":
            for m in ("bits_per_byte", task):
                assert arms[name]["vs_baseline"][m]["verdict"] in ("better", "worse", "not distinguishable")
                assert arms[name]["ratios"][m]["of"] == 2
    # the same model, seed, tokenizer, budget and held-out set; only the data settings differ
    recipes = {a: read_json(out / "arms" / f"{a}.recipe.json") for a in arms}
    for a, r in recipes.items():
        assert shared_settings(r) == shared_settings(recipes["raw"]), a
    assert recipes["raw"]["corpus"] != recipes["hare"]["corpus"]
    for a in arms:
        m = read_json(out / "arms" / a / "train" / "manifest.json")
        assert m["config"]["model"] == read_json(out / "arms" / "raw" / "train" / "manifest.json")["config"]["model"]
        tok = read_json(out / "arms" / a / "tokenize" / "manifest.json")
        assert tok["config"]["tokenizer"]["path"] == str(out / "tokenizer")
        assert arms[a]["tokens"] == 12 * 4 * 64
        assert [p["step"] for p in arms[a]["curve"]] == [0, 4, 8, 12]
    # the untrained model scores the same in every arm, seed by seed: one model, one held-out set
    for k in range(2):
        assert len({arms[a]["runs"][k]["curve"][0]["bits_per_byte"] for a in arms}) == 1
        assert len({arms[a]["runs"][k]["curve"][0][task] for a in arms}) == 1
    # the raw arm trains on the noisy input, the others on less
    assert arms["raw"]["docs"] > arms["clean"]["docs"]
    assert arms["raw"]["ratio"] == pytest.approx(1.0)
    for a in arms.values():
        assert a["ratio"] is None or a["ratio"] > 0
    held = list(read_jsonl(out / "data" / "heldout.jsonl"))
    raw = [r for r in read_jsonl(out / "data" / "raw" / "reviews.jsonl")]
    assert len(held) == 16 and not {h["id"] for h in held} & {r["id"].split("#")[0] for r in raw}
    noise = res["data"]["sources"]["reviews"]
    assert noise["exact_duplicate"] > 0 and noise["near_duplicate"] > 0 and noise["spam"] > 0
    assert (out / "loss_vs_tokens.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "fig.png").exists()
    html = (out / "report.html").read_text()
    assert "<svg" in html and "raw" in html and "hare" in html
    printed = capsys.readouterr().out
    assert "| raw |" in printed and "heldout-ending bits/byte" in printed and "smoke test" in printed
    # a second run reuses every finished step and gives the same study
    assert main(args) == 0
    again = read_json(out / "study.json")
    assert [a["curve"] for a in again["arms"]] == [a["curve"] for a in res["arms"]]
    assert [a["runs"] for a in again["arms"]] == [a["runs"] for a in res["arms"]]
    log = (out / "arms" / "hare" / "run.log").read_text()
    assert log.count("step train: unchanged") >= 1


def test_noise_is_deterministic_and_counted(reviews):
    docs = [{"id": str(i), "text": t} for i, t in enumerate(reviews[:100])]
    a, ca = add_noise(docs, Noise(), seed=3, items=["What is the capital of France?\nParis"])
    b, cb = add_noise(docs, Noise(), seed=3, items=["What is the capital of France?\nParis"])
    assert a == b and ca == cb
    c, _ = add_noise(docs, Noise(), seed=4)
    assert c != a
    assert ca["clean_docs"] == 100 and ca["raw_docs"] == len(a) > 100
    assert ca["benchmark_item"] == 1 and sum("capital of France" in d["text"] for d in a) >= 1
    kinds = {k for d in a for k in d["noise"]}
    assert {"exact_duplicate", "near_duplicate", "boilerplate", "foreign_lines", "foreign_page", "spam"} <= kinds
    originals = {d["text"] for d in docs}
    assert all(d["text"] in originals for d in a if not d["noise"])


def test_interpolated_tokens_to_reach_a_target():
    curve = [{"tokens": 0, "bits_per_byte": 5.0}, {"tokens": 100, "bits_per_byte": 3.0},
             {"tokens": 200, "bits_per_byte": 2.0}]
    assert interpolate_tokens(curve, 2.5) == pytest.approx(150)
    assert interpolate_tokens(curve, 3.0) == pytest.approx(100)
    assert interpolate_tokens(curve, 1.0) is None
    assert interpolate_tokens(curve, 6.0) == 0


@pytest.mark.slow
def test_synthetic_arms_train_d1_then_the_synthetic_parts(tmp_path, smollm2, shared_data):
    """With a teacher (the packaged SmolLM2), the hare-d2 and hare-d2-d3 arms train in two stages,
    D2 generated once."""
    recipe = study_recipe(tmp_path)
    r = yaml.safe_load(recipe.read_text())
    r["synth"] = {"enabled": True, "teacher": {"local": str(smollm2), "batch_size": 8},
                  "d2": {"docs_per_topic": 2, "seed_chars": 300, "max_tokens": 64, "temperature": 0.0},
                  "d3": {"tasks": [], "datasets": [{"name": "dolly", "limit": 40,
                                                    "path": str(shared_data / "dolly" / "dolly-15k-head.jsonl")}]}}
    recipe.write_text(yaml.safe_dump(r))
    out = tmp_path / "study"
    assert main(["study", str(recipe), "--out", str(out), "--arms", "raw,hare-d2,hare-d2-d3", "--eval-points", "2",
                 "--heldout-docs", "10", "--eval-docs", "4"]) == 0
    res = read_json(out / "study.json")
    assert [a["arm"] for a in res["arms"]] == ["raw", "hare-d2", "hare-d2-d3"]
    recipes = {a: read_json(out / "arms" / f"{a}.recipe.json") for a in ("raw", "hare-d2", "hare-d2-d3")}
    for a, rec in recipes.items():
        assert shared_settings(rec) == shared_settings(recipes["raw"]), a
    assert recipes["raw"]["train"]["stages"] == [] and not recipes["raw"]["synth"]["enabled"]
    # no stages in the recipe: D1 for half of the 12 x 4 x 64 tokens, then the paper's weights
    assert recipes["hare-d2-d3"]["train"]["stages"] == [
        {"name": "stage1", "tokens": 1536, "weights": {"d1": 1.0}},
        {"name": "stage2", "tokens": None, "weights": {"d1": 46.5, "d2": 13.63, "d3": 39.87}}]
    assert recipes["hare-d2"]["train"]["stages"][1]["weights"] == {"d1": 46.5, "d2": 13.63}
    # one request cache: the second synthetic arm sends no D2 request
    d2 = {a: read_json(out / "arms" / a / "d2" / "stats.json") for a in ("hare-d2", "hare-d2-d3")}
    assert d2["hare-d2"]["usage"]["sent"] == d2["hare-d2"]["requests"] > 0
    assert d2["hare-d2-d3"]["usage"]["sent"] == 0
    d3 = {a: read_json(out / "arms" / a / "d3" / "stats.json") for a in ("hare-d2", "hare-d2-d3")}
    assert d3["hare-d2"]["samples"] == 0 and d3["hare-d2-d3"]["samples"] > 0
    # the second stage reads the synthetic parts
    for arm, parts in (("hare-d2", {"d1", "d2"}), ("hare-d2-d3", {"d1", "d2", "d3"})):
        steps = list(read_jsonl(out / "arms" / arm / "train" / BATCHES))
        assert {s["stage"] for s in steps[:6]} == {"stage1"} and {s["stage"] for s in steps[6:]} == {"stage2"}
        assert set().union(*(s["parts"] for s in steps[:6])) == {"d1"}
        assert set().union(*(s["parts"] for s in steps[6:])) == parts, arm
    for a in res["arms"]:
        assert a["tokens"] == 12 * 4 * 64


def test_an_arm_whose_synthetic_part_curation_emptied_is_reported_not_trained(tmp_path):
    from hare.study.outputs import markdown, write_outputs
    from hare.study.run import ArmResult, StudyResult

    curve = [{"step": 0, "tokens": 0, "bits_per_byte": 5.0, "loss": 3.0},
             {"step": 4, "tokens": 1024, "bits_per_byte": 4.0, "loss": 2.5}]
    raw = ArmResult(arm="raw", description="raw", docs=10, chars=1000, tokens=1024, curve=curve,
                    final_bits_per_byte=4.0, tokens_to_baseline=1024.0, ratio=1.0, seconds=1.0)
    why = "curation kept no d2 document (8 generated; removed: clean_non_english 8)"
    skipped = ArmResult(arm="hare-d2", description="d2", docs=0, chars=0, tokens=0, curve=[], final_bits_per_byte=None,
                        tokens_to_baseline=None, ratio=None, skipped=why, seconds=1.0,
                        synth={"d2": {"generated": 8, "kept": 0, "removed": {"clean_non_english": 8}}})
    result = StudyResult(recipe="r", baseline="raw", data={"heldout": 1, "heldout_chars": 10, "heldout_copies_removed": 0, "sources": {}},
                         arms=[raw, skipped], seconds=2.0)
    table = markdown(result)
    assert f"| hare-d2 | not trained: {why} |" in table and "| raw | 10 |" in table
    write_outputs(result, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "Synthetic parts" in html and "clean_non_english=8" in html
    assert (tmp_path / "loss_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"


def test_the_token_budget_counts_every_process(monkeypatch):
    """Under torchrun each step trains micro_batch x seq_len x accumulation tokens in every process."""
    from hare.recipe import load_recipe
    from hare.study.arms import load_arms
    from hare.study.run import StudyConfig, synth_stages, train_steps

    recipe = load_recipe(None)
    per_process = recipe.pack.seq_len * recipe.train.micro_batch_size * recipe.train.grad_accum
    cfg = StudyConfig(tokens=per_process * 40)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert train_steps(recipe, cfg) == 40
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert train_steps(recipe, cfg) == 10
    stages = synth_stages(recipe.model_copy(update={"train": recipe.train.model_copy(update={"stages": []})}),
                          load_arms()["hare-d2"], 10)
    assert stages[0]["tokens"] == per_process * 40 // 2  # half the budget of all four processes
