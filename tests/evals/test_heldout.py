"""hare's held-out perplexity is lm-evaluation-harness's rolling log-likelihood: the same numbers for the
same model, documents, context and separator token."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from hare.core.tokenizer import load_tokenizer
from hare.evals.heldout import heldout_perplexity, read_documents, rolling_windows
from tests.conftest import nltk_texts


def test_rolling_windows_cover_every_token_once_with_full_context():
    windows = list(rolling_windows(list(range(11)), 4))  # a separator and 10 tokens
    assert windows == [(0, 4), (4, 8), (6, 10)]  # the last scores 2 new tokens after 2 of context
    assert list(rolling_windows([0], 4)) == []  # an empty document has nothing to score


def test_equals_lm_evals_loglikelihood_rolling(hare_model, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    docs = tmp_path / "docs.jsonl"
    texts = [t[:6000] for _, t in nltk_texts("state_union", 3)] + ["", "Short one."]
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ours = heldout_perplexity(hare_model, [docs], max_len=128)
    tok = load_tokenizer(hare_model)
    assert ours.docs == 5 and ours.tokens == sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert ours.tokens > 3 * 128  # several windows per document, and a partial last one

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "heldout.yaml").write_text(yaml.safe_dump({
        "task": "heldout", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(docs)}},
        "output_type": "loglikelihood_rolling", "test_split": "test", "doc_to_text": "", "doc_to_target": "{{text}}",
        "metric_list": [{"metric": m, "aggregation": a, "higher_is_better": False} for m, a in (
            ("word_perplexity", "weighted_perplexity"), ("byte_perplexity", "weighted_perplexity"),
            ("bits_per_byte", "bits_per_byte"))]}))
    res = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(hare_model), "dtype": "float32", "max_length": 128,
                                "prefix_token_id": tok.eos_token_id},
        tasks=["heldout"], task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        batch_size=4, device="cpu")["results"]["heldout"]
    assert ours.bits_per_byte == pytest.approx(res["bits_per_byte,none"], rel=1e-4)
    assert ours.byte_perplexity == pytest.approx(res["byte_perplexity,none"], rel=1e-4)
    assert ours.word_perplexity == pytest.approx(res["word_perplexity,none"], rel=1e-4)
    assert ours.loss == pytest.approx(ours.bits_per_byte * math.log(2) * ours.bytes / ours.tokens)


def test_documents_from_jsonl_text_and_folders(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("first")
    (tmp_path / "d" / "b.jsonl").write_text('{"text": "second"}\n{"text": "third"}\n')
    (tmp_path / "d" / "notes.md").write_text("not a document")
    assert list(read_documents([tmp_path / "d"])) == ["first", "second", "third"]
    assert list(read_documents([tmp_path / "d"], limit=2)) == ["first", "second"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: no string field 'text'"):
        list(read_documents([tmp_path / "bad.jsonl"]))
