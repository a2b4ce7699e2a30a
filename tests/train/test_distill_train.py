"""Distillation in the train step: the teacher step's top-k files (exact, resumable after kill -9),
training on them (cached) or on the teacher beside the student (online), exact resume, and DDK's
re-weighting of the mixture toward where the student lags the teacher."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from hare.core.io import read_json, remove_stale_temps
from hare.core.tokenizer import load_tokenizer
from hare.model.distill import sparse_kl, top_k_logprobs
from hare.synth.teacher import tiny_teacher
from hare.train.config import DDKConfig, DistillConfig
from hare.train.data import load_parts
from hare.train.loop import train
from hare.train.pack import pack_documents
from hare.train.teacher import IDS, LOGP, WINDOW_LOSS, TeacherTargets, load_teacher, teacher_pass
from tests.train.test_loop import cfg, tiny_config

K = 8


@pytest.fixture(scope="module")
def teacher(smollm2, tmp_path_factory):
    """A two-layer random-weight Llama with SmolLM2's tokenizer: a teacher the student can share a tokenizer with."""
    return tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny", tokenizer_from=smollm2)


def pack(folder, teacher, texts: dict[str, list[str]], seq_len: int = 32):
    """``texts`` per part, packed with the teacher's tokenizer as the tokenize step lays them out."""
    tok = load_tokenizer(teacher)
    tok.save_pretrained(folder / "tokenizer")
    for part, docs in texts.items():
        pack_documents(docs, tok, folder / part, seq_len=seq_len, batch_docs=50)
    return tok


@pytest.fixture(scope="module")
def packed(teacher, reviews_module, tmp_path_factory):
    folder = tmp_path_factory.mktemp("packed")
    tok = pack(folder, teacher, {"d1": reviews_module[:12], "d2": reviews_module[12:24]})
    out = folder.parent / (folder.name + "-teacher")
    stats = teacher_pass(folder, out, DistillConfig(local=str(teacher), top_k=K, batch_windows=4))
    return folder, tok, out, stats


@pytest.fixture(scope="module")
def reviews_module():
    from tests.conftest import nltk_texts

    return [t for _, t in nltk_texts("movie_reviews", 40)]


def test_the_teacher_step_stores_each_windows_top_k_as_the_teacher_computes_it(packed, teacher):
    folder, tok, out, stats = packed
    part = read_json(folder / "d1" / "index.json")
    n, L = part["num_sequences"], part["seq_len"]
    assert stats.parts["d1"].windows == n and stats.parts["d1"].top_k == K
    assert (out / "d1" / IDS).stat().st_size == n * L * K * 2  # uint16 ids: SmolLM2's 49,152 tokens fit
    assert stats.parts["d1"].bytes_per_token == pytest.approx(K * 4 + 4 / L, abs=0.01)
    model = load_teacher(teacher)
    tokens = np.memmap(folder / "d1" / "tokens.bin", dtype=part["dtype"], mode="r")
    targets = TeacherTargets(out, 1.0)
    for i in (0, 5, n - 1):
        x = torch.from_numpy(np.asarray(tokens[i * L: i * L + L + 1], dtype=np.int64))[None]
        with torch.no_grad():
            logits = model(input_ids=x[:, :-1]).logits[0].float()
        idx, lp = top_k_logprobs(logits, K)
        got_idx, got_lp = targets.rows([("d1", i)])
        assert torch.equal(got_idx[0], idx)
        assert torch.allclose(got_lp[0], lp, atol=2e-2, rtol=2e-3)  # float16
        ce = torch.nn.functional.cross_entropy(logits, x[0, 1:]).item()
        assert targets.window_loss("d1")[i] == pytest.approx(ce, rel=1e-4)


