"""Settings that cannot change a result keep the work: a killed train step restarted with other logging,
checkpoint cadence and thread count resumes to the weights of an uninterrupted run; a longer run of a
wsd schedule continues from the checkpoint at the start of its decay; a cosine schedule says why it
cannot and starts over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hare.cli import main
from hare.core.io import read_json, read_jsonl
from tests.conftest import ROOT
from tests.train.conftest import review_recipe


def write_recipe(folder: Path, **train) -> Path:
    return review_recipe(folder, "r", {"max_steps": 16, "micro_batch_size": 4, "grad_accum": 1, "warmup_steps": 2,
                                       "log_every": 1, "checkpoint_every": 5, "keep_checkpoints": 1, "threads": 1,
                                       "device": "cpu", **train})


def weights(run: Path) -> dict:
    return load_file(run / "train" / "model" / "model.safetensors")


def assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol)


def train(folder: Path, out: str = "runs", **settings) -> Path:
    assert main(["train", str(write_recipe(folder, **settings)), "--out-dir", str(folder / out)]) == 0
    return folder / out / "r"


def test_killed_training_resumes_under_other_execution_settings(tmp_path):
    straight = train(tmp_path / "a", max_steps=60, checkpoint_every=5, keep_checkpoints=100)
    folder = tmp_path / "b"
    folder.mkdir()
    recipe = write_recipe(folder, max_steps=60, checkpoint_every=5, keep_checkpoints=100)
    assert main(["tokenize", str(recipe), "--out-dir", str(folder / "runs")]) == 0
    ckpts = folder / "runs" / "r" / "train" / "checkpoints"
    cmd = [sys.executable, "-m", "hare", "train", str(recipe), "--out-dir", str(folder / "runs")]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    while len(list(ckpts.glob("step-*.pt"))) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ckpts.glob("step-*.pt")}
    assert kept and "step-000060.pt" not in kept

    # other logging, checkpoint cadence, thread count and retention: none of them changes the weights
    recipe = write_recipe(folder, max_steps=60, checkpoint_every=7, keep_checkpoints=99, log_every=3, threads=2)
    assert main(["train", str(recipe), "--out-dir", str(folder / "runs")]) == 0
    log = (folder / "runs" / "r" / "train" / "log.txt").read_text()
    assert f"resumed from {ckpts / max(kept)}" in log
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ckpts.glob("step-*.pt")
            if p.name in kept} == kept  # not deleted, not written again
    assert_same_weights(weights(folder / "runs" / "r"), weights(straight))
    manifest = read_json(folder / "runs" / "r" / "train" / "manifest.json")
    assert manifest["execution"]["train.threads"] == 2 and "threads" not in manifest["config"]["train"]


def test_longer_wsd_run_continues_from_the_start_of_the_decay(tmp_path):
    run = train(tmp_path, schedule="wsd", decay_fraction=0.25)  # 16 steps, the decay starts at step 12
    names = sorted(p.name for p in (run / "train" / "checkpoints").glob("*.pt"))
    assert names == ["step-000012.pt", "step-000016.pt"]  # the last one, and the decay's start (kept)
    run = train(tmp_path, schedule="wsd", decay_fraction=0.25, max_steps=24)
    log = (run / "train" / "log.txt").read_text()
    assert "continuing from step-000012.pt" in log and f"resumed from {run / 'train' / 'checkpoints'}" in log
    assert [m["step"] for m in read_jsonl(run / "train" / "metrics.jsonl")] == list(range(1, 25))
    straight = train(tmp_path / "straight", schedule="wsd", decay_fraction=0.25, max_steps=24)
    assert_same_weights(weights(run), weights(straight))
    assert read_json(run / "train" / "stats.json")["step"] == 24


def test_longer_cosine_run_says_why_it_starts_over(tmp_path):
    train(tmp_path)
    run = train(tmp_path, max_steps=24)
    log = (run / "train" / "log.txt").read_text()
    assert "no checkpoint can be continued, training starts over" in log and "resumed from" not in log
    assert "learning rates that train.max_steps 24 changes (schedule cosine" in log
    straight = train(tmp_path / "straight", max_steps=24)
    assert_same_weights(weights(run), weights(straight))


@pytest.mark.parametrize("key,value", [("lr", 1e-3), ("micro_batch_size", 2)])
def test_other_changes_still_start_the_step_afresh(tmp_path, key, value):
    run = train(tmp_path)
    (run / "train" / "checkpoints" / "mark").touch()
    run = train(tmp_path, **{key: value})
    assert "resumed from" not in (run / "train" / "log.txt").read_text()
    assert not (run / "train" / "checkpoints" / "mark").exists()  # the folder was emptied first
