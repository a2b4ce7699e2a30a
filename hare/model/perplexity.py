"""Held-out perplexity of a causal LM on documents: the scoring shared by the eval step and training.

Each document is scored on its own, preceded by EOS as a document separator (the boundary the packed
training stream has), in the rolling windows of lm-evaluation-harness's ``loglikelihood_rolling``:
windows of ``max_len`` predicted tokens, each seeing up to ``max_len`` tokens before it, so the last
window of a long document is scored with a full context. The numbers are lm-eval's metrics of a
``loglikelihood_rolling`` task (``bits_per_byte``, ``byte_perplexity``, ``word_perplexity``, words
split on whitespace) with EOS as the prefix token; ``tests/evals/test_perplexity.py`` checks them
against lm-eval itself. Bits per byte (total NLL in bits / UTF-8 bytes) is comparable across
tokenizers; per-token loss is not.

``read_documents`` reads any set of documents for it: JSON Lines (plain or compressed, one document
per line), text files (one document per file), or folders of either (hare's corpus shards included).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable, Iterator

from pydantic import BaseModel

from hare.core.io import RecordError, expand_paths, file_format, jsonl_records, open_text_read
from hare.core.progress import progress

DOCUMENT_FORMATS = ("jsonl", "text")


class Perplexity(BaseModel):
    """Held-out perplexity of a model on a set of documents (``perplexity.json``)."""

    docs: int
    tokens: int
    bytes: int
    words: int
    loss: float  # nats per token
    perplexity: float
    bits_per_byte: float
    byte_perplexity: float
    word_perplexity: float
    files: list[str] = []


def read_documents(paths: Iterable[str | Path], text_field: str = "text", limit: int | None = None) -> Iterator[str]:
    """Texts of the documents in ``paths`` (files or folders), in order, at most ``limit``.

    A JSON Lines record without a string ``text_field`` raises ``RecordError``, naming file and line.
    """
    for text, _ in read_labelled_documents(paths, text_field, None, limit):
        yield text


def read_labelled_documents(paths: Iterable[str | Path], text_field: str = "text", label_field: str | None = None,
                            limit: int | None = None) -> Iterator[tuple[str, str | None]]:
    """(text, label) of the documents in ``paths``, as ``read_documents``; the label is a JSON Lines
    record's string ``label_field`` (e.g. its source), None for text files and records without one."""
    n = 0
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder of documents")
        for f in expand_paths(path, DOCUMENT_FORMATS):
            if file_format(f) == "jsonl":
                for lineno, rec in jsonl_records(f):
                    text = rec.get(text_field)
                    if not isinstance(text, str):
                        raise RecordError(f, lineno, f"no string field '{text_field}'")
                    label = rec.get(label_field) if label_field else None
                    yield text, label if isinstance(label, str) else None
                    n += 1
                    if limit is not None and n >= limit:
                        return
            else:
                with open_text_read(f) as fh:
                    yield fh.read(), None
                n += 1
                if limit is not None and n >= limit:
                    return


def rolling_windows(ids: list[int], max_len: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each window of ``ids`` (the separator first, then the document's tokens):
    the window's input is ``ids[start:end - 1]`` and it scores the tokens after its first
    ``context`` ones, as lm-eval's ``get_rolling_token_windows`` + ``make_disjoint_window``."""
    n = len(ids) - 1  # tokens to predict
    done = 0
    while done < n:
        end = min(done + max_len, n)  # predict tokens ids[done + 1 .. end]
        yield max(0, end - max_len), end
        done = end


def perplexity(model, tokenizer, texts: Iterable[str], max_len: int = 256, device: str = "cpu",
               total: int | None = None, quiet: bool = False, batch_windows: int = 8) -> Perplexity:
    """Perplexity of ``model`` on ``texts``, each scored on its own (see the module docstring).

    Windows (of one document or of several) are run ``batch_windows`` at a time, right-padded: a
    causal model's outputs at a position do not depend on what follows it, so each window scores
    as it would alone. ``quiet`` scores without a progress bar (the training loop's evaluation)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    # the document separator: EOS as in hare's packed stream; BOS for a tokenizer without EOS
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    nll = 0.0
    n_tok = n_bytes = n_words = n_docs = 0
    pending: list[tuple[list[int], int]] = []  # (window tokens incl. the last target, tokens it scores)

    def flush() -> float:
        width = max(len(w) for w, _ in pending) - 1
        inp = torch.zeros((len(pending), width), dtype=torch.long)
        for i, (w, _) in enumerate(pending):
            inp[i, :len(w) - 1] = torch.tensor(w[:-1])
        logits = model(input_ids=inp.to(device)).logits.float()
        total_nll = 0.0
        for i, (w, new) in enumerate(pending):
            n = len(w) - 1
            target = torch.tensor(w[n - new + 1:], device=logits.device)
            total_nll += F.cross_entropy(logits[i, n - new:n], target, reduction="sum").item()
        pending.clear()
        return total_nll

    with torch.no_grad():
        for text in (texts if quiet else progress(texts, desc="held-out perplexity", total=total, unit="doc")):
            ids = ([] if eos is None else [eos]) + tokenizer(text, add_special_tokens=False)["input_ids"]
            n_bytes += len(text.encode("utf-8"))
            n_words += len(re.split(r"\s+", text))
            n_docs += 1
            scored = 0  # tokens of the document already scored
            for start, end in rolling_windows(ids, max_len):
                new = end - scored  # the window scores its last ``new`` tokens
                pending.append((ids[start:end + 1], new))
                n_tok += new
                scored = end
                if len(pending) >= batch_windows:
                    nll += flush()
        if pending:
            nll += flush()
    loss = nll / max(n_tok, 1)
    return Perplexity(docs=n_docs, tokens=n_tok, bytes=n_bytes, words=n_words, loss=loss,
                      perplexity=math.exp(min(loss, 50)), bits_per_byte=nll / math.log(2) / max(n_bytes, 1),
                      byte_perplexity=math.exp(min(nll / max(n_bytes, 1), 50)),
                      word_perplexity=math.exp(min(nll / max(n_words, 1), 50)))
