import json
import platform

import pytest
import torch

from hare.core.io import read_jsonl
from hare.model.model import mistral_config
from hare.train.config import TrainConfig
from hare.train.loop import export_model, lr_at, train
from hare.train.pack import PackedTokens


def tiny_config(vocab):
    return mistral_config("tiny", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                   "num_attention_heads": 2, "num_key_value_heads": 1,
                                   "max_position_embeddings": 64}, vocab_size=vocab)


def cfg(**kw):
    base = dict(max_steps=6, micro_batch_size=2, grad_accum=2, lr=1e-2, min_lr=1e-3, warmup_steps=2,
                checkpoint_every=2, keep_checkpoints=2, log_every=1, threads=1)
    return TrainConfig(**{**base, **kw})


def test_schedule_warmup_then_cosine():
    c = cfg(max_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0) and lr_at(100, c) == pytest.approx(0.1)
    vals = [lr_at(s, c) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_loss_decreases(packed, tmp_path):
    folder, tok, _ = packed
    res = train(tiny_config(len(tok)), PackedTokens(folder, seed=1), cfg(max_steps=30, lr=3e-3, warmup_steps=3),
                tmp_path / "run", seed=1)
    losses = [m["loss"] for m in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < losses[0] - 0.5


def test_interrupted_then_resumed_equals_uninterrupted(packed, tmp_path):
    folder, tok, _ = packed
    conf = tiny_config(len(tok))
    full = train(conf, PackedTokens(folder, seed=3), cfg(), tmp_path / "a", seed=3)["model"]
    part = train(conf, PackedTokens(folder, seed=3), cfg(), tmp_path / "b", seed=3, stop_after=3)
    assert part["step"] == 3  # stopped after step 3; the last checkpoint is step 2
    resumed = train(conf, PackedTokens(folder, seed=3), cfg(), tmp_path / "b", seed=3, resume=True)["model"]
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    steps = [m["step"] for m in read_jsonl(tmp_path / "b" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]
    la = [m["loss"] for m in read_jsonl(tmp_path / "a" / "metrics.jsonl")]
    lb = [m["loss"] for m in read_jsonl(tmp_path / "b" / "metrics.jsonl")]
    assert la == pytest.approx(lb, abs=1e-5)  # the same batches in the same order
    assert len(list((tmp_path / "b" / "checkpoints").glob("step-*.pt"))) == 2  # keep_checkpoints


def test_export_loads_with_auto_classes_and_generates(packed, tmp_path):
    from transformers import AutoModelForCausalLM

    from hare.train.pack import load_tokenizer

    folder, tok, _ = packed
    model = train(tiny_config(len(tok)), PackedTokens(folder, seed=1), cfg(max_steps=2), tmp_path / "r", seed=1)["model"]
    export_model(model, tok, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "mistral"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model", local_files_only=True)
    t = load_tokenizer(tmp_path / "model")
    ids = t("the movie", return_tensors="pt")["input_ids"]
    out = loaded.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 5
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits)


def test_wsd_schedule_holds_then_decays_linearly():
    c = cfg(max_steps=100, warmup_steps=10, lr=1.0, min_lr=0.0, schedule="wsd", decay_fraction=0.2)
    assert lr_at(5, c) == pytest.approx(0.6)
    assert all(lr_at(s, c) == 1.0 for s in range(10, 80))
    assert lr_at(80, c) == pytest.approx(0.95) and lr_at(99, c) == pytest.approx(0.0)


def test_batch_tokens_sets_gradient_accumulation():
    from hare.train.loop import grad_accum_steps

    assert grad_accum_steps(cfg(micro_batch_size=4, batch_tokens=2048), 64, 2) == 4
    assert grad_accum_steps(cfg(micro_batch_size=16, batch_tokens=2 ** 21), 2048, 1) == 64  # the paper's 2M
    with pytest.raises(ValueError, match="not a multiple"):
        grad_accum_steps(cfg(micro_batch_size=3, batch_tokens=1000), 64, 1)


def test_activation_checkpointing_gives_the_same_training(packed, tmp_path):
    folder, tok, _ = packed
    conf = tiny_config(len(tok))
    a = train(conf, PackedTokens(folder, seed=2), cfg(max_steps=3), tmp_path / "a", seed=2)["model"]
    b = train(conf, PackedTokens(folder, seed=2), cfg(max_steps=3, activation_checkpointing=True), tmp_path / "b",
              seed=2)["model"]
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=1e-5)


FAULTS = """
import resource, sys, torch
from hare.train.loop import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
faults = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(2 ** 24)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[15:]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    """A 64 MB buffer freed and allocated again, as the logits are every step, is faulted in only at first.

    The heap settles after a few steps: while small blocks sit above the freed buffer, the next one
    is placed higher up (the last fresh mapping came at step 2 to 8 of 30 in 40 fresh processes), so
    only the second half of 30 steps is counted.
    """
    import subprocess
    import sys

    def faults(mode):  # in a fresh process: the heap's layout decides when it has grown enough
        return int(subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                                  check=True).stdout)

    assert faults("default") >= 15 * 16384  # 64 MB of 4 KB pages, mapped afresh every time
    assert faults("keep") < 16384
