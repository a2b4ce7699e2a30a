"""Model presets: Mistral-architecture configurations by name (MistralConfig keyword arguments).

``hare-1.1b`` is the paper's HARE-1.1B (arXiv 2406.11410, section 4; the released config.json).
``0.25b`` is sized for the paper's data ablation (the paper gives only the size: its shape is ours,
TinyLlama-like proportions). ``tiny`` and ``small`` are for tests, demos and CPU experiments.
"""

from __future__ import annotations

from typing import Any

COMMON: dict[str, Any] = {
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "tie_word_embeddings": False,
    "sliding_window": None,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=4096, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024),
    "small": dict(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048),
    "0.25b": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=16,
                  num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048),
    "hare-1.1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048),
}


def check_model(preset: str, overrides: dict[str, Any]) -> None:
    """Raise ValueError for an unknown preset or an override that is no MistralConfig key
    (``rope_theta`` is accepted: the familiar spelling of ``rope_parameters.rope_theta``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset '{preset}'; presets: {', '.join(PRESETS)}")
    if not overrides:
        return  # nothing to check: transformers is not imported for a recipe that keeps the preset
    from transformers import MistralConfig

    known = set(MistralConfig().to_dict()) | {"rope_theta"}
    unknown = sorted(k for k in overrides if k not in known)
    if unknown:
        raise ValueError(f"model.overrides: unknown MistralConfig keys {unknown}")


def preset_config(name: str, **overrides: Any) -> dict[str, Any]:
    """MistralConfig keyword arguments of preset ``name`` with ``overrides`` applied key by key."""
    check_model(name, overrides)
    return {**COMMON, **PRESETS[name], **overrides}
