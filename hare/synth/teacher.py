"""The teacher a recipe names: OpenAI-compatible endpoints, a local model folder, or a packaged model.

Also ``tiny_teacher``: a folder with a real tokenizer and chat template (the packaged SmolLM2's) and
a two-layer model with random weights, for tests and quick trials of the plumbing: it answers in
milliseconds, with text that depends on the prompt but means nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hare.synth.client import Backend, HttpBackend, LocalBackend


class TeacherError(ValueError):
    """The teacher settings cannot be used; the message says what to set."""


def teacher_folder(cfg) -> str | None:
    """The local model folder of a teacher section (``local`` or ``packaged``), or None for endpoints."""
    if cfg.packaged == "smollm2":
        from hare.core.packaged import smollm2_folder

        return str(smollm2_folder())
    return cfg.local


def teacher_dtype(cfg) -> str:
    """The precision a local teacher runs in: ``cfg.dtype``, with ``auto`` resolved to bfloat16 on a
    CUDA device that supports it or a CPU with AMX tiles (where its matrix products are 2-3x
    float32's), float32 elsewhere (a CPU without them runs bfloat16 slower than float32)."""
    if cfg.dtype != "auto":
        return cfg.dtype
    import torch

    if str(cfg.device).startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return "bfloat16" if str(cfg.device) == "cpu" and amx is not None and amx() else "float32"


def teacher_model(cfg) -> str:
    """The model name sent in requests (and part of every cache key): ``model``, or the local
    folder or packaged name, with ``@bfloat16`` when a local teacher runs in bfloat16
    (``teacher_dtype``: its answers are not float32's)."""
    if cfg.model:
        return cfg.model
    folder = cfg.local or (f"packaged:{cfg.packaged}" if cfg.packaged else None)
    if folder is None:
        raise TeacherError("synth.teacher.model: required with endpoints (the name the server serves)")
    dtype = teacher_dtype(cfg)
    return folder if dtype == "float32" else f"{folder}@{dtype}"


def make_backend(cfg, seed: int = 0) -> Backend:
    if cfg.endpoints:
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        return HttpBackend(list(cfg.endpoints), concurrency=cfg.concurrency, timeout=cfg.timeout,
                           max_retries=cfg.max_retries, backoff_base=cfg.backoff_base, api_key=key, seed=seed)
    folder = teacher_folder(cfg)
    if folder is None:
        raise TeacherError("synth.teacher: set endpoints (and model), local (a model folder) or packaged: smollm2")
    return LocalBackend(folder, batch_size=cfg.batch_size, device=cfg.device, dtype=teacher_dtype(cfg),
                        threads=cfg.threads, engine=cfg.engine, speculate=cfg.speculate)


def tiny_teacher(out: str | Path, tokenizer_from: str | Path | None = None, seed: int = 0) -> Path:
    """Write a tiny random-weight Llama with a real tokenizer and chat template to ``out``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out)
    if (out / "config.json").exists():
        return out
    if tokenizer_from is None:
        from hare.core.packaged import smollm2_folder

        tokenizer_from = smollm2_folder()
    tok = AutoTokenizer.from_pretrained(tokenizer_from, local_files_only=True)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
                      initializer_range=1.0)  # wide weights: answers that depend on the prompt
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def describe(cfg) -> dict[str, Any]:
    return {"endpoints": list(cfg.endpoints), "model": cfg.model, "local": cfg.local, "packaged": cfg.packaged}
