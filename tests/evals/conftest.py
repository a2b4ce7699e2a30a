"""Benchmark folders and tiny models for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import nltk_texts

# Winogrande's published layout (sentence with one "_", option1, option2, answer "1"/"2"); no public
# copy of the data is available offline, so these items are written for the tests.
WINOGRANDE = [
    ("The trophy doesn't fit into the brown suitcase because _ is too large.", "trophy", "suitcase", "1"),
    ("The trophy doesn't fit into the brown suitcase because _ is too small.", "trophy", "suitcase", "2"),
    ("Sarah lent her umbrella to Maria because _ was going out into the rain.", "Sarah", "Maria", "2"),
    ("Sarah lent her umbrella to Maria because _ was staying home all day.", "Sarah", "Maria", "1"),
    ("The cat chased the mouse until _ was exhausted and stopped running.", "cat", "mouse", "1"),
    ("The cat chased the mouse until _ was caught in the corner of the barn.", "cat", "mouse", "2"),
    ("Tom could not lift the box onto the shelf because _ was too heavy.", "Tom", "box", "2"),
    ("Tom could not lift the box onto the shelf because _ was too weak.", "Tom", "box", "1"),
]


def write_winogrande(folder: Path) -> None:
    (folder / "winogrande").mkdir(parents=True, exist_ok=True)
    rows = [{"qID": f"w{i}", "sentence": s, "option1": a, "option2": b, "answer": ans}
            for i, (s, a, b, ans) in enumerate(WINOGRANDE)]
    for name, part in (("train_xl.jsonl", rows[:6]), ("dev.jsonl", rows[6:])):
        (folder / "winogrande" / name).write_text("".join(json.dumps(r) + "\n" for r in part))


def link_shared(folder: Path, shared: Path, names: list[str]) -> Path:
    """A benchmark folder holding links to some of ../shared/data's benchmark folders (no copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).symlink_to(shared / n, target_is_directory=True)
    return folder


@pytest.fixture(scope="session")
def bench(tmp_path_factory, shared_data) -> Path:
    """Every leaderboard benchmark: the shared files plus the Winogrande items above."""
    folder = link_shared(tmp_path_factory.mktemp("bench"), shared_data,
                         ["arc", "hellaswag", "mmlu", "gsm8k", "truthfulqa"])
    write_winogrande(folder)
    return folder


def _tokenizer(folder: Path):
    from hare.train.pack import train_tokenizer

    return train_tokenizer([t for _, t in nltk_texts("movie_reviews", 300)], 512, folder)


def tiny_hf_model(folder: Path, max_positions: int, seed: int) -> Path:
    """A randomly initialised two-layer MistralForCausalLM and its tokenizer, saved in ``folder``."""
    from hare.model.model import build_model, mistral_config

    tok = _tokenizer(folder)
    config = mistral_config("tiny", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "max_position_embeddings": max_positions}, vocab_size=len(tok))
    build_model(config, seed=seed).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory, shared_data) -> Path:
    """A plain Hugging Face folder: a randomly initialised MistralForCausalLM and its tokenizer."""
    return tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny-mistral", 1024, seed=0)


@pytest.fixture(scope="session")
def hare_model(tmp_path_factory, shared_data) -> Path:
    """A model trained by hare's loop for a few steps and exported as hare's pipeline does."""
    from hare.model.model import mistral_config
    from hare.train.config import TrainConfig
    from hare.train.loop import export_model, train
    from hare.train.pack import PackedTokens, pack_documents

    tmp = tmp_path_factory.mktemp("hare")
    tok = _tokenizer(tmp / "tok")
    pack_documents([t for _, t in nltk_texts("movie_reviews", 300)], tok, tmp, seq_len=64)
    config = mistral_config("tiny", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "max_position_embeddings": 128}, vocab_size=len(tok))
    cfg = TrainConfig(max_steps=20, micro_batch_size=8, grad_accum=1, lr=3e-3, min_lr=3e-4, warmup_steps=2,
                      checkpoint_every=10 ** 6, log_every=10)
    model = train(config, PackedTokens(tmp, seed=0), cfg, tmp / "train", seed=0)["model"]
    model.config.use_cache = True
    export_model(model.cpu(), tok, tmp / "demo" / "train" / "model")
    return tmp / "demo" / "train" / "model"
