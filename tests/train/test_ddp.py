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


@pytest.fixture(scope="module")
def tiny_teacher_dir(smollm2, tmp_path_factory):
    from hare.synth.teacher import tiny_teacher

    return tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny", tokenizer_from=smollm2)


def kd_recipe(folder, teacher, parallel="ddp"):
    import yaml

    path = review_recipe(folder, "kd", {"max_steps": 6, "micro_batch_size": 2, "batch_tokens": 256,
                                        "warmup_steps": 2, "log_every": 1, "checkpoint_every": 3, "threads": 1,
                                        "device": "cpu", "parallel": parallel,
                                        "distill": {"local": str(teacher), "top_k": 8,
                                                    "ddk": {"every": 2, "heldout_windows": 2}}})
    r = yaml.safe_load(path.read_text())
    r["sources"] = [{"name": "a", "kind": "jsonl", "path": "reviews.jsonl", "limit": 12},
                    {"name": "b", "kind": "jsonl", "path": "reviews.jsonl", "limit": 24, "part": "d1b"}]
    r["tokenizer"] = {"path": str(teacher)}
    r["corpus"]["dedup"] = "none"
    path.write_text(yaml.safe_dump(r))
    return path


@pytest.fixture(scope="module")
def kd_one_process(tmp_path_factory, tiny_teacher_dir):
    tmp = tmp_path_factory.mktemp("kd-one")
    assert main(["train", str(kd_recipe(tmp, tiny_teacher_dir)), "--out-dir", str(tmp / "runs")]) == 0
    return tmp / "runs" / "kd"


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_distillation_under_torchrun_matches_one_process(tmp_path, tiny_teacher_dir, kd_one_process, parallel):
    """train.distill (cached top-k, and DDK over two parts) under DDP and FSDP: the same losses,
    weights and mixture as one process with the same global batch."""
    path = kd_recipe(tmp_path, tiny_teacher_dir, parallel)
    two = tmp_path / "two"
    assert main(["teacher", str(path), "--out-dir", str(two)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hare", "train", str(path), "--out-dir", str(two)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = metrics(kd_one_process), metrics(two / "kd")
    losses = [m for m in a if "loss" in m]
    assert len(losses) == 6 and [m["loss"] for m in losses] == pytest.approx(
        [m["loss"] for m in b if "loss" in m], abs=2e-4)
    moves, moves_b = [m["ddk"] for m in a if "ddk" in m], [m["ddk"] for m in b if "ddk" in m]
    assert len(moves) == len(moves_b) == 3 and list(moves[0]) == ["d1", "d1b"]
    for x, y in zip(moves, moves_b):
        assert {k: v["weight"] for k, v in x.items()} == pytest.approx({k: v["weight"] for k, v in y.items()}, abs=1e-4)
    wa = load_file(kd_one_process / "train" / "model" / "model.safetensors")
    wb = load_file(two / "kd" / "train" / "model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=2e-4)
