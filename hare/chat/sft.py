"""Supervised fine-tuning on chat data with TRL's ``SFTTrainer``, and the ``sft`` step.

What hare sets on TRL, and why:

- ``assistant_only_loss``: the loss covers the tokens inside the template's ``{% generation %}``
  markers, i.e. what the assistant writes and its end-of-turn token (so the model learns to stop);
  system and user turns and the role headers are context only.
- ``packing`` with the ``bfd`` strategy: conversations are packed best-fit into ``max_length``
  sequences, which TRL trains padding-free: one row per batch whose ``position_ids`` restart at 0
  for every conversation. transformers builds the attention mask from those restarts (block
  diagonal, causal inside each block), so no token attends to another conversation.
- Unpacked (``packing: false``), ``padding_free`` flattens each batch the same way: its
  conversations, drawn afresh every epoch, become one row with restarting ``position_ids``, so no
  padding is computed (on the tool-calling benchmark's 46-token queries, padding to the longest
  of 8 made a third of the tokens). TRL does not truncate a flattened batch, so hare cuts each
  conversation to ``max_length`` itself and drops those left with no target token, as TRL does
  when it pads.
- Checkpoints are the Trainer's (``checkpoints/checkpoint-N``: weights as safetensors, optimizer,
  scheduler and RNG states, read back with ``weights_only``); a resumed run skips the batches it
  has seen and ends with the weights an uninterrupted run has.

- ``soup`` > 1: the fine-tuning runs that many times from the same start on the same held-out
  slice, with training seeds ``seed``, ``seed + 1``, ... (the batches' order, dropout), each in
  ``run-K/`` with its own checkpoints; ``model/`` is then the uniform model soup of the runs
  (Wortsman et al. 2022; ``hare.model.soup``) and the held-out loss is the soup's. A resumed soup
  keeps the runs that finished and continues the one that did not.

Outputs (in the step's folder): ``metrics.jsonl`` (the pretraining layout: step, stage, loss, lr,
grad_norm, tokens, tokens_per_s, and eval_loss on the steps that were evaluated), ``quarantine.jsonl``
(records that are not chat), ``checkpoints/``, and ``model/``: a Hugging Face folder whose tokenizer
carries the chat template and whose generation config stops at the end-of-turn token.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hare.chat.data import read_chats, split
from hare.chat.template import has_generation_markers, prepare, without_generation_markers
from hare.core.io import RecordError, atomic_dir, atomic_open, read_json, read_jsonl, write_json, write_jsonl
from hare.core.progress import Progress
from hare.core.step import Stats
from hare.chat.config import SftConfig
from hare.core import dist

log = logging.getLogger("hare.chat")


class Interrupted(RuntimeError):
    """Raised by ``stop_after`` to end a run as a crash would (no checkpoint at that step)."""


def _complete_lines(path: Path) -> list[dict]:
    out: list[dict] = []
    try:
        out.extend(read_jsonl(path))
    except RecordError:  # a half-written last line of a killed run
        pass
    return out


def _callbacks(out: Path, total: int, resume_step: int, stop_after: int | None, main: bool = True):
    from transformers import TrainerCallback

    metrics_path = out / "metrics.jsonl"

    class Metrics(TrainerCallback):
        """Writes metrics.jsonl in the pretraining layout and drives hare's progress bar."""

        def __init__(self):
            kept = [m for m in _complete_lines(metrics_path) if m["step"] <= resume_step] \
                if resume_step and metrics_path.exists() else []
            if main:  # under torchrun the first process writes
                with atomic_open(metrics_path) as f:  # drop lines logged after the checkpoint resumed from
                    for m in kept:
                        f.write(json.dumps(m) + "\n")
            self.f = open(metrics_path if main else os.devnull, "a", encoding="utf-8")
            self.tokens_base = kept[-1]["tokens"] if kept else 0  # TRL counts tokens from 0 in every process
            self.seen = 0
            self.t = time.perf_counter()
            self.pending: dict | None = None
            self.bar = Progress(total=total, initial=resume_step, desc="sft", unit="step", disable=not main)

        def _flush(self):
            if self.pending is not None:
                self.f.write(json.dumps(self.pending) + "\n")
                self.f.flush()
                self.pending = None

        def on_step_end(self, args, state, control, **kw):
            self._flush()
            if state.global_step == state.max_steps:  # the last step is always logged
                control.should_log = True
            self.bar.update(state.global_step - self.bar.n)
            if stop_after is not None and state.global_step >= stop_after:
                raise Interrupted(f"stopped after step {state.global_step}")

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if self.f.closed:  # the final evaluation: written by ``sft`` itself
                return
            if "loss" in logs:
                self._flush()
                now = time.perf_counter()
                n = int(logs.get("num_tokens", 0))
                tps = (n - self.seen) / max(now - self.t, 1e-9)
                self.seen, self.t = n, now
                self.pending = {"step": state.global_step, "stage": "sft", "loss": round(float(logs["loss"]), 5),
                                "lr": float(logs.get("learning_rate", 0.0)),
                                "grad_norm": round(float(logs.get("grad_norm", float("nan"))), 5),
                                "tokens": self.tokens_base + n, "tokens_per_s": round(tps, 1)}
                self.bar.set_postfix(loss=f"{logs['loss']:.3f}", tok_s=f"{tps:,.0f}", refresh=False)
            if "eval_loss" in logs:
                if self.pending is None or self.pending["step"] != state.global_step:
                    self._flush()
                    self.pending = {"step": state.global_step, "stage": "sft"}
                self.pending["eval_loss"] = round(float(logs["eval_loss"]), 5)

        def on_save(self, args, state, control, **kw):
            self._flush()

        def on_train_end(self, args, state, control, **kw):
            self.close()

        def close(self):
            self._flush()
            if not self.f.closed:
                self.f.close()
            self.bar.close()

    return Metrics()


