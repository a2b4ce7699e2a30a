"""The model's configuration (the recipe key ``model``): a Mistral preset, overridable key by key."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from hare.core.config import Config


class ModelConfig(Config):
    """Mistral-architecture model from a preset, overridable key by key."""

    preset: str = Field("tiny", description="Preset name: tiny, small, 0.25b or hare-1.1b.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="MistralConfig keys that replace the preset's, e.g. num_hidden_layers."
    )

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        from hare.model.presets import check_model

        check_model(self.preset, self.overrides)
        return self

