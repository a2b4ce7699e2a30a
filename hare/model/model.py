"""Build a Mistral-architecture causal LM from a preset, and account for its parameters and FLOPs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from hare.model.loss import linear_cross_entropy
from hare.model.presets import preset_config


def mistral_config(preset: str, overrides: dict[str, Any] | None = None, vocab_size: int | None = None):
    """A ``transformers.MistralConfig`` from a preset; ``vocab_size`` (the tokenizer's) wins over both."""
    from transformers import MistralConfig

    overrides = dict(overrides or {})
    if "rope_theta" in overrides:  # the familiar spelling; transformers 5 keeps it in rope_parameters
        overrides["rope_parameters"] = {"rope_type": "default", "rope_theta": float(overrides.pop("rope_theta"))}
    kwargs = preset_config(preset, **overrides)
    if vocab_size is not None:
        kwargs["vocab_size"] = vocab_size
    return MistralConfig(**kwargs)


def build_model(config, seed: int = 0, attn_implementation: str = "sdpa"):
    """A freshly initialised ``MistralForCausalLM``; the seed fixes the initial weights."""
    from transformers import MistralForCausalLM

    torch.manual_seed(seed)
    config._attn_implementation = attn_implementation
    return MistralForCausalLM(config)


class NextTokenLoss(torch.nn.Module):
    """Training forward of a causal LM: ``forward(x, y)`` is the mean cross-entropy of predicting ``y`` from ``x``.

    ``chunked`` (the default) takes the loss from the final hidden states with ``linear_cross_entropy``,
    a chunk of tokens at a time, so the logits are never materialized whole; otherwise the model's own
    forward gives the logits (the path a sharded model needs: FSDP gathers the LM head's weight only
    inside that forward). No key/value cache is built: training never reads it.

    ``forward(x, y, teacher)`` is the distillation loss instead, ``(1 - alpha) CE + alpha T^2 KL``
    against ``teacher`` (``hare.model.distill``: ``("sparse", ids, logp)`` or ``("dense", logp)``).
    """

    def __init__(self, lm, chunked: bool = True, alpha: float = 0.0, temperature: float = 1.0):
        super().__init__()
        self.lm = lm
        self.chunked = chunked
        self.alpha, self.temperature = alpha, temperature

    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher: tuple | None = None) -> torch.Tensor:
        if teacher is not None:
            return self._distill(x, y, teacher)
        if self.chunked:
            h = self.lm.model(input_ids=x, use_cache=False).last_hidden_state
            return linear_cross_entropy(h, self.lm.lm_head.weight, y)
        logits = self.lm(input_ids=x, use_cache=False).logits
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    def _distill(self, x: torch.Tensor, y: torch.Tensor, teacher: tuple) -> torch.Tensor:
        from hare.model.distill import distill_terms, linear_distill_loss

        if self.chunked:
            h = self.lm.model(input_ids=x, use_cache=False).last_hidden_state
            return linear_distill_loss(h, self.lm.lm_head.weight, y, teacher, self.alpha, self.temperature)
        logits = self.lm(input_ids=x, use_cache=False).logits
        n = y.numel()
        flat = (teacher[0], *(t.reshape(n, -1) for t in teacher[1:]))
        return distill_terms(logits.reshape(n, -1), y.reshape(-1), flat, self.alpha, self.temperature) / n


def count_params(model, non_embedding: bool = False) -> int | None:
    """Parameters of a model, or of a model folder's safetensors files read from their headers (no
    weights loaded; None for a folder without safetensors files)."""
    if isinstance(model, (str, Path)):
        from safetensors import safe_open

        files = sorted(Path(model).glob("*.safetensors"))
        if not files:
            return None
        n = 0
        for f in files:
            with safe_open(str(f), "pt") as st:
                n += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
        return n
    n = sum(p.numel() for p in model.parameters())
    if non_embedding:
        n -= model.get_input_embeddings().weight.numel()
    return n


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token: 6 N (non-embedding weights incl. the LM head) + 12 L H T attention.

    The PaLM paper's appendix B estimate, as nanoGPT's ``estimate_mfu`` uses it.
    """
    h, L, ffn = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * ffn
    n = L * per_layer + h * config.vocab_size
    return 6 * n + 12 * L * h * seq_len


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of known accelerators (for MFU); None where it is not known (CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12),
                       ("A10", 125e12), ("4090", 165e12)):
        if key in name:
            return flops
    return None
