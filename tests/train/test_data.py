"""Data parts, stages and mixture weights, measured from the recorded batches."""

import json

import pytest
import torch

from hare.train.config import StageConfig, TrainConfig
from hare.train.data import MixtureSampler, load_parts, plan_stages
from hare.train.loop import train
from hare.train.pack import pack_documents, train_tokenizer
from tests.conftest import nltk_texts
from tests.train.test_loop import tiny_config


@pytest.fixture(scope="module")
def two_parts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parts")
    reviews = [t for _, t in nltk_texts("movie_reviews", 120)]
    speeches = [t for _, t in nltk_texts("state_union", 20)]
    tok = train_tokenizer(reviews + speeches, 512, tmp / "tokenizer")
    pack_documents(reviews, tok, tmp / "d1", seq_len=64)
    pack_documents(speeches, tok, tmp / "d2", seq_len=64)
    return tmp, tok


def test_stages_and_weights_are_honoured(two_parts):
    folder, _ = two_parts
    parts = load_parts(folder, seed=0)
    assert set(parts) == {"d1", "d2"}
    stages = plan_stages([StageConfig(name="warm", tokens=10 * 16 * 64, weights={"d1": 1}),
                          StageConfig(name="mix", weights={"d1": 0.3, "d2": 0.7})], parts, 16 * 64, 60)
    assert [(s.name, s.start, s.end) for s in stages] == [("warm", 0, 10), ("mix", 10, 60)]
    sampler = MixtureSampler(parts, stages, 16)
    records = [MixtureSampler.record(s + 1, *sampler.next_step()) for s in range(60)]
    warm = [r for r in records if r["stage"] == "warm"]
    mix = [r for r in records if r["stage"] == "mix"]
    assert len(warm) == 10 and all(set(r["parts"]) == {"d1"} for r in warm)
    n = {p: sum(b - a for r in mix for q, (a, b) in r["parts"].items() if q == p) for p in ("d1", "d2")}
    assert n["d1"] + n["d2"] == 50 * 16
    assert abs(n["d2"] / 800 - 0.7) < 0.01 and abs(n["d1"] / 800 - 0.3) < 0.01
    # each part reads its windows in order, continuing across stages, never twice within an epoch
    d1 = [(a, b) for r in records for q, (a, b) in r["parts"].items() if q == "d1"]
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(d1, d1[1:])) and d1[0][0] == 0


def test_default_stage_mixes_parts_by_size(two_parts):
    folder, _ = two_parts
    parts = load_parts(folder, seed=0)
    [stage] = plan_stages([], parts, 64, 10)
    total = parts["d1"].n + parts["d2"].n
    assert stage.weights["d1"] == pytest.approx(parts["d1"].n / total)


def cfg(**kw):
    base = dict(max_steps=6, micro_batch_size=2, grad_accum=2, lr=1e-2, min_lr=1e-3, warmup_steps=2,
                checkpoint_every=2, log_every=1, threads=1,
                stages=[{"name": "one", "tokens": 2 * 4 * 64, "weights": {"d1": 1}},
                        {"name": "two", "weights": {"d1": 1, "d2": 1}}])
    return TrainConfig(**{**base, **kw})


def test_resume_with_stages_sees_the_same_batches(two_parts, tmp_path):
    folder, tok = two_parts
    conf = tiny_config(len(tok))
    full = train(conf, load_parts(folder, 0), cfg(), tmp_path / "a", seed=0)["model"]
    train(conf, load_parts(folder, 0), cfg(), tmp_path / "b", seed=0, stop_after=3)
    resumed = train(conf, load_parts(folder, 0), cfg(), tmp_path / "b", seed=0, resume=True)["model"]
    ba = (tmp_path / "a" / "batches.jsonl").read_text()
    bb = (tmp_path / "b" / "batches.jsonl").read_text()
    assert ba == bb
    recs = [json.loads(l) for l in ba.splitlines()]
    assert [r["stage"] for r in recs] == ["one", "one", "two", "two", "two", "two"]
    assert recs[2]["parts"] == {"d1": [8, 10], "d2": [0, 2]}
    for k, v in full.state_dict().items():
        torch.testing.assert_close(v, resumed.state_dict()[k], rtol=0, atol=1e-6)