def last_checkpoint(folder: Path) -> Path | None:
    """The latest complete Trainer checkpoint in ``folder`` (one with its trainer state written)."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def load_base(base: str | Path, dtype=None):
    """Model and tokenizer of a local Hugging Face folder (never the hub)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = Path(base)
    if not (base / "config.json").exists():
        raise FileNotFoundError(f"{base}: not a Hugging Face model folder (no config.json)")
    tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True, dtype=dtype)
    return model, tok


def build_trainer(model, tokenizer, train_rows: list, eval_rows: list, cfg: SftConfig, out: Path, seed: int,
                  total_steps: int | None = None, callbacks: list | None = None):
    """An ``SFTTrainer`` over conversations (lists of turns) with hare's settings (module docstring)."""
    import datasets
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()

    device = cfg.device
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    flatten = cfg.padding_free and not cfg.packing
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr, lr_scheduler_type=cfg.schedule, warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, neftune_noise_alpha=cfg.neftune_noise_alpha,
        max_grad_norm=cfg.grad_clip if cfg.grad_clip else 1e9,
        max_steps=total_steps or -1, num_train_epochs=cfg.epochs,
        logging_steps=cfg.log_every, save_steps=cfg.checkpoint_every, save_total_limit=cfg.keep_checkpoints,
        eval_strategy="steps" if eval_rows else "no", eval_steps=cfg.eval_every,
        seed=seed, data_seed=seed, use_cpu=on_cpu, bf16=not on_cpu and torch.cuda.is_bf16_supported(),
        report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        # TRL leaves max_length to the caller when it flattens unpacked batches (truncated below)
        max_length=None if flatten else cfg.max_length, packing=cfg.packing, packing_strategy="bfd",
        padding_free=cfg.packing or cfg.padding_free, gradient_checkpointing=cfg.activation_checkpointing,
        assistant_only_loss=True, dataset_num_proc=None,
    )
    peft_config = None
    if cfg.lora.enabled:
        from peft import LoraConfig as PeftLora

        peft_config = PeftLora(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                               target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
        train_dataset=Dataset.from_list([{"messages": c} for c in train_rows]),
        eval_dataset=Dataset.from_list([{"messages": c} for c in eval_rows]) if eval_rows else None,
        callbacks=callbacks or [],
    )
    if flatten:
        trainer.train_dataset = truncated(trainer.train_dataset, cfg.max_length)
        if trainer.eval_dataset is not None:
            trainer.eval_dataset = truncated(trainer.eval_dataset, cfg.max_length)
    return trainer


