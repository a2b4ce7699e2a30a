from pathlib import Path

import pytest
import yaml

from hare.train.pack import pack_documents, train_tokenizer
from tests.conftest import write_corpus_jsonl


@pytest.fixture
def packed(tmp_path, reviews):
    """200 real reviews packed with a freshly trained 512-token BPE, windows of 64 tokens."""
    tok = train_tokenizer(reviews, 512, tmp_path / "tokenizer")
    index = pack_documents(reviews, tok, tmp_path, seq_len=64, batch_docs=50)
    return tmp_path, tok, index


def review_recipe(folder: Path, name: str, train: dict) -> Path:
    """A recipe over 150 real reviews (written once into ``folder``), a 512-token BPE, windows of 64
    tokens and a two-layer model of the tiny preset, no evaluation; ``train`` is its train section."""
    if not (folder / "reviews.jsonl").exists():
        write_corpus_jsonl(folder / "reviews.jsonl", "movie_reviews", 150)
    r = {
        "name": name,
        "sources": [{"name": "reviews", "kind": "jsonl", "path": "reviews.jsonl"}],
        "corpus": {"heldout_fraction": 0.02},
        "tokenizer": {"vocab_size": 512},
        "pack": {"seq_len": 64},
        "model": {"preset": "tiny", "overrides": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                                  "num_attention_heads": 2, "num_key_value_heads": 1}},
        "train": train,
        "eval": {"tasks": [], "heldout_perplexity": False},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(r))
    return path
