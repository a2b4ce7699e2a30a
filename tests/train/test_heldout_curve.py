"""``train.eval_every``: the held-out curve is written during training, starts at the untrained model,
falls, leaves the weights as they would be without it, and survives a resume unchanged."""

from __future__ import annotations

import torch

from hare.cli import main
from hare.core.io import read_jsonl
from tests.train.test_resume import assert_same_weights, weights, write_recipe


def run(folder, **train):
    recipe = write_recipe(folder, max_steps=12, checkpoint_every=4, keep_checkpoints=10, **train)
    assert main(["train", str(recipe), "--out-dir", str(folder / "runs")]) == 0
    return folder / "runs" / "r"


def test_heldout_curve_during_training(tmp_path):
    plain = run(tmp_path / "plain")
    scored = run(tmp_path / "scored", eval_every=4, eval_max_docs=3)
    curve = list(read_jsonl(scored / "train" / "heldout.jsonl"))
    assert [r["step"] for r in curve] == [0, 4, 8, 12]
    assert [r["tokens"] for r in curve] == [0, 4 * 4 * 64, 8 * 4 * 64, 12 * 4 * 64]
    assert curve[-1]["bits_per_byte"] < curve[0]["bits_per_byte"]
    assert all(r["loss"] > 0 for r in curve)
    # scoring the held-out documents changes nothing of the training itself
    assert_same_weights(weights(plain), weights(scored), atol=0)
    assert not (plain / "train" / "heldout.jsonl").exists()


def test_heldout_curve_of_a_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    straight = run(tmp_path / "a", eval_every=4, eval_max_docs=3)
    from hare.train import loop

    folder = tmp_path / "b"
    folder.mkdir()
    recipe = write_recipe(folder, max_steps=12, checkpoint_every=4, keep_checkpoints=10, eval_every=4, eval_max_docs=3)
    real = loop.train
    monkeypatch.setattr(loop, "train", lambda *a, **k: (real(*a, **{**k, "stop_after": 6}), exit(3))[0])
    try:
        main(["train", str(recipe), "--out-dir", str(folder / "runs")])
    except SystemExit:
        pass
    monkeypatch.setattr(loop, "train", real)
    assert main(["train", str(recipe), "--out-dir", str(folder / "runs")]) == 0
    a = list(read_jsonl(straight / "train" / "heldout.jsonl"))
    b = list(read_jsonl(folder / "runs" / "r" / "train" / "heldout.jsonl"))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    assert_same_weights(weights(straight), weights(folder / "runs" / "r"))
    assert torch.isfinite(torch.tensor([r["bits_per_byte"] for r in b])).all()
