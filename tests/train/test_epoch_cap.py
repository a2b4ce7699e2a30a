"""train.max_epochs: no data part is read more than that many epochs over the run; what a capped part
gives up goes to the stage's other parts by weight; recorded in the plan, batches.jsonl and the stats."""

import json
import logging
from types import SimpleNamespace

import pytest
import torch

from hare.report.html import render_template
from hare.train.config import StageConfig, TrainConfig
from hare.train.data import MixtureSampler, load_parts, plan_stages
from hare.train.logs import TrainStats
from hare.train.loop import train
from hare.train.pack import pack_documents, train_tokenizer
from tests.conftest import nltk_texts
from tests.train.test_loop import tiny_config


def sizes(**n):
    """Stand-ins for packed parts: the plan and the sampler's choices need only their sizes."""
    return {k: SimpleNamespace(n=v, seq_len=64) for k, v in n.items()}


def reads(parts, stages, samples_per_step):
    """Samples per part over the run, as the sampler serves them."""
    sampler = MixtureSampler(parts, stages, samples_per_step)
    for _ in range(stages[-1].end):
        sampler.next_step()
    return sampler.cursor


def stage(name, weights, tokens=None):
    return StageConfig(name=name, tokens=tokens, weights=weights)


def test_a_small_part_is_capped_and_the_rest_goes_to_the_others_by_weight(caplog):
    parts = sizes(d1=1000, d2=10, d3=500)
    caplog.set_level(logging.WARNING, "hare.train")
    # 100 steps of 10 samples: d2's 30 % would be 300 samples, 30 epochs of its 10 sequences
    [st] = plan_stages([stage("mix", {"d1": 5, "d2": 3, "d3": 2})], parts, 640, 100, samples_per_step=10,
                       max_epochs=4)
    assert st.asked == pytest.approx({"d1": 0.5, "d2": 0.3, "d3": 0.2})
    assert st.weights["d2"] == pytest.approx(40 / 1000)
    # the 260 samples d2 gives up go to d1 and d3 as 5 : 2
    assert st.weights["d1"] == pytest.approx(0.5 + 0.26 * 5 / 7)
    assert st.weights["d3"] == pytest.approx(0.2 + 0.26 * 2 / 7)
    assert sum(st.weights.values()) == pytest.approx(1)
    assert set(st.capped) == {"d2"} and "30.00 epochs" in st.capped["d2"] and "30.0% -> 4.0%" in st.capped["d2"]
    [msg] = [r.getMessage() for r in caplog.records]
    assert "data part d2 capped" in msg and "10 sequences" in msg and "the rest to d1 (50.0% -> 68.6%)" in msg
    n = reads(parts, [st], 10)
    assert n["d2"] <= 4 * 10 + 1 and sum(n.values()) == 1000
    assert n["d1"] == pytest.approx(1000 * st.weights["d1"], abs=1)


def test_reads_of_earlier_stages_count_against_the_cap():
    parts = sizes(d1=1000, d2=10)
    stages = plan_stages([stage("warm", {"d1": 1, "d2": 1}, tokens=3 * 640), stage("mix", {"d1": 1, "d2": 1})],
                         parts, 640, 10, samples_per_step=10, max_epochs=4)
    warm, mix = stages
    assert warm.weights == {"d1": 0.5, "d2": 0.5} and not warm.capped  # 15 samples of d2: 1.5 epochs
    assert mix.weights["d2"] == pytest.approx(25 / 70) and "1.50 epochs read before" in mix.capped["d2"]
    assert reads(parts, stages, 10)["d2"] <= 40 + 1


def test_a_part_given_more_then_hits_its_own_cap():
    parts = sizes(d1=1000, d2=10, d3=60)
    # d2 is capped at 40 samples; its 260 go to d1 and d3 as 5 : 2, which would take d3 to 274 > 240
    [st] = plan_stages([stage("mix", {"d1": 5, "d2": 3, "d3": 2})], parts, 640, 100, samples_per_step=10,
                       max_epochs=4)
    assert set(st.capped) == {"d2", "d3"}
    assert st.weights == pytest.approx({"d1": 0.72, "d2": 0.04, "d3": 0.24})
    assert "other parts give up would take it past" in st.capped["d3"] and "20.0% -> 24.0%" in st.capped["d3"]
    assert any("the rest to d1 (50.0% -> 72.0%)" in note for note in st.notes)
    n = reads(parts, [st], 10)
    assert n["d2"] <= 41 and n["d3"] <= 241 and sum(n.values()) == 1000


def test_when_every_part_is_capped_the_plan_warns_and_shares_the_overflow_by_weight(caplog):
    parts = sizes(d1=100, d2=10)
    caplog.set_level(logging.WARNING, "hare.train")
    [st] = plan_stages([stage("mix", {"d1": 3, "d2": 1})], parts, 640, 100, samples_per_step=10, max_epochs=4)
    # room for 400 + 40 of the 1000 samples: 560 are read beyond the cap, 3 : 1 as configured
    assert st.weights == pytest.approx({"d1": (400 + 0.75 * 560) / 1000, "d2": (40 + 0.25 * 560) / 1000})
    assert set(st.capped) == {"d1", "d2"}
    msgs = [r.getMessage() for r in caplog.records]
    assert any("the cap cannot hold: 560 of the stage's 1,000 samples (56.0%)" in m for m in msgs)
    assert sum(reads(parts, [st], 10).values()) == 1000