def test_the_teacher_step_resumes_after_kill_9_to_identical_files(teacher, reviews_module, tmp_path):
    folder = tmp_path / "tok"
    pack(folder, teacher, {"d1": reviews_module[:12]})
    n = read_json(folder / "d1" / "index.json")["num_sequences"]
    script = tmp_path / "run_teacher.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nfrom hare.train.config import DistillConfig\n"
        "from hare.train.teacher import teacher_pass\n"
        "teacher_pass(Path(sys.argv[1]), Path(sys.argv[2]),\n"
        "             DistillConfig(local=sys.argv[3], top_k=8, batch_windows=1))\n")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(killed), str(teacher)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    progress = killed / "d1" / "progress.json"
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = read_json(progress)["windows_done"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 5:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert 5 <= done < n, f"the step was to be killed part way ({done} of {n} windows done)"
    assert not (killed / "d1" / "teacher.json").exists()
    remove_stale_temps(killed)  # what the runner does before it resumes a step: the files being filled stay
    assert len(list((killed / "d1").glob(".*.tmp-filling"))) == 3
    teacher_pass(folder, killed, DistillConfig(local=str(teacher), top_k=8, batch_windows=1))
    whole = tmp_path / "whole"
    teacher_pass(folder, whole, DistillConfig(local=str(teacher), top_k=8, batch_windows=3))  # other blocks
    for name in (IDS, LOGP, WINDOW_LOSS):
        assert (killed / "d1" / name).read_bytes() == (whole / "d1" / name).read_bytes(), name
    assert not (killed / "d1" / "progress.json").exists()
    assert not list((killed / "d1").glob(".*tmp*"))


def kd(teacher, **kw):
    return DistillConfig(local=str(teacher), top_k=K, **kw)


def test_a_student_of_another_tokenizer_is_refused(packed, teacher, tmp_path, reviews_module):
    from hare.train.pack import train_tokenizer

    folder, _, out, _ = packed
    other = train_tokenizer(reviews_module, 512, tmp_path / "bpe")
    with pytest.raises(ValueError, match="tokenizer is not the teacher's"):
        train(tiny_config(len(other)), load_parts(folder, 0), cfg(distill=kd(teacher)), tmp_path / "run", seed=0,
              tokenizer=other, teacher_out=out)


def kl_to_teacher(model, folder, out, windows) -> float:
    """Mean sparse KL(teacher || model) over ``windows`` of d1."""
    targets = TeacherTargets(out, 1.0)
    part = read_json(folder / "d1" / "index.json")
    L = part["seq_len"]
    tokens = np.memmap(folder / "d1" / "tokens.bin", dtype=part["dtype"], mode="r")
    total = 0.0
    with torch.no_grad():
        for i in windows:
            x = torch.from_numpy(np.asarray(tokens[i * L: i * L + L], dtype=np.int64))[None]
            idx, lp = targets.rows([("d1", i)])
            total += sparse_kl(model(input_ids=x).logits[0].float(), idx[0], lp[0]).mean().item()
    return total / len(windows)


def test_cached_distillation_trains_toward_the_teacher_and_resumes_exactly(packed, teacher, tmp_path):
    folder, tok, out, _ = packed
    conf = tiny_config(len(tok))
    c = cfg(max_steps=8, distill=kd(teacher, alpha=1.0))
    full = train(conf, load_parts(folder, 0), c, tmp_path / "a", seed=0, tokenizer=tok, teacher_out=out)
    train(conf, load_parts(folder, 0), c, tmp_path / "b", seed=0, stop_after=3, tokenizer=tok, teacher_out=out)
    resumed = train(conf, load_parts(folder, 0), c, tmp_path / "b", seed=0, resume=True, tokenizer=tok,
                    teacher_out=out)
    for (k, a), (_, b) in zip(full["model"].state_dict().items(), resumed["model"].state_dict().items()):
        assert torch.equal(a, b), k
    assert full["distill"] == {"teacher": str(teacher), "source": "cached", "alpha": 1.0, "temperature": 1.0,
                               "top_k": K}
    ce = train(conf, load_parts(folder, 0), cfg(max_steps=8), tmp_path / "ce", seed=0)["model"]
    windows = range(0, 40, 4)
    assert kl_to_teacher(full["model"], folder, out, windows) < kl_to_teacher(ce, folder, out, windows)


def test_online_distillation_runs_the_teacher_beside_the_student(packed, teacher, tmp_path):
    folder, tok, _, _ = packed
    res = train(tiny_config(len(tok)), load_parts(folder, 0), cfg(max_steps=3, distill=kd(teacher, source="online")),
                tmp_path / "online", seed=0, tokenizer=tok)
    assert res["distill"]["source"] == "online" and np.isfinite(res["final_loss"])


def test_ddk_moves_the_mixture_toward_the_part_the_student_lags_most_and_resumes_exactly(packed, teacher, tmp_path):
    folder, tok, out, _ = packed
    # The teacher made far better on d2 than it is: the student's gap to it is largest there.
    hard = tmp_path / "teacher"
    for part in ("d1", "d2"):
        (hard / part).mkdir(parents=True)
        for f in (out / part).iterdir():
            (hard / part / f.name).write_bytes(f.read_bytes())
    loss = np.fromfile(hard / "d2" / WINDOW_LOSS, dtype=np.float32)
    (loss * 0.25).astype(np.float32).tofile(hard / "d2" / WINDOW_LOSS)
    conf = tiny_config(len(tok))
    ddk = DDKConfig(every=2, heldout_windows=2, smoothing=0.5, max_factor=3.0)
    c = cfg(max_steps=7, distill=kd(teacher, ddk=ddk))
    parts = load_parts(folder, 0, holdout=2)
    full = train(conf, parts, c, tmp_path / "a", seed=0, tokenizer=tok, teacher_out=hard)
    planned = {k: p.n / sum(q.n for q in parts.values()) for k, p in parts.items()}
    final = full["distill"]["ddk_weights"]["all"]
    assert final["d2"] > planned["d2"] + 0.1 and final["d2"] <= 3 * planned["d2"] + 1e-6
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    moves = [m for m in lines if "ddk" in m]
    assert [m["step"] for m in moves] == [0, 2, 4, 6]
    assert [m["ddk"]["d2"]["weight"] for m in moves] == sorted(m["ddk"]["d2"]["weight"] for m in moves)
    batches = [json.loads(x) for x in (tmp_path / "a" / "batches.jsonl").read_text().splitlines()]
    assert [b["step"] for b in batches if b.get("ddk")] == [1, 3, 5, 7]
    assert parts["d2"].n == read_json(folder / "d2" / "index.json")["num_sequences"] - 2  # never sampled
    # killed at step 3 (after the move at step 2), resumed from its checkpoint: the same run
    train(conf, load_parts(folder, 0, holdout=2), c, tmp_path / "b", seed=0, stop_after=3, tokenizer=tok,
          teacher_out=hard)
    resumed = train(conf, load_parts(folder, 0, holdout=2), c, tmp_path / "b", seed=0, resume=True, tokenizer=tok,
                    teacher_out=hard)
    assert resumed["distill"]["ddk_weights"] == full["distill"]["ddk_weights"]
    for (k, a), (_, b) in zip(full["model"].state_dict().items(), resumed["model"].state_dict().items()):
        assert torch.equal(a, b), k
    for log in ("batches.jsonl", "metrics.jsonl"):
        keep = ("step", "stage", "parts", "weights", "ddk", "loss", "grad_norm")
        a = [{k: v for k, v in json.loads(x).items() if k in keep}
             for x in (tmp_path / "a" / log).read_text().splitlines()]
        b = [{k: v for k, v in json.loads(x).items() if k in keep}
             for x in (tmp_path / "b" / log).read_text().splitlines()]
        assert a == b, log
