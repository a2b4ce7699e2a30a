"""torchrun with 2 processes (gloo on CPU) gives the losses of 1 process with the same global batch."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from hare.cli import main
from hare.train.loop import read_checkpoint
from tests.conftest import ROOT
from tests.train.conftest import review_recipe


def recipe(tmp_path, parallel="ddp"):
    return review_recipe(tmp_path, "ddp", {"max_steps": 8, "micro_batch_size": 2, "batch_tokens": 256,
                                           "warmup_steps": 2, "log_every": 1, "checkpoint_every": 4, "threads": 1,
                                           "device": "cpu", "parallel": parallel})


def metrics(run):
    return [json.loads(l) for l in (run / "train" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    path = recipe(tmp)
    assert main(["train", str(path), "--out-dir", str(tmp / "runs")]) == 0
    return tmp / "runs" / "ddp"


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one_process(tmp_path, one_process, parallel):
    path = recipe(tmp_path, parallel)
    two = tmp_path / "two"
    assert main(["teacher", str(path), "--out-dir", str(two)]) == 0  # inputs prepared by one process
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hare", "train", str(path), "--out-dir", str(two)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = metrics(one_process), metrics(two / "ddp")
    assert [m["step"] for m in a] == [m["step"] for m in b] == list(range(1, 9))
    assert all(m["tokens"] == 256 * m["step"] for m in a + b)
    assert [m["loss"] for m in a] == pytest.approx([m["loss"] for m in b], abs=2e-4)
    log = (two / "ddp" / "train" / "log.txt").read_text()
    assert "(2 x 1 x 2 processes x 64)" in log
    wa = load_file(one_process / "train" / "model" / "model.safetensors")
    wb = load_file(two / "ddp" / "train" / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=2e-4)
    ckpt = read_checkpoint(sorted((two / "ddp" / "train" / "checkpoints").glob("*.pt"))[-1])
    assert ckpt["parallel"] == parallel and ckpt["data"]["step"] == 8


def test_torchrun_refuses_steps_other_than_train(tmp_path):
    path = recipe(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hare", "run", str(path), "--out-dir", str(tmp_path / "x")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode != 0 and "under torchrun, run only 'hare train'" in out.stderr


def test_fsdp_resumes_from_a_full_checkpoint(tmp_path, one_process):
    """A run that died after step 4 (its later files gone) resumes under FSDP to the same weights."""
    path = recipe(tmp_path, "fsdp")
    two = tmp_path / "two"
    assert main(["teacher", str(path), "--out-dir", str(two)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hare", "train", str(path), "--out-dir", str(two)]
    assert subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300).returncode == 0
    train_dir = two / "ddp" / "train"
    manifest = json.loads((train_dir / "manifest.json").read_text())
    (train_dir / "manifest.json").unlink()
    (train_dir / "checkpoints" / "step-000008.pt").unlink()
    import shutil

    shutil.rmtree(train_dir / "model")
    (train_dir / ".pending.json").write_text(json.dumps({"fingerprint": manifest["fingerprint"]}))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in (train_dir / "log.txt").read_text()
    wa = load_file(one_process / "train" / "model" / "model.safetensors")
    wb = load_file(train_dir / "model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=2e-4)