def test_without_a_cap_or_with_nothing_capped_the_plan_is_the_old_one():
    parts = sizes(d1=100, d2=10)
    confs = [stage("warm", {"d1": 1}, tokens=5 * 640), stage("mix", {"d1": 0.3, "d2": 0.7})]
    old = plan_stages(confs, parts, 640, 60)
    assert [(s.name, s.start, s.end, s.weights) for s in old] == [
        ("warm", 0, 5, {"d1": 1.0}), ("mix", 5, 60, {"d1": 0.3 / 1.0, "d2": 0.7})]
    assert plan_stages(confs, parts, 640, 60, samples_per_step=10, max_epochs=None) == old
    big = sizes(d1=10_000, d2=10_000)
    assert plan_stages(confs, big, 640, 60, samples_per_step=10, max_epochs=4) == plan_stages(confs, big, 640, 60)
    # no stages: every part read the same epochs, no cap
    [st] = plan_stages([], parts, 640, 60, samples_per_step=10, max_epochs=1)
    assert st.weights == pytest.approx({"d1": 100 / 110, "d2": 10 / 110}) and not st.capped


def test_the_default_is_4_epochs_and_null_turns_the_cap_off():
    assert TrainConfig().max_epochs == 4
    assert TrainConfig(max_epochs=None).max_epochs is None
    with pytest.raises(ValueError):
        TrainConfig(max_epochs=0)


@pytest.fixture(scope="module")
def big_and_small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parts")
    reviews = [t for _, t in nltk_texts("movie_reviews", 41)]
    tok = train_tokenizer(reviews, 512, tmp / "tokenizer")
    pack_documents(reviews[:40], tok, tmp / "d1", seq_len=64)
    pack_documents(reviews[40:], tok, tmp / "d2", seq_len=64)
    return tmp, tok


def cfg(**kw):
    base = dict(max_steps=8, micro_batch_size=2, grad_accum=2, lr=1e-2, min_lr=1e-3, warmup_steps=2,
                checkpoint_every=2, log_every=1, threads=1, max_epochs=1,
                stages=[{"name": "one", "tokens": 2 * 4 * 64, "weights": {"d1": 1}},
                        {"name": "two", "weights": {"d1": 1, "d2": 3}}])
    return TrainConfig(**{**base, **kw})


def test_a_resumed_run_with_a_cap_reads_the_batches_of_an_uninterrupted_one(big_and_small, tmp_path):
    folder, tok = big_and_small
    conf = tiny_config(len(tok))
    n2 = load_parts(folder, 0)["d2"].n
    assert n2 < 0.75 * 6 * 4  # stage two's 24 samples would read d2 more than once: capped
    full = train(conf, load_parts(folder, 0), cfg(), tmp_path / "a", seed=0)
    train(conf, load_parts(folder, 0), cfg(), tmp_path / "b", seed=0, stop_after=5)
    resumed = train(conf, load_parts(folder, 0), cfg(), tmp_path / "b", seed=0, resume=True)
    ba = (tmp_path / "a" / "batches.jsonl").read_text()
    assert ba == (tmp_path / "b" / "batches.jsonl").read_text()
    for k, v in full["model"].state_dict().items():
        torch.testing.assert_close(v, resumed["model"].state_dict()[k], rtol=0, atol=1e-6)
    recs = [json.loads(line) for line in ba.splitlines()]
    assert recs[0]["weights"] == {"d1": 1.0} and "capped" not in recs[0]
    assert recs[2]["stage"] == "two" and set(recs[2]["capped"]) == {"d2"}
    assert recs[2]["weights"]["d2"] == pytest.approx(n2 / 24)
    assert all("weights" not in r and "capped" not in r for i, r in enumerate(recs) if i not in (0, 2))
    read2 = sum(b - a for r in recs for p, (a, b) in r["parts"].items() if p == "d2")
    assert read2 <= n2 + 1
    # the stats: per part, sequences, samples read and epochs; the cap's message
    assert full["parts"]["d2"] == {"sequences": n2, "samples_read": read2, "epochs": round(read2 / n2, 3)}
    assert sum(p["samples_read"] for p in full["parts"].values()) == 8 * 4
    assert len(full["capped"]) == 1 and "data part d2 capped" in full["capped"][0]
    assert resumed["parts"] == full["parts"]


def test_the_report_shows_the_reads_and_the_caps():
    stats = TrainStats(step=8, final_loss=2.0, params=1000, tokens=2048, flops_per_token=1.0, processes=1,
                       sequences=110, epochs=0.3,
                       parts={"d1": {"sequences": 100, "samples_read": 20, "epochs": 0.2},
                              "d2": {"sequences": 10, "samples_read": 12, "epochs": 1.2}},
                       capped=["train.stages[1] (two): data part d2 capped: ..."])
    back = TrainStats.model_validate(stats.dump())
    assert back == stats
    html = render_template("train.html.j2", stats=back, data={"metrics": [], "heldout": []})
    assert "<td>d2</td><td class='n'>10</td><td class='n'>12</td><td class='n'>1.2000</td>" in html
    assert "data part d2 capped" in html
    old = TrainStats(step=8, final_loss=2.0, params=1000, tokens=2048, flops_per_token=1.0, processes=1,
                     sequences=110, epochs=0.3)  # a stats.json written before the cap
    assert "samples read" not in render_template("train.html.j2", stats=old, data={"metrics": [], "heldout": []})
