"""Tokenizers: a local Hugging Face tokenizer folder, never the hub."""

from __future__ import annotations

from pathlib import Path


def load_tokenizer(path: str | Path):
    """The tokenizer saved in a local folder (a hare run's tokenizer, a model folder)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