def truncated(dataset, max_length: int):
    """Conversations cut to their first ``max_length`` tokens, those left without a target token
    dropped, as TRL does when it pads (it leaves this to the caller when it flattens a batch)."""
    if not any(len(ids) > max_length for ids in dataset["input_ids"]):
        return dataset
    # TRL has folded the assistant masks into the labels by now: those two columns are all there is
    dataset = dataset.map(lambda r: {"input_ids": r["input_ids"][:max_length], "labels": r["labels"][:max_length]})
    return dataset.filter(lambda r: any(t != -100 for t in r["labels"]))


def export(model, tokenizer, folder: Path) -> None:
    """Save a Hugging Face folder atomically: built aside, then renamed over ``folder``."""
    if hasattr(model, "merge_and_unload"):  # LoRA: the export holds merged, plain weights
        model = model.merge_and_unload()
    model.config.use_cache = True
    template = tokenizer.chat_template
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if isinstance(template, str):
            tokenizer.chat_template = without_generation_markers(template)
        try:
            tokenizer.save_pretrained(tmp)
        finally:
            tokenizer.chat_template = template


def sft(base: str | Path, data: list[str | Path], cfg: SftConfig, out: Path, seed: int = 1234,
        resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Fine-tune the model folder ``base`` on the chat files ``data``; writes ``out/model``.

    With ``cfg.tools`` (a function library), the base first gets one functional token per function
    (``out/base-tools``, initialised from the descriptions) and the export carries the library
    (``tools.json``). ``resume`` continues from the last checkpoint in ``out/checkpoints``;
    ``stop_after`` ends the run at that step as a crash would (for tests)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chats = read_chats(data, cfg.format)
    write_jsonl(out / "quarantine.jsonl", chats.quarantined)
    if not chats.conversations:
        raise ValueError(f"no chat records in {', '.join(map(str, data))} ({len(chats.quarantined)} quarantined; "
                         f"see {out / 'quarantine.jsonl'})")
    rows = split(chats.conversations, cfg.eval_fraction, seed)
    library = None
    if cfg.tools:
        from hare.chat.toolcall.library import load_library
        from hare.chat.toolcall.tokens import prepare_tool_base

        library = load_library(cfg.tools)
        prepared = out / "base-tools"
        if not (prepared / "config.json").exists() or not resume:
            prepare_tool_base(base, library, prepared)
        base = prepared
    if not resume:  # a fresh start: what an earlier run (one fine-tuning, or a soup's) left goes
        for path in [out / "checkpoints", out / "metrics.jsonl", *sorted(out.glob("run-*"))]:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    if cfg.soup > 1:
        return _soup_of_runs(base, chats, rows, cfg, out, seed, resume, stop_after, library)
    res = _fine_tune(base, chats, rows, cfg, out, seed, resume, stop_after)
    if library is not None and not res["interrupted"]:
        from hare.chat.toolcall.openai import save_library

        save_library(library, out / "model")
    return res


RUN_RESULT = "result.json"  # a soup's finished run: its stats, so a resumed soup keeps the run


def _soup_of_runs(base: Path, chats, rows: tuple[list, list], cfg: SftConfig, out: Path, seed: int,
                  resume: bool, stop_after: int | None, library) -> dict[str, Any]:
    """``sft`` with ``cfg.soup`` runs: each in ``out/run-K`` with training seed ``seed + K`` (the
    same start and held-out slice), then their uniform soup as ``out/model`` and its held-out loss."""
    from hare.model.soup import soup

    results = []
    for k in range(cfg.soup):
        run = out / f"run-{k}"
        done = run / RUN_RESULT
        if resume and done.is_file() and (run / "model" / "config.json").is_file():
            log.info("sft: soup run %d of %d finished before; kept", k + 1, cfg.soup)
            results.append(read_json(done))
            continue
        done.unlink(missing_ok=True)
        log.info("sft: soup run %d of %d (training seed %d)", k + 1, cfg.soup, seed + k)
        res = _fine_tune(base, chats, rows, cfg, run, seed, resume, stop_after, train_seed=seed + k)
        res.pop("model")
        if res["interrupted"]:
            return {**res, "model": None, "runs": results}
        if dist.is_main():
            if library is not None:
                from hare.chat.toolcall.openai import save_library

                save_library(library, run / "model")
            write_json(done, {**res, "seed": seed + k})
        results.append({**res, "seed": seed + k})
    if dist.is_main():
        soup([out / f"run-{k}" / "model" for k in range(cfg.soup)], out / "model", replace=True)
    dist.barrier()
    first = results[0]
    return {"model": None, "step": first["step"], "interrupted": False,
            "final_loss": round(sum(r["final_loss"] for r in results) / len(results), 5),
            "eval_loss": _held_out_loss(out / "model", rows[1], cfg, out, seed) if rows[1] else None,
            "conversations": first["conversations"], "heldout": first["heldout"],
            "quarantined": first["quarantined"], "records": first["records"],
            "tokens": sum(r["tokens"] for r in results),
            "tokens_per_s": round(sum(r["tokens_per_s"] for r in results) / len(results), 1),
            "runs": [{"seed": r["seed"], "step": r["step"], "final_loss": r["final_loss"],
                      "eval_loss": r["eval_loss"]} for r in results]}


def _held_out_loss(model_dir: Path, eval_rows: list, cfg: SftConfig, out: Path, seed: int) -> float:
    """The held-out loss of the exported model ``model_dir`` on the conversations ``sft`` held out,
    computed by the same trainer as during fine-tuning."""
    model, tok = load_base(model_dir)
    _chat_template(tok, model, cfg.template, model_dir)  # the training template, with its generation markers
    plain = cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"enabled": False})})
    with tempfile.TemporaryDirectory(dir=out, prefix=".eval-") as tmp:  # the trainer wants a folder; it keeps nothing
        trainer = build_trainer(model, tok, eval_rows, eval_rows, plain, Path(tmp), seed, total_steps=1)
        return round(float(trainer.evaluate()["eval_loss"]), 5)


