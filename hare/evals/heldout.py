"""Held-out perplexity of a model folder: ``hare.model.perplexity``'s scoring (lm-eval's rolling
windows, EOS as the document separator) on documents read from files, for the eval step and
``hare eval``. Bits per byte (total NLL in bits / UTF-8 bytes) is comparable across tokenizers;
per-token loss is not.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hare.model.perplexity import DOCUMENT_FORMATS, Perplexity, perplexity, read_documents, rolling_windows

__all__ = ["DOCUMENT_FORMATS", "Perplexity", "heldout_perplexity", "perplexity", "read_documents", "rolling_windows"]

log = logging.getLogger("hare.evals")


def heldout_perplexity(model_dir: Path, paths: list[str | Path], *, device: str = "cpu", max_len: int = 2048,
                       text_field: str = "text", limit: int | None = None) -> Perplexity:
    """``perplexity`` of the model folder ``model_dir`` on the documents in ``paths``."""
    import torch
    from transformers import AutoModelForCausalLM

    from hare.core.tokenizer import load_tokenizer

    tok = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
    texts = list(read_documents(paths, text_field=text_field, limit=limit))
    res = perplexity(model.to(device), tok, texts, max_len=max_len, device=device, total=len(texts))
    res.files = [str(p) for p in paths]
    log.info("held-out: %d documents, loss %.4f nats/token, %.4f bits/byte", res.docs, res.loss, res.bits_per_byte)
    return res
