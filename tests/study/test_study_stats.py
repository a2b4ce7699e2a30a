"""The study's numbers: intervals over seeds, paired verdicts, data-efficiency ratios, task items."""

from __future__ import annotations

import math

import pytest

from hare.core.evalsets.base import Item
from hare.study.run import compare, mean_curve, tier_of
from hare.study.stats import interval, tokens_to_reach, verdict
from hare.study.tasks import (ENDING_TASK, cloze_item, contaminated, ending_items, ending_of,
                              split_benchmark_items)


def test_interval_is_the_student_t_interval_of_the_mean():
    iv = interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) x s / sqrt(n)
    assert iv["mean"] == pytest.approx(2.0)
    assert iv["lo"] == pytest.approx(2 - half) and iv["hi"] == pytest.approx(2 + half)
    one = interval([1.5])
    assert one["mean"] == 1.5 and one["lo"] is None and one["hi"] is None


def test_a_difference_is_called_only_when_its_interval_excludes_zero():
    assert verdict(interval([-0.10, -0.11, -0.09]), lower_is_better=True) == "better"
    assert verdict(interval([-0.10, -0.11, -0.09]), lower_is_better=False) == "worse"
    assert verdict(interval([-0.10, 0.05, -0.02]), lower_is_better=True) == "not distinguishable"
    assert verdict(interval([-0.1]), lower_is_better=True) == "one seed: no interval"


def test_tokens_to_reach_a_target_either_way():
    curve = [{"tokens": 0, "acc": 0.25}, {"tokens": 100, "acc": 0.35}, {"tokens": 200, "acc": 0.45}]
    assert tokens_to_reach(curve, "acc", 0.40, lower_is_better=False) == pytest.approx(150)
    assert tokens_to_reach(curve, "acc", 0.50, lower_is_better=False) is None


def _run(seed, values, tokens=(0, 100, 200)):
    return {"seed": seed, "curve": [{"step": i, "tokens": t, "bits_per_byte": v} for i, (t, v) in
                                    enumerate(zip(tokens, values))]}


def test_compare_pairs_seeds_and_gives_ratios_with_intervals():
    base_runs = [_run(1, [5.0, 3.0, 2.0]), _run(2, [5.0, 3.2, 2.2])]
    arm_runs = [_run(1, [5.0, 2.0, 1.5]), _run(2, [5.0, 2.2, 1.68])]
    slow_runs = [_run(1, [5.0, 4.0, 3.0]), _run(2, [5.0, 3.1, 2.1])]
    rows = []
    for name, runs in (("raw", base_runs), ("hare", arm_runs), ("slow", slow_runs)):
        curve = mean_curve([r["curve"] for r in runs])
        rows.append({"arm": name, "tokens": 200, "runs": runs, "curve": curve,
                     "final": {"bits_per_byte": interval([r["curve"][-1]["bits_per_byte"] for r in runs])}})
    compare(rows, "raw")
    raw, hare, slow = rows
    assert raw["ratios"]["bits_per_byte"]["mean"] == pytest.approx(1.0)
    # each seed of hare reaches its own seed's raw final value (2.0, 2.2) at 100 of raw's 200 tokens
    assert hare["ratios"]["bits_per_byte"]["values"] == pytest.approx([0.5, 0.5])
    assert hare["vs_baseline"]["bits_per_byte"]["values"] == pytest.approx([-0.5, -0.52])
    assert hare["vs_baseline"]["bits_per_byte"]["verdict"] == "better"
    # one seed of the slow arm never reaches the baseline: no interval, and it is said
    assert slow["ratios"]["bits_per_byte"]["mean"] is None
    assert slow["ratios"]["bits_per_byte"]["reached"] == 1 and slow["ratios"]["bits_per_byte"]["of"] == 2
    assert slow["vs_baseline"]["bits_per_byte"]["verdict"] == "not distinguishable"
    # seed 2 of the slow arm reaches raw's 2.2 between (100, 3.1) and (200, 2.1)
    assert slow["ratios"]["bits_per_byte"]["values"] == pytest.approx([(100 + 0.9 / 1.0 * 100) / 200])
    # the mean curve carries the interval of every point
    assert hare["curve"][1]["bits_per_byte"] == pytest.approx(2.1)
    assert hare["curve"][1]["bits_per_byte_lo"] < 2.1 < hare["curve"][1]["bits_per_byte_hi"]


def test_the_tier_says_what_a_budget_can_tell():
    assert tier_of(0.67, 1)[0] == "smoke" and "0.67 tokens per non-embedding parameter" in tier_of(0.67, 1)[1]
    assert tier_of(12.0, 3)[0] == "credible"
    assert tier_of(12.0, 2)[0] == "smoke"


def test_heldout_endings_are_real_endings_among_other_documents_endings(reviews):
    docs = [{"id": str(i), "text": t} for i, t in enumerate(reviews[:40])]
    items = ending_items(docs, seed=3)
    assert len(items) >= 35 and items == ending_items(docs, seed=3)
    endings = {d["id"]: ending_of(d["text"]) for d in docs}
    for it in items:
        assert it.task == ENDING_TASK and len(set(it.choices)) == 4
        start, ending = endings[it.id]
        text = next(d["text"] for d in docs if d["id"] == it.id)
        assert it.choices[it.gold].strip() == ending
        assert text[:start].rstrip().endswith(it.context) and len(it.context) >= 150
        others = {e for i, (_, e) in ((i, endings[i]) for i in endings if endings[i]) if i != it.id}
        assert all(c.strip() in others for k, c in enumerate(it.choices) if k != it.gold)
    # the gold position is spread over the choices
    assert len({it.gold for it in items}) == 4


def test_benchmark_items_split_into_scored_and_planted_and_copies_are_found():
    def item(i, choices=True):
        return Item("arc_challenge", "test", str(i), f"Which gas do plants take in number {i} during the day?",
                    ["carbon dioxide", "oxygen", "helium", "neon"] if choices else [], 0 if choices else None)
    items = {"arc_challenge": [item(i) for i in range(30)] + [item(100 + i, False) for i in range(5)]}
    scored, planted = split_benchmark_items(items, seed=1, task_items=10, planted=8)
    assert len(scored) == 10 and len(planted) == 8
    assert not {it.id for it in scored} & {it.id for it in planted}
    assert (scored, planted) == split_benchmark_items(items, seed=1, task_items=10, planted=8)
    c = cloze_item(scored[0], "arc_challenge")
    assert c.context.startswith("Question: Which gas") and c.context.endswith("\nAnswer:")
    assert c.choices[c.gold] == " carbon dioxide"
    docs = [{"id": "a", "text": "Some page. " + scored[0].text() + " More text."}, {"id": "b", "text": "Plain."}]
    assert contaminated(docs, scored[:1]) == {"a"}