def _chat_template(tok, model, template: str, base: str | Path) -> str:
    """``prepare``, and for ``template: tokenizer`` a check that the template marks the assistant's
    tokens (or that TRL can patch it to); returns the end-of-turn token."""
    eot = prepare(tok, model, template)
    if template == "tokenizer" and not has_generation_markers(tok.chat_template):
        from trl.chat_template_utils import get_training_chat_template

        try:
            get_training_chat_template(tok)
        except ValueError as e:
            raise ValueError(f"sft.template 'tokenizer': the chat template of {base} does not mark the assistant's "
                             f"tokens with {{% generation %}} and TRL cannot patch it ({e}); use template "
                             "'hare' or 'chatml'") from None
    return eot


def _fine_tune(base: str | Path, chats, rows: tuple[list, list], cfg: SftConfig, out: Path, seed: int,
               resume: bool, stop_after: int | None, train_seed: int | None = None) -> dict[str, Any]:
    """``sft``'s fine-tuning of the chats ``sft`` read and split (``rows``: training and held-out
    conversations): the template prepared, TRL's trainer run, the model exported and its metrics
    completed with the final evaluation. ``seed`` draws new tokens' embeddings; ``train_seed``
    (default: ``seed``) orders the batches."""
    import torch

    train_seed = seed if train_seed is None else train_seed
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    train_rows, eval_rows = rows
    model, tok = load_base(base)
    torch.manual_seed(seed)  # the new tokens' embeddings are drawn around the mean of the old ones
    eot = _chat_template(tok, model, cfg.template, base)

    ckpt_dir = out / "checkpoints"
    start = last_checkpoint(ckpt_dir) if resume else None
    if not resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    resume_step = int(start.name.split("-")[1]) if start else 0
    trainer = build_trainer(model, tok, train_rows, eval_rows, cfg, out, train_seed, total_steps=cfg.max_steps)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # metrics.jsonl and hare's bar say it instead
    total = trainer.args.max_steps if trainer.args.max_steps > 0 else _planned_steps(trainer)
    main = trainer.is_world_process_zero()
    metrics = _callbacks(out, total, resume_step, stop_after, main)
    trainer.add_callback(metrics)
    log.info("sft: %d conversations (%d held out, %d quarantined), %d steps, template %s (stops at %s)%s",
             len(chats.conversations), len(eval_rows), len(chats.quarantined), total, cfg.template, eot,
             f", resuming from {start.name}" if start else "")
    try:
        result = trainer.train(resume_from_checkpoint=str(start) if start else None)
    except Interrupted:
        metrics.close()
        return {"model": trainer.model, "step": trainer.state.global_step, "interrupted": True}
    finally:
        metrics.close()
    eval_loss = round(float(trainer.evaluate()["eval_loss"]), 5) if eval_rows else None
    if main:
        export(trainer.model, tok, out / "model")
    lines = _complete_lines(out / "metrics.jsonl")
    if eval_loss is not None and lines and main:  # the final evaluation goes on the last line
        if lines[-1]["step"] == trainer.state.global_step:
            lines[-1]["eval_loss"] = eval_loss
        else:
            lines.append({"step": trainer.state.global_step, "stage": "sft", "eval_loss": eval_loss})
        write_jsonl(out / "metrics.jsonl", lines)
    trained = [m for m in lines if "loss" in m]
    return {"model": trainer.model, "step": trainer.state.global_step, "interrupted": False,
            "final_loss": trained[-1]["loss"] if trained else float(result.training_loss),
            "eval_loss": eval_loss, "conversations": len(train_rows), "heldout": len(eval_rows),
            "quarantined": len(chats.quarantined), "records": chats.records,
            "tokens": trained[-1]["tokens"] if trained else 0,
            "tokens_per_s": round(sum(m["tokens_per_s"] for m in trained) / len(trained), 1) if trained else 0.0}


