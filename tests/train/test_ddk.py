"""DDK's update rule (hare.train.ddk), and the settings around distillation: the teacher step's
fingerprint, the arms that may distill, sources split into parts."""

import pytest

from hare.recipe import Recipe
from hare.train.ddk import bounded, ddk_update
from hare.train.steps import TEACHER


def test_the_weights_move_toward_the_largest_student_teacher_gap_smoothly_and_bounded():
    base = {"a": 0.5, "b": 0.3, "c": 0.2}
    student = {"a": 3.0, "b": 3.0, "c": 6.0}
    teacher = {"a": 3.0, "b": 3.0, "c": 3.0}  # the student lags on c: ratio 2 against 1
    w = dict(base)
    seen = []
    for _ in range(6):
        w = ddk_update(w, base, student, teacher, smoothing=0.5, temperature=1.0, max_factor=2.0)
        seen.append(w["c"])
        assert sum(w.values()) == pytest.approx(1)
        assert all(base[k] / 2 - 1e-9 <= w[k] <= base[k] * 2 + 1e-9 for k in w)
    assert seen == sorted(seen) and seen[0] > base["c"]
    assert seen[-1] == pytest.approx(0.4, abs=1e-6)  # held at twice its planned weight
    # no gap anywhere: the target is the plan, and the weights go back to it
    back = ddk_update(w, base, teacher, teacher, smoothing=1.0, temperature=1.0, max_factor=2.0)
    assert back == pytest.approx(base)


def test_smoothing_is_the_fraction_of_the_way_moved():
    base = {"a": 0.5, "b": 0.5}
    w = ddk_update(base, base, {"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, smoothing=0.25, temperature=1.0,
                   max_factor=10)
    import math

    target_a = math.e ** 2 / (math.e ** 2 + math.e)
    assert w["a"] == pytest.approx(0.5 + 0.25 * (target_a - 0.5))


def test_bounded_renormalizes_within_the_bounds():
    w = bounded({"a": 0.9, "b": 0.05, "c": 0.05}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 1.5)
    assert sum(w.values()) == pytest.approx(1) and w["a"] == pytest.approx(0.5)


def recipe(**train):
    return Recipe.model_validate({"name": "r", "sources": [{"name": "s", "kind": "jsonl", "path": "x.jsonl"}],
                                  "train": train})


def test_the_teacher_step_is_fingerprinted_by_what_its_files_depend_on():
    kd = {"packaged": "smollm2", "top_k": 32}
    a = TEACHER.config(recipe(distill={**kd, "alpha": 0.5}))
    assert a == TEACHER.config(recipe(distill={**kd, "alpha": 0.9, "ddk": {"every": 5}, "batch_windows": 16}))
    assert a != TEACHER.config(recipe(distill={**kd, "top_k": 64}))
    assert a != TEACHER.config(recipe(distill={**kd, "temperature": 2.0}))
    off = TEACHER.config(recipe())
    assert off == TEACHER.config(recipe(distill={**kd, "source": "online"})) != a


def test_distill_needs_exactly_one_teacher():
    with pytest.raises(ValueError, match="local .* or packaged"):
        recipe(distill={"alpha": 0.5})
    with pytest.raises(ValueError, match="one of them"):
        recipe(distill={"packaged": "smollm2", "local": "/tmp/x"})


def test_study_arms_may_set_the_training_signal_and_nothing_else_of_train(tmp_path):
    from hare.study.arms import Arm, load_arms
    from hare.study.run import StudyConfig, arm_recipe

    arms = load_arms(distill=True)
    assert arms["hare+kd"].distills and not arms["hare"].distills
    r = recipe()
    data = {"sources": {"s": {"path": str(tmp_path / "s.jsonl")}}, "heldout_path": str(tmp_path / "h.jsonl")}
    got = arm_recipe(r, "hare+kd+ddk", arms["hare+kd+ddk"], StudyConfig(steps=4), tmp_path, data, tmp_path / "tok")
    assert got.train.distill.packaged == "smollm2" and got.train.distill.ddk.every == 20
    assert got.mix.split_sources and got.train.max_steps == 4
    bad = Arm(description="x", overlay={"train": {"lr": 1.0}})
    with pytest.raises(ValueError, match=r"train\.lr"):
        arm_recipe(r, "bad", bad, StudyConfig(steps=4), tmp_path, data, tmp_path / "tok")
