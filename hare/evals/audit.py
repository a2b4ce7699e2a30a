"""Leakage audit of a trained model: n-gram accuracy on benchmarks and on their rewritten twins.

The paper's method (HARE §5, after Xu et al. 2024, "Benchmarking Benchmark Leakage"): text =
question + answer; tokenize; take k = 5 start points evenly spaced over the sequence; at each, the
model greedily continues the prefix for n = 5 tokens, and the point is a hit only if all 5 equal the
reference. A sample scores hits / k; a split's accuracy is the mean over at most 3000 samples.
Δ = acc(D) − acc(D′), with D′ the rewritten twin: a model that memorised D scores clearly higher
on D than on D′, a clean model about the same. A twin whose audited text (question + answer) came
back unchanged would score Δ = 0 whatever the model memorised, so such pairs are counted
(``twins_unchanged``) and left out of D′ and Δ; ``D`` is still the accuracy on every sampled item
and ``D_paired`` the accuracy on the items whose twin changed, the ones Δ compares.

Greedy continuation of the reference prefix reproduces the reference for n tokens exactly when,
at each of those n positions, the model's top token given the reference prefix is the reference
token. So one teacher-forced forward pass per text scores all k start points; no generation loop.

For a model trained by hare, the audit also gives GPT-3's "clean subset" view: which sampled items
share a 13-gram with the run's training data, and the scores on the clean items beside all items.

Outputs: audit.json (``AuditResult``) and audit.md; in a run folder (``runs/<name>/audit/``) the
report shows them (``AUDIT``). The report reads this module to list its sections, so numpy, torch and
the n-gram index are imported by the functions that use them.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from hare.core.evalsets import BenchmarkMissing, Item, load_benchmark
from hare.core.documents import read_shards
from hare.core.io import write_json, write_text
from hare.core.progress import progress
from hare.core.step import ReportSection, Stats

if TYPE_CHECKING:
    import torch

log = logging.getLogger("hare.evals.audit")


def audit_text(item: Item) -> str:
    """The text the audit scores: question followed by its answer."""
    return f"{item.question} {item.answer_text}".strip()


def _encode(tokenizer, text: str, max_len: int) -> list[int]:
    ids = tokenizer(text)["input_ids"]
    bos = tokenizer.bos_token_id
    if not ids or ids[0] != bos:
        # A tokenizer that adds no BOS (hare's) starts documents after an EOS, as in the packed stream.
        sep = bos if bos is not None and tokenizer.eos_token_id is None else tokenizer.eos_token_id
        if sep is not None:
            ids = [sep] + ids
    return ids[:max_len]


def start_points(length: int, n: int, k: int) -> list[int]:
    """k start points evenly spaced so that each n-token target fits; position 0 stays context."""
    if length - n < 1:
        return []
    import numpy as np

    return sorted({int(p) for p in np.linspace(1, length - n, k)})


def ngram_accuracy(model, tokenizer, texts: list[str], n: int = 5, k: int = 5, batch_size: int = 16,
                   device: str | torch.device = "cpu", desc: str = "n-gram accuracy") -> list[float | None]:
    """Per text: the share of its k start points where greedy decoding reproduces the next n tokens."""
    import torch

    with torch.no_grad():
        return _ngram_accuracy(model, tokenizer, texts, n, k, batch_size, device, desc)


def _ngram_accuracy(model, tokenizer, texts, n, k, batch_size, device, desc) -> list[float | None]:
    import torch

    model.eval()
    max_len = getattr(model.config, "max_position_embeddings", 2048) or 2048
    encoded = [_encode(tokenizer, t, max_len) for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    scores: list[float | None] = [None] * len(texts)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress(batches, desc=desc, total=len(batches), unit="batch"):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, :len(encoded[i])] = torch.tensor(encoded[i])
            mask[r, :len(encoded[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        correct = (logits[:, :-1].argmax(-1).cpu() == ids[:, 1:])  # correct[t]: token t+1 predicted
        for r, i in enumerate(batch):
            points = start_points(len(encoded[i]), n, k)
            if points:
                scores[i] = sum(bool(correct[r, p - 1:p - 1 + n].all()) for p in points) / len(points)
    return scores


def choice_accuracy(model, tokenizer, items: list[Item], device: str | torch.device = "cpu") -> list[float]:
    """Multiple-choice accuracy per item: the choice with the highest log-likelihood after
    "Question: ...\\nAnswer:" (lm-evaluation-harness's ARC prompt, used here for every benchmark)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    out = []
    for it in items:
        ctx = tokenizer(f"Question: {it.question}\nAnswer:")["input_ids"]
        scores = []
        for ch in it.choices:
            cont = tokenizer(" " + ch, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([(ctx + cont)[-2048:]], device=device)
            with torch.no_grad():
                logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            tgt = ids[0, 1:]
            scores.append(logp[torch.arange(len(tgt)), tgt][-len(cont):].sum().item())
        out.append(float(max(range(len(scores)), key=scores.__getitem__) == it.answer))  # the first best
    return out


def sample_items(items: list[Item], max_items: int, seed: int) -> list[Item]:
    if len(items) <= max_items:
        return items
    picked = sorted(random.Random(seed).sample(range(len(items)), max_items))
    return [items[i] for i in picked]


def seen_items(items: list[Item], training_docs, n: int = 13) -> set[int]:
    """Indexes of ``items`` that share an ``n``-gram with any training document."""
    from hare.core.ngrams import EvalText, NgramIndex
    from hare.core.text import match_words

    index = NgramIndex(n)
    for i, it in enumerate(items):
        index.add(EvalText(it.benchmark, str(i), it.text()))
    index.finalize()
    dirty: set[int] = set()
    for doc in training_docs:
        _, hashes = index.lookup(match_words(doc.text))
        dirty.update(int(index.item_of(h).id) for h in hashes.tolist())
    return dirty


class AuditRow(BaseModel):
    """One benchmark split: n-gram accuracy (percent) on D and on its rewritten twin D′, and Δ."""

    benchmark: str
    split: str
    items: int
    D: float | None
    D_rewritten: float | None  # over the twins that differ from their item
    delta: float | None  # D_paired - D_rewritten
    twins_unchanged: int = 0  # twins whose question + answer text equals the item's: left out of Δ
    D_paired: float | None = None  # D over the items whose twin differs
    items_seen_in_training: int | None = None
    D_clean: float | None = None
    choice_acc: float | None = None
    choice_acc_clean: float | None = None


class AuditResult(Stats):
    """``audit.json``."""

    model: str
    rewriter: str
    n: int
    k: int
    max_items: int
    rows: list[AuditRow]
    missing: dict[str, str] = {}
    clean_subset: bool = False


class AuditSection(ReportSection):
    """The audit of a run's model, ``runs/<name>/audit/``, in the run's report."""

    name = "audit"
    stats: ClassVar[type[Stats]] = AuditResult
    stats_file = "audit.json"


AUDIT = AuditSection()


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return 100.0 * sum(vals) / len(vals) if vals else None


def run_audit(model_dir: str | Path, benchmarks: list[str], bench_dir: str | Path | None, out_dir: str | Path,
              rewriter, max_items: int = 3000, splits: list[str] | None = None, n: int = 5, k: int = 5,
              batch_size: int = 16, device: str = "cpu", run_dir: str | Path | None = None, seed: int = 0) -> dict:
    """Audit ``model_dir`` on every split of ``benchmarks``; writes audit.json and audit.md in ``out_dir``
    and returns audit.json's content."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32).to(device)
    train_docs = None
    if run_dir is not None:
        train_dir = Path(run_dir) / "mix" / "train"
        if not train_dir.is_dir():
            raise FileNotFoundError(f"{train_dir}: no training data of a hare run (needed for the clean-subset view)")
        train_docs = train_dir
    rows, missing = [], {}
    for name in benchmarks:
        try:
            items = load_benchmark(name, bench_dir)
        except BenchmarkMissing as e:
            missing[name] = f"no file found; expected {e}"
            log.warning("audit: %s skipped, no file found (expected %s)", name, e)
            continue
        for split in sorted({it.split for it in items}):
            if splits and split not in splits:
                continue
            sample = sample_items([it for it in items if it.split == split], max_items, seed)
            twins = [rewriter.rewrite(it) for it in progress(sample, desc=f"rewrite {name}/{split}", unit="item")]
            changed = [i for i, (it, tw) in enumerate(zip(sample, twins)) if audit_text(it) != audit_text(tw)]
            acc_d = ngram_accuracy(model, tok, [audit_text(it) for it in sample], n, k, batch_size, device,
                                   desc=f"{name}/{split} D")
            acc_r = ngram_accuracy(model, tok, [audit_text(twins[i]) for i in changed], n, k, batch_size, device,
                                   desc=f"{name}/{split} D'")
            d, paired, r = _mean(acc_d), _mean([acc_d[i] for i in changed]), _mean(acc_r)
            row = AuditRow(benchmark=name, split=split, items=len(sample), D=d, D_rewritten=r,
                           delta=None if paired is None or r is None else paired - r,
                           twins_unchanged=len(sample) - len(changed), D_paired=paired)
            if row.twins_unchanged:
                log.info("audit %s/%s: %d of %d rewritten twins are unchanged and left out of delta", name, split,
                         row.twins_unchanged, len(sample))
            if train_docs is not None:
                dirty = seen_items(sample, read_shards(train_docs))
                clean = [i for i in range(len(sample)) if i not in dirty]
                row.items_seen_in_training, row.D_clean = len(dirty), _mean([acc_d[i] for i in clean])
                if all(it.choices and isinstance(it.answer, int) for it in sample):
                    acc = choice_accuracy(model, tok, sample, device)
                    row.choice_acc, row.choice_acc_clean = _mean(acc), _mean([acc[i] for i in clean])
            rows.append(row)
            log.info("audit %s/%s: D %.2f, D' %.2f, delta %.2f over %d items", name, split, d or 0, r or 0,
                     row.delta or 0, len(sample))
    result = AuditResult(model=str(model_dir), rewriter=getattr(rewriter, "name", "?"), n=n, k=k,
                         max_items=max_items, rows=rows, missing=missing, clean_subset=train_docs is not None)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "audit.json", result.model_dump(mode="json"))
    write_text(out_dir / "audit.md", markdown(result))
    return result.model_dump(mode="json")


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown(result: AuditResult | dict) -> str:
    """The paper's layout: per benchmark and split, n-gram accuracy on D′ and D, and Δ (percent)."""
    result = AuditResult.model_validate(result)
    lines = [f"Leakage audit of `{result.model}` — {result.n}-gram accuracy at {result.k} start points, "
             f"rewriter: {result.rewriter}", "",
             "| benchmark | split | items | D′ (rewritten) | D (original) | Δ | twins unchanged |",
             "|---|---|---|---|---|---|---|"]
    for r in result.rows:
        share = f"{r.twins_unchanged} ({100 * r.twins_unchanged / r.items:.1f} %)" if r.items else "–"
        lines.append(f"| {r.benchmark} | {r.split} | {r.items} | {_f(r.D_rewritten)} | {_f(r.D)} | {_f(r.delta)} "
                     f"| {share} |")
    if any(r.twins_unchanged for r in result.rows):
        lines += ["", "Δ compares each item with its twin only where the twin's question + answer text differs "
                  "(D on those items: " + ", ".join(f"{r.benchmark}/{r.split} {_f(r.D_paired)}" for r in result.rows
                                                    if r.twins_unchanged) + "); unchanged twins are left out."]
    if result.clean_subset:
        lines += ["", "Clean subset (items sharing no 13-gram with the training data):", "",
                  "| benchmark | split | items | seen in training | n-gram acc (all) | n-gram acc (clean) | "
                  "choice acc (all) | choice acc (clean) |", "|---|---|---|---|---|---|---|---|"]
        for r in result.rows:
            lines.append(f"| {r.benchmark} | {r.split} | {r.items} | {r.items_seen_in_training} | "
                         f"{_f(r.D)} | {_f(r.D_clean)} | {_f(r.choice_acc)} | {_f(r.choice_acc_clean)} |")
    for name, why in result.missing.items():
        lines.append(f"\n{name}: {why}")
    return "\n".join(lines) + "\n"
