"""The leakage audit: a model trained on a benchmark's test split shows a clearly higher Δ."""

import json

import pytest
import torch

from hare.cli import main
from hare.core.documents import Document, write_shards
from hare.evals.audit import audit_text, ngram_accuracy, run_audit, sample_items, start_points
from hare.core.benchmarks import load_benchmark
from hare.evals.rewrite import DeterministicRewriter
from hare.model.model import mistral_config
from hare.recipe import TrainConfig
from hare.train.loop import export_model, train
from hare.train.pack import PackedTokens, pack_documents, train_tokenizer
from tests.conftest import nltk_texts

LEAKED = 40  # gsm8k test items the leaky model trains on
AUDITED = 80  # gsm8k test items the audit samples (the first LEAKED of them leaked)


def _train(folder, texts, tok, steps):
    pack_documents(texts, tok, folder, seq_len=256)
    config = mistral_config("tiny", {"max_position_embeddings": 512, "hidden_size": 96, "intermediate_size": 256,
                                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
                            vocab_size=len(tok))
    cfg = TrainConfig(max_steps=steps, micro_batch_size=4, grad_accum=1, lr=3e-3, min_lr=3e-4, warmup_steps=10,
                      checkpoint_every=10 ** 6, log_every=50, threads=2)
    model = train(config, PackedTokens(folder, seed=0), cfg, folder / "run", seed=0)["model"]
    export_model(model, tok, folder / "model")
    return folder / "model"


@pytest.fixture(scope="module")
def models(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("audit")
    gsm = load_benchmark("gsm8k", shared_data)
    sample = sample_items([it for it in gsm if it.split == "test"], AUDITED, seed=0)
    leaked = [audit_text(it) for it in sample[:LEAKED]]
    reviews = [t for _, t in nltk_texts("movie_reviews", 300)]
    tok = train_tokenizer(reviews + [audit_text(it) for it in gsm if it.split == "train"][:2000], 1024, tmp / "tok")
    clean = _train(tmp / "clean", reviews, tok, 150)
    leaky = _train(tmp / "leaky", leaked, tok, 400)  # deliberately trained on part of GSM8K's test split
    return tmp, clean, leaky, leaked


def test_start_points():
    assert start_points(30, 5, 5) == [1, 7, 13, 19, 25]
    assert start_points(5, 5, 5) == [] and start_points(6, 5, 5) == [1]


def test_teacher_forced_scoring_equals_greedy_generation(models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, leaky, leaked = models
    model = AutoModelForCausalLM.from_pretrained(leaky, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(leaky, local_files_only=True)
    texts = leaked[:6] + ["The committee met on Tuesday to discuss the budget for the coming year."]
    fast = ngram_accuracy(model, tok, texts, batch_size=3)
    for text, score in zip(texts, fast):
        ids = [tok.eos_token_id] + tok(text)["input_ids"]
        points = start_points(len(ids), 5, 5)
        hits = 0
        for p in points:
            out = model.generate(torch.tensor([ids[:p]]), max_new_tokens=5, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
            hits += out[0, p:].tolist() == ids[p:p + 5]
        assert score == hits / len(points)
    assert max(fast) > 0.5  # the leaky model reproduces what it memorised


def test_leaky_model_has_clearly_higher_delta(models, shared_data, tmp_path):
    _, clean, leaky, _ = models
    rw = DeterministicRewriter(seed=0)
    kw = dict(benchmarks=["gsm8k"], bench_dir=shared_data, rewriter=rw, max_items=AUDITED, splits=["test"])
    r_clean = run_audit(clean, out_dir=tmp_path / "c", **kw)["rows"][0]
    r_leaky = run_audit(leaky, out_dir=tmp_path / "l", **kw)["rows"][0]
    assert r_leaky["items"] == AUDITED
    assert r_leaky["D"] > r_clean["D"] + 10
    assert r_leaky["delta"] > r_clean["delta"] + 5, (r_leaky, r_clean)
    assert abs(r_clean["delta"]) < 5
    md = (tmp_path / "l" / "audit.md").read_text()
    assert "| gsm8k | test | 80 |" in md and "rewriter: deterministic" in md


def test_cli_audit_with_the_clean_subset_view(models, shared_data, tmp_path, capsys):
    _, _, leaky, leaked = models
    run = tmp_path / "run"
    write_shards([Document(t, str(i)) for i, t in enumerate(leaked)], run / "mix" / "train")
    rc = main(["audit", str(leaky), "--benchmarks-dir", str(shared_data), "--benchmarks", "gsm8k,arc_easy",
               "--splits", "test", "--max-items", str(AUDITED), "--run", str(run), "--out", str(tmp_path / "out")])
    assert rc == 0
    result = json.loads((tmp_path / "out" / "audit.json").read_text())
    g = next(r for r in result["rows"] if r["benchmark"] == "gsm8k")
    assert g["items_seen_in_training"] == LEAKED
    assert g["D"] > g["D_clean"]  # memorised items lift the score on all items above the clean ones
    a = next(r for r in result["rows"] if r["benchmark"] == "arc_easy")
    assert a["items_seen_in_training"] == 0 and 0 <= a["choice_acc"] <= 100
    assert "Clean subset" in capsys.readouterr().out


def test_cli_audit_rejects_a_folder_without_a_model(tmp_path, capsys):
    assert main(["audit", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
