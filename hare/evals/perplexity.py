"""Held-out perplexity: per-token loss and bits per byte of a causal LM on a set of documents.

Each document is scored on its own, preceded by EOS as a document separator (the same boundary the
packed training stream has), in non-overlapping windows of ``max_len`` tokens. Bits per byte
(total NLL in bits / UTF-8 bytes) is comparable across tokenizers; per-token loss is not.

``read_documents`` reads any set of documents for it: JSON lines (plain or compressed, one
document per line), plain text files (one document per file), or folders of either (hare's
corpus shards included).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F

from hare.io import open_text_read
from hare.progress import progress

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and (p.name.endswith(JSONL_SUFFIXES) or
                                                                     p.suffix == ".txt"))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder of documents")
    return [path]


def read_documents(paths: Iterable[str | Path], text_field: str = "text", limit: int | None = None) -> Iterator[str]:
    """Texts of the documents in ``paths`` (files or folders), in order, at most ``limit``.

    A JSON-lines record without a string ``text_field`` raises, naming the file and line.
    """
    n = 0
    for path in paths:
        for f in _files(Path(path)):
            if f.name.endswith(JSONL_SUFFIXES):
                with open_text_read(f) as fh:
                    for lineno, line in enumerate(fh, 1):
                        if not line.strip():
                            continue
                        try:
                            rec = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise ValueError(f"{f}:{lineno}: bad JSON ({e.msg} at column {e.colno})") from None
                        text = rec.get(text_field) if isinstance(rec, dict) else None
                        if not isinstance(text, str):
                            raise ValueError(f"{f}:{lineno}: no string field '{text_field}'")
                        yield text
                        n += 1
                        if limit is not None and n >= limit:
                            return
            else:
                yield f.read_text(encoding="utf-8")
                n += 1
                if limit is not None and n >= limit:
                    return


@torch.no_grad()
def perplexity(model, tokenizer, texts: Iterable[str], max_len: int = 256, device: str | torch.device = "cpu",
               total: int | None = None) -> dict:
    """Return loss (nats per token), perplexity, bits per byte and the counts they came from."""
    model.eval()
    # the document separator: EOS as in hare's packed stream; BOS for a tokenizer without EOS
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    nll = 0.0
    n_tok = n_bytes = n_docs = 0
    for text in progress(texts, desc="held-out perplexity", total=total, unit="doc"):
        ids = ([] if eos is None else [eos]) + tokenizer(text, add_special_tokens=False)["input_ids"]
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
