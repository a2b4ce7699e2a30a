"""hare's evaluation backend against lm-eval's own Hugging Face model: the same log-likelihoods and
accuracies on ARC, HellaSwag, MMLU and TruthfulQA items, and bounded memory where HFLM's grows with
the vocabulary."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hare.cli import main
from hare.evals.backend import HareLM, bytes_per_token, shared_prefixes
from hare.evals.tasks import prepare_tasks
from hare.model.loss import linear_log_probs
from tests.conftest import ROOT
from tests.evals.conftest import link_shared, tiny_hf_model

TASKS = ["arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu"]
RUN = ["arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu_anatomy"]


def test_linear_log_probs_equal_log_softmax():
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(37, 16, generator=g), torch.randn(300, 16, generator=g)
    y = torch.randint(0, 300, (37,), generator=g)
    y[:5] = (h[:5] @ w.T).argmax(1)  # some targets are the argmax
    lp, greedy = linear_log_probs(h, w, y, chunk=8)
    full = torch.log_softmax(h @ w.T, -1)
    assert torch.allclose(lp, full.gather(1, y[:, None]).squeeze(1), atol=1e-6)
    assert greedy.tolist() == (full.argmax(1) == y).tolist() and greedy[:5].all()
    capped, _ = linear_log_probs(h, w, y, softcap=2.0)
    ref = torch.log_softmax(2.0 * torch.tanh(h @ w.T / 2.0), -1).gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(capped, ref, atol=1e-6)


@pytest.fixture(scope="module")
def long_model(tmp_path_factory, shared_data) -> Path:
    """A tiny Mistral whose context holds 25 ARC shots whole, so that answer choices share a context."""
    return tiny_hf_model(tmp_path_factory.mktemp("long") / "long-mistral", 4096, seed=1)


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory, shared_data) -> Path:
    out = tmp_path_factory.mktemp("backend-tasks")
    bench = link_shared(out / "bench", shared_data, ["arc", "hellaswag", "mmlu", "truthfulqa"])
    ready, skipped = prepare_tasks(TASKS, bench, out)
    assert not skipped, skipped
    return out / "tasks"


def load_tasks(folder: Path, num_fewshot: int | None = None) -> dict:
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = get_task_dict(RUN, TaskManager(include_path=str(folder), include_defaults=False))
    if num_fewshot is not None:
        for task in tasks.values():
            task.set_config(key="num_fewshot", value=num_fewshot)
    return tasks


@pytest.fixture(scope="module")
def tasks(task_folder) -> dict:
    """lm-eval's tasks on hare's local files, loaded once for the tiny models and both sides."""
    return load_tasks(task_folder)


def evaluate_both(model: Path, tasks: dict, limit: int, **hare_kwargs) -> tuple[dict, dict, HareLM]:
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    def run(lm):
        for task in tasks.values():  # the few-shot samples simple_evaluate would draw, on each side
            task.set_fewshot_seed(seed=1234)
        return evaluate(lm, tasks, limit=limit, log_samples=True, bootstrap_iters=0)

    common = {"pretrained": str(model), "dtype": "float32", "device": "cpu", "batch_size": 4}
    hf = run(HFLM(**common))
    lm = HareLM(**common, **hare_kwargs)
    return hf, run(lm), lm


def assert_same(hf: dict, hare: dict) -> int:
    """Per-request log-likelihoods within 1e-4, the same greedy flags, identical accuracies; returns the count."""
    n = 0
    for task in RUN:
        for key, value in hf["results"][task].items():
            if "," in key and "stderr" not in key:  # accuracies identical; mc2, a probability mass, to 1e-4
                assert hare["results"][task][key] == (pytest.approx(value, abs=1e-4) if "mc2" in task else value)
        for a, b in zip(hf["samples"][task], hare["samples"][task], strict=True):
            assert a["doc_id"] == b["doc_id"] and a["arguments"] == b["arguments"]
            for (la, ga), (lb, gb) in zip([r[0] for r in a["resps"]], [r[0] for r in b["resps"]], strict=True):
                assert lb == pytest.approx(la, abs=1e-4) and ga == gb, (task, a["doc_id"])
                n += 1
    return n


def test_equals_hflm_on_a_tiny_model_with_shared_contexts(long_model, tasks):
    # a small budget: several batches, contexts of different lengths padded together, choices split
    hf, hare, lm = evaluate_both(long_model, tasks, limit=2, max_batch_tokens=5000)
    assert hf["n-shot"]["arc_challenge"] == 25 and hf["n-shot"]["hellaswag"] == 10
    assert lm.max_length == 4096  # no truncation: the choices of an item share its context
    assert assert_same(hf, hare) == 2 * (4 + 4 + 4) + sum(len(s["resps"]) for s in hf["samples"]["truthfulqa_mc2"])


def test_equals_hflm_on_a_hare_model_with_truncated_contexts(hare_model, tasks):
    # hare's export has a 128-token context: every prompt is cut on the left, as HFLM cuts it
    hf, hare, lm = evaluate_both(hare_model, tasks, limit=1, max_batch_tokens=300)
    assert lm.max_length == 128
    assert assert_same(hf, hare) > 15


@pytest.mark.slow
def test_equals_hflm_on_smollm2(smollm2, task_folder):
    """The real model; two shots, so that HFLM's side stays short on a CPU."""
    hf, hare, _ = evaluate_both(smollm2, load_tasks(task_folder, num_fewshot=2), limit=1)
    assert hf["n-shot"]["arc_challenge"] == 2
    assert assert_same(hf, hare) >= 3 * 4


