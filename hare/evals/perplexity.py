"""Held-out perplexity: per-token loss and bits per byte of a causal LM on a set of documents.

Each document is scored on its own, preceded by EOS as a document separator (the same boundary the
packed training stream has), in non-overlapping windows of ``max_len`` tokens. Bits per byte
(total NLL in bits / UTF-8 bytes) is comparable across tokenizers; per-token loss is not.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F

from hare.progress import progress


@torch.no_grad()
def perplexity(model, tokenizer, texts: Iterable[str], max_len: int = 256, device: str | torch.device = "cpu",
               total: int | None = None) -> dict:
    """Return loss (nats per token), perplexity, bits per byte and the counts they came from."""
    model.eval()
    eos = tokenizer.eos_token_id
    nll = 0.0
    n_tok = n_bytes = n_docs = 0
    for text in progress(texts, desc="held-out perplexity", total=total, unit="doc"):
        ids = [eos] + tokenizer(text, add_special_tokens=False)["input_ids"]
        n_bytes += len(text.encode("utf-8"))
        n_docs += 1
        for start in range(0, len(ids) - 1, max_len):
            chunk = torch.tensor([ids[start: start + max_len + 1]], device=device)
            logits = model(input_ids=chunk[:, :-1]).logits.float()
            nll += F.cross_entropy(logits[0], chunk[0, 1:], reduction="sum").item()
            n_tok += chunk.size(1) - 1
    loss = nll / max(n_tok, 1)
    return {"docs": n_docs, "tokens": n_tok, "bytes": n_bytes, "loss": loss, "perplexity": math.exp(min(loss, 50)),
            "bits_per_byte": nll / math.log(2) / max(n_bytes, 1)}
