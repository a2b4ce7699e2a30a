"""Multiple-choice items scored by likelihood: the cloze formulation, for a model during training.

An item is a context and its choices, one of them gold. Each choice is scored as a continuation of
the context (lm-evaluation-harness's ``loglikelihood``: the context preceded by EOS, the choice's
tokens those of context + choice after the context's own), and three numbers come out per task:

- ``bits_per_byte``: the gold choice's negative log-likelihood in bits per UTF-8 byte of the choice,
  summed over items (the continuous "task likelihood" DataDecide (Magnusson et al. 2025) and
  Paloma use to rank data at small scale, where accuracy is noise);
- ``acc``: the share of items whose gold choice has the highest log-likelihood per byte (the
  cloze formulation OLMES (Gu et al. 2024) recommends for small models, normalized per byte as
  lm-eval's ``acc_norm`` and OLMES's "pmi/char" family are, so long choices are not penalized);
- ``correct_prob``: the gold choice's probability among the choices (softmax of their total
  log-likelihoods), averaged over items: DataDecide's "correct prob", continuous like the first.

Items are JSON Lines records ``{"task", "id", "context", "choices", "gold"}`` (``read_choice_items``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from hare.core.io import RecordError, jsonl_records


@dataclass
class ChoiceItem:
    task: str
    id: str
    context: str
    choices: list[str]
    gold: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def read_choice_items(path: str | Path) -> list[ChoiceItem]:
    """The items of a JSON Lines file; a malformed record raises ``RecordError`` (file and line)."""
    out = []
    for lineno, rec in jsonl_records(Path(path)):
        try:
            item = ChoiceItem(task=str(rec["task"]), id=str(rec["id"]), context=rec["context"],
                              choices=list(rec["choices"]), gold=int(rec["gold"]))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(Path(path), lineno, f"a choice item needs task, id, context, choices, gold ({e})")
        if not isinstance(item.context, str) or len(item.choices) < 2 or not 0 <= item.gold < len(item.choices) \
                or not all(isinstance(c, str) and c for c in item.choices):
            raise RecordError(Path(path), lineno, "a choice item needs a string context, two or more non-empty "
                              "string choices and a gold index among them")
        out.append(item)
    return out


def continuation_ids(tokenizer, context: str, choice: str, ctx: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(context tokens, choice tokens) as lm-eval splits them: the choice's tokens are those of
    context + choice after the context's own, so a word split across the boundary is scored whole
    (when the tokenizer merges across it, the choice is tokenized alone)."""
    ctx = ctx if ctx is not None else tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + choice, add_special_tokens=False)["input_ids"]
    if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
        return ctx, whole[len(ctx):]
    return ctx, tokenizer(choice, add_special_tokens=False)["input_ids"]


def score_choices(model, tokenizer, items: Iterable[ChoiceItem], max_len: int = 256, device=None,
                  batch: int = 16) -> list[list[float]]:
    """The log-likelihood (nats) of every choice of every item given its context. The context is
    cut from the left so context and choice fit ``max_len`` tokens; rows run ``batch`` at a time,
    right-padded (a causal model's outputs at a position do not depend on what follows it)."""
    import torch

    from hare.model.loss import LogitHead

    model.eval()
    device = device if device is not None else next(model.parameters()).device
    decoder = getattr(model, "get_decoder", lambda: None)()
    head = LogitHead.of(model) if decoder is not None else None
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    rows: list[tuple[int, int, list[int], int]] = []  # (item, choice, tokens, choice tokens)
    items = list(items)
    for i, it in enumerate(items):
        ctx_ids = tokenizer(it.context, add_special_tokens=False)["input_ids"]
        for j, ch in enumerate(it.choices):
            ctx, cont = continuation_ids(tokenizer, it.context, ch, ctx_ids)
            cont = cont[-max_len:]
            ids = ([] if eos is None else [eos]) + ctx + cont
            rows.append((i, j, ids[-(max_len + 1):], len(cont)))
    out = [[0.0] * len(it.choices) for it in items]
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r][2]))  # similar lengths share a batch
    with torch.no_grad():
        for start in range(0, len(order), batch):
            chunk = [rows[r] for r in order[start:start + batch]]
            width = max(len(ids) for _, _, ids, _ in chunk) - 1
            inp = torch.zeros((len(chunk), width), dtype=torch.long)
            for k, (_, _, ids, _) in enumerate(chunk):
                inp[k, :len(ids) - 1] = torch.tensor(ids[:-1])
            # the output layer (most of a small model's cost) only where a choice's tokens are predicted
            hidden = decoder(input_ids=inp.to(device)).last_hidden_state if head else \
                model(input_ids=inp.to(device)).logits.float()
            for k, (i, j, ids, n) in enumerate(chunk):
                end = len(ids) - 1
                target = torch.tensor(ids[end - n + 1:], device=hidden.device)
                if head:
                    lp = head.log_probs(hidden[k, end - n:end], target)[0]
                else:
                    lp = torch.log_softmax(hidden[k, end - n:end], -1).gather(1, target[:, None])
                out[i][j] = float(lp.sum())
    return out


def choice_metrics(items: list[ChoiceItem], scores: list[list[float]]) -> dict[str, dict[str, float]]:
    """Per task: ``bits_per_byte`` of the gold choices, ``acc`` (per-byte normalized) and
    ``correct_prob``, and the number of ``items`` (see the module docstring)."""
    per: dict[str, dict[str, float]] = {}
    for it, s in zip(items, scores):
        t = per.setdefault(it.task, {"nll": 0.0, "bytes": 0, "correct": 0, "prob": 0.0, "items": 0})
        nbytes = [max(1, len(c.encode("utf-8"))) for c in it.choices]
        t["nll"] += -s[it.gold]
        t["bytes"] += nbytes[it.gold]
        norm = [v / b for v, b in zip(s, nbytes)]
        t["correct"] += int(max(range(len(norm)), key=lambda k: (norm[k], -k)) == it.gold)
        top = max(s)
        t["prob"] += math.exp(s[it.gold] - top) / sum(math.exp(v - top) for v in s)
        t["items"] += 1
    return {task: {"bits_per_byte": t["nll"] / math.log(2) / t["bytes"], "acc": t["correct"] / t["items"],
                   "correct_prob": t["prob"] / t["items"], "items": t["items"]}
            for task, t in sorted(per.items())}