def _planned_steps(trainer) -> int:
    import math

    per_epoch = math.ceil(len(trainer.get_train_dataloader()) / trainer.args.gradient_accumulation_steps)
    return max(1, math.ceil(per_epoch * trainer.args.num_train_epochs))


class SftStats(Stats):
    enabled: bool
    step: int = 0
    final_loss: float | None = None
    eval_loss: float | None = None
    records: int = 0
    conversations: int = 0
    heldout: int = 0
    quarantined: int = 0
    tokens: int = 0
    tokens_per_s: float = 0.0
    runs: list[dict] = []  # a soup's runs: seed, step, final_loss, eval_loss


def sft_metrics(folder: Path) -> list[dict]:
    """A fine-tuning folder's training-loss records (the report plots them); a soup's carry their
    run's training seed (``seed``), one run after another."""
    path = folder / "metrics.jsonl"
    if path.exists():
        return [m for m in _complete_lines(path) if "loss" in m]
    out = []
    for run in sorted(folder.glob("run-*"), key=lambda p: int(p.name.split("-")[1])):
        seed = read_json(run / RUN_RESULT).get("seed") if (run / RUN_RESULT).is_file() else None
        if (run / "metrics.jsonl").exists():
            out += [{**m, "seed": seed} for m in _complete_lines(run / "metrics.jsonl") if "loss" in m]
    return out
