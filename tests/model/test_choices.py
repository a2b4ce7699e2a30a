"""Choice items scored by likelihood equal a one-sequence-at-a-time reference, and the metrics follow."""

from __future__ import annotations

import math

import pytest
import torch

from hare.model.choices import ChoiceItem, choice_metrics, continuation_ids, read_choice_items, score_choices
from hare.model.model import build_model, mistral_config
from hare.train.pack import train_tokenizer
from hare.core.io import RecordError


@pytest.fixture
def model_and_tokenizer(tmp_path, reviews):
    tok = train_tokenizer(reviews[:50], 512, tmp_path / "tok")
    config = mistral_config("tiny", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "max_position_embeddings": 128}, vocab_size=len(tok))
    return build_model(config, seed=0).eval(), tok


def reference(model, tok, context: str, choice: str) -> float:
    """The choice's log-likelihood from one unpadded forward pass over EOS + context + choice."""
    ctx, cont = continuation_ids(tok, context, choice)
    ids = torch.tensor([[tok.eos_token_id] + ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits.float(), -1)[0]
    n = len(cont)
    return float(sum(logp[ids.shape[1] - 1 - n + k, cont[k]] for k in range(n)))


def test_batched_scores_equal_the_reference(model_and_tokenizer, reviews):
    model, tok = model_and_tokenizer
    items = [ChoiceItem("t", str(i), reviews[60 + i][:120], [" " + reviews[70 + i][:20 + 6 * k] for k in range(4)],
                        i % 4) for i in range(5)]
    items.append(ChoiceItem("u", "x", "Question: which is it?\nAnswer:", [" yes", " no"], 1))
    got = score_choices(model, tok, items, max_len=128, batch=3)
    assert max(len(sum(continuation_ids(tok, it.context, c), [])) for it in items for c in it.choices) < 127
    for it, row in zip(items, got):
        for c, v in zip(it.choices, row):
            assert v == pytest.approx(reference(model, tok, it.context, c), rel=1e-5, abs=1e-4)


def test_a_long_context_is_cut_from_the_left(model_and_tokenizer, reviews):
    model, tok = model_and_tokenizer
    long = ChoiceItem("t", "0", reviews[80], [" good", " bad"], 0)
    short = ChoiceItem("t", "1", reviews[80][-2000:], [" good", " bad"], 0)
    a, b = score_choices(model, tok, [long, short], max_len=32)
    assert a == pytest.approx(b, rel=1e-5)  # the last 31 tokens of context are the same


def test_metrics_from_scores():
    items = [ChoiceItem("t", "0", "c", [" ab", " abcd"], 0), ChoiceItem("t", "1", "c", [" a", " b"], 1)]
    scores = [[-3.0, -4.0], [-1.0, -2.0]]
    m = choice_metrics(items, scores)["t"]
    assert m["bits_per_byte"] == pytest.approx((3.0 + 2.0) / math.log(2) / (3 + 2))
    # per byte: item 0 gold -1.0/byte vs -0.8/byte -> wrong; item 1 gold -1.0 vs -0.5 -> wrong
    assert m["acc"] == 0.0
    p0 = math.exp(-3) / (math.exp(-3) + math.exp(-4))
    p1 = math.exp(-2) / (math.exp(-1) + math.exp(-2))
    assert m["correct_prob"] == pytest.approx((p0 + p1) / 2) and m["items"] == 2


def test_a_malformed_item_names_its_line(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"task": "t", "id": "0", "context": "c", "choices": [" a", " b"], "gold": 1}\n'
                    '{"task": "t", "id": "1", "context": "c", "choices": [" a"], "gold": 0}\n')
    with pytest.raises(RecordError, match=":2"):
        read_choice_items(path)
