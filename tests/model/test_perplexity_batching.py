"""Windows scored in right-padded batches give what each window gives alone."""

from __future__ import annotations

import pytest

from hare.model.model import build_model, mistral_config
from hare.model.perplexity import perplexity
from hare.train.pack import train_tokenizer


def test_batched_windows_equal_windows_alone(tmp_path, reviews):
    tok = train_tokenizer(reviews[:50], 512, tmp_path / "tok")
    config = mistral_config("tiny", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "max_position_embeddings": 128}, vocab_size=len(tok))
    model = build_model(config, seed=0)
    texts = reviews[50:56] + ["short one", "a b"]
    alone = perplexity(model, tok, texts, max_len=64, batch_windows=1, quiet=True)
    batched = perplexity(model, tok, texts, max_len=64, batch_windows=7, quiet=True)
    assert batched.tokens == alone.tokens and batched.bytes == alone.bytes
    assert batched.bits_per_byte == pytest.approx(alone.bits_per_byte, rel=1e-6)
    assert batched.loss == pytest.approx(alone.loss, rel=1e-6)
