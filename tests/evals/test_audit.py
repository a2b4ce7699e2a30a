"""The leakage audit: a model trained on a benchmark's test split shows a clearly higher Δ, on GSM8K
and on multiple-choice benchmarks (ARC, MMLU, HellaSwag), where some rewritten twins come back unchanged."""

import json

import pytest
import torch

from hare.cli import main
from hare.core.documents import Document, write_shards
from hare.evals.audit import audit_text, ngram_accuracy, run_audit, sample_items, start_points
from hare.core.evalsets import load_benchmark
from hare.evals.rewrite import DeterministicRewriter
from hare.model.model import mistral_config
from hare.train.config import TrainConfig
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


def mean(xs):
    return 100 * sum(xs) / len(xs)


# Multiple-choice benchmarks: the audited text is the question and its correct choice.
MC_SPLITS = {"arc_challenge": "test", "mmlu": "test", "hellaswag": "validation"}
MC_AUDITED = 30  # items the audit samples per benchmark
MC_LEAKED = 10  # of them, the first ones, which the leaky model trains on


@pytest.fixture(scope="module")
def mc_leaky(tmp_path_factory, shared_data):
    """A tiny model trained to memorise the first MC_LEAKED audited items of each benchmark."""
    tmp = tmp_path_factory.mktemp("audit-mc")
    samples = {b: sample_items([it for it in load_benchmark(b, shared_data) if it.split == s], MC_AUDITED, seed=0)
               for b, s in MC_SPLITS.items()}
    leaked = [audit_text(it) for items in samples.values() for it in items[:MC_LEAKED]]
    tok = train_tokenizer([t for _, t in nltk_texts("movie_reviews", 200)] + leaked, 1024, tmp / "tok")
    pack_documents(leaked, tok, tmp, seq_len=64)
    config = mistral_config("tiny", {"max_position_embeddings": 128, "hidden_size": 64, "intermediate_size": 128,
                                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1},
                            vocab_size=len(tok))
    cfg = TrainConfig(max_steps=120, micro_batch_size=8, grad_accum=1, lr=1e-2, min_lr=1e-3, warmup_steps=10,
                      checkpoint_every=10 ** 6, log_every=100, threads=1)
    model = train(config, PackedTokens(tmp, seed=0), cfg, tmp / "run", seed=0)["model"]
    export_model(model, tok, tmp / "model")
    return tmp / "model", samples


def test_audit_on_multiple_choice_benchmarks(mc_leaky, shared_data, tmp_path):
    """Unchanged twins are counted and left out of Δ, Δ is computed over the changed pairs, and the
    items the model memorised score clearly higher than their twins."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, samples = mc_leaky
    rw = DeterministicRewriter(seed=0)
    result = run_audit(model_dir, list(MC_SPLITS), shared_data, tmp_path, rw, max_items=MC_AUDITED,
                       splits=sorted(set(MC_SPLITS.values())))
    rows = {r["benchmark"]: r for r in result["rows"] if MC_SPLITS.get(r["benchmark"]) == r["split"]}
    assert set(rows) == set(MC_SPLITS)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    unchanged_total = 0
    for b, items in samples.items():
        row = rows[b]
        twins = [rw.rewrite(it) for it in items]
        changed = [i for i, (it, tw) in enumerate(zip(items, twins)) if audit_text(it) != audit_text(tw)]
        assert row["items"] == MC_AUDITED and row["twins_unchanged"] == MC_AUDITED - len(changed)
        unchanged_total += row["twins_unchanged"]
        acc_d = ngram_accuracy(model, tok, [audit_text(it) for it in items])
        acc_r = ngram_accuracy(model, tok, [audit_text(twins[i]) for i in changed])
        assert row["D"] == pytest.approx(mean(acc_d))
        assert row["D_paired"] == pytest.approx(mean([acc_d[i] for i in changed]))
        assert row["D_rewritten"] == pytest.approx(mean(acc_r))
        assert row["delta"] == pytest.approx(row["D_paired"] - row["D_rewritten"])
        # memorised items (the first MC_LEAKED) against their twins; the other items against theirs
        leaked = [j for j, i in enumerate(changed) if i < MC_LEAKED]
        rest = [j for j, i in enumerate(changed) if i >= MC_LEAKED]
        delta_leaked = mean([acc_d[changed[j]] - acc_r[j] for j in leaked])
        delta_rest = mean([acc_d[changed[j]] - acc_r[j] for j in rest])
        assert delta_leaked > 5 and delta_leaked > delta_rest + 5, (b, delta_leaked, delta_rest)
        assert row["delta"] > 0, row
    assert unchanged_total > 0  # MMLU's short questions leave some twins as they were
    md = (tmp_path / "audit.md").read_text()
    assert "unchanged twins are left out" in md and f"| mmlu | test | {MC_AUDITED} |" in md