def test_shared_prefixes_are_found_from_the_tokens():
    shots = tuple(range(100, 140))
    a, b, c = shots + (1, 2, 3), shots + (1, 2, 4), shots + (5,)
    other = tuple(range(300, 340)) + (9,)
    # a, b share 42 tokens, c 40 more; the two-token context and the other family share nothing
    runs = shared_prefixes([other, c, (7, 8), b, a], min_length=32)
    assert runs == [(40, [a, b, c]), (0, [(7, 8), other])]
    # a context that is the prefix itself: the prefix stops one token short, so that it has a token to predict from
    assert shared_prefixes([shots, a, b], 32) == [(39, [shots, a, b])]
    # a neighbour joins while that saves tokens: one sharing 33 of the 40 tokens joins three contexts ...
    d, e = shots[:33] + (0, 1), shots[:33] + (0, 2)
    assert shared_prefixes([a, b, c, d, e], 32) == [(33, [d, e, a, b, c])]
    # ... one sharing 40 of 100 tokens does not join five: it starts a run of its own
    long = [tuple(range(100)) + (200 + i,) for i in range(5)]
    f, g = tuple(range(40)) + (999,), tuple(range(40)) + (999, 1)
    assert shared_prefixes(long + [g, f], 32) == [(100, long), (40, [f, g])]
    assert shared_prefixes([a, b], 64) == [(0, [a, b])] and shared_prefixes([], 32) == []


def test_a_shared_few_shot_prefix_scores_as_hflm_scores_it(hf_model, monkeypatch):
    """Questions behind one few-shot prefix (four choices of one to four tokens each), a context that
    is the prefix itself, one that ends inside it, a second family and contexts sharing nothing:
    every request as HFLM scores it, each family's prefix run once."""
    from lm_eval.models.huggingface import HFLM

    common = {"pretrained": str(hf_model), "dtype": "float32", "device": "cpu", "batch_size": 4}
    hf, lm = HFLM(**common), HareLM(**common, max_batch_tokens=900)
    g = torch.Generator().manual_seed(5)

    def ids(n: int) -> list[int]:
        return torch.randint(3, 500, (n,), generator=g).tolist()

    shots, other = ids(200), ids(120)
    reqs = []
    for q, ctx in enumerate([shots + ids(12), shots + ids(30), shots + ids(3), shots, other + ids(9),
                             other + ids(20), ids(150), ids(40)]):
        reqs += [((f"q{q}", str(n)), ctx, ids(n)) for n in (1, 2, 3, 4)]
    reqs += [((None, None), shots[:150], ids(6)), ((None, None), other + ids(4), ids(5)),
             ((None, None), ids(60), ids(7))]
    runs = []
    real = lm._prefix_cache
    monkeypatch.setattr(lm, "_prefix_cache", lambda prefix: runs.append(len(prefix)) or real(prefix))
    got = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    want = hf._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert [r[0] for r in got] == pytest.approx([w[0] for w in want], abs=1e-4)
    assert [r[1] for r in got] == [w[1] for w in want]
    # the few-shot prefix, one token short of the context that is the prefix itself, and the other family's
    assert sorted(runs) == [120, 150 - 1]


_MEMORY_SCRIPT = r"""
import json, sys, torch
from lm_eval.models.huggingface import HFLM
from hare.evals.backend import HareLM

def status(field):  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) into the child
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) * 1024

side, model = sys.argv[1], sys.argv[2]
common = {"pretrained": model, "dtype": "float32", "device": "cpu", "batch_size": 8}
lm = HFLM(**common) if side == "hf" else HareLM(**common, max_batch_tokens=8192)
g = torch.Generator().manual_seed(0)
ctxs = [torch.randint(3, 500, (600,), generator=g).tolist() for _ in range(2)]
reqs = [((None, None), c, torch.randint(3, 500, (n,), generator=g).tolist()) for c in ctxs for n in (3, 5, 8, 13)]
before = status("VmRSS")
out = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
print(json.dumps({"growth": status("VmHWM") - before,
                  "lls": [o[0] for o in out]}))
"""


@pytest.mark.slow
def test_memory_stays_bounded_where_hflms_grows_with_the_vocabulary(hf_model, tmp_path):
    """Peak resident memory (in a subprocess each) of eight 600-token prompts at a 32,000-word
    vocabulary: HFLM's logits and their log-softmax take 2 x 8 x 600 x 32,000 x 4 bytes (1.2 GB);
    hare's backend holds one chunk of logits (32 MB)."""
    from hare.model.model import build_model, mistral_config

    model = tmp_path / "big-vocab"
    model.mkdir()
    for f in hf_model.glob("*token*"):  # the tiny model's tokenizer; the model's vocabulary is larger
        shutil.copy(f, model)
    config = mistral_config("tiny", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "max_position_embeddings": 2048}, vocab_size=32000)
    build_model(config, seed=0).save_pretrained(model)
    limit = 1 << 29
    res = {}
    for side in ("hf", "hare"):
        p = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, side, str(model)], capture_output=True, text=True,
                           cwd=ROOT, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        res[side] = json.loads(p.stdout.strip().splitlines()[-1])
        print(side, "peak growth", res[side]["growth"] >> 20, "MB")
    assert res["hf"]["growth"] > limit, res["hf"]["growth"]
    assert res["hare"]["growth"] < limit / 2, res["hare"]["growth"]
    assert res["hare"]["lls"] == pytest.approx(res["hf"]["lls"], abs=1e-4)


def test_automatic_budget(hf_model):
    from transformers import AutoConfig

    from hare.evals.backend import auto_max_batch_tokens

    cfg = AutoConfig.from_pretrained(hf_model)
    # per token: K and V of 2 layers x 1 head x 32 dims, the widest activations, a row of scores per head
    assert bytes_per_token(cfg, 1024) == 4 * (2 * 2 * 1 * 32 + 4 * 64 + 3 * 128 + 2 * 1024)
    assert 1024 < auto_max_batch_tokens(cfg, 1024, torch.device("cpu")) <= 65536


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_backend_without_vllm_is_a_clear_error(hf_model, tmp_path, capsys):
    rc = main(["eval", str(hf_model), "--tasks", "arc_easy", "--backend", "vllm", "--out-dir", str(tmp_path)])
    assert rc == 2 and "the vllm backend needs vLLM and a GPU: pip install 'lm_eval[vllm]'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(),
                    reason="the vllm backend needs vLLM and a CUDA GPU")
def test_vllm_backend_runs(smollm2, tmp_path, shared_data):
    bench = link_shared(tmp_path / "bench", shared_data, ["arc"])
    assert main(["eval", str(smollm2), "--tasks", "arc_easy", "--benchmarks-dir", str(bench), "--limit", "4",
                 "--backend", "vllm", "--device", "cuda", "--out-dir", str(tmp_path)]) == 0
