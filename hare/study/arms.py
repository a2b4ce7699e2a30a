"""The study's arms: recipe overlays, data only.

An arm is a description, the synthetic parts it trains on (none, ``d2``, or ``d2`` and ``d3``) and
an overlay: recipe keys, deep-merged over the study's recipe once the study's own settings are in
(``hare.study.run.arm_recipe``). The built-in arms are ``arms.yaml``; a file of the same shape adds
arms or replaces them by name (``hare study --arms-file``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PACKAGED_ARMS = Path(__file__).with_name("arms.yaml")
ABLATIONS = Path(__file__).with_name("ablations.yaml")  # the hare arm without one principle at a time
DISTILL = Path(__file__).with_name("distill.yaml")  # the hare arm distilled from the packaged teacher


class Arm(BaseModel):
    """One arm of a study."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(description="What the arm's data is, one line (the report and the table show it).")
    synthetic: list[Literal["d2", "d3"]] = Field(
        default_factory=list, description="The teacher's parts trained on in a second stage (needs synth.enabled).")
    overlay: dict[str, Any] = Field(default_factory=dict, description="Recipe keys this arm sets (data only, and "
                                    "train.distill: the training signal).")

    @property
    def distills(self) -> bool:
        return bool((self.overlay.get("train") or {}).get("distill"))


def load_arms(extra: str | Path | None = None, ablations: bool = False, distill: bool = False) -> dict[str, Arm]:
    """The built-in arms, with ``ablations`` the ablation arms (``ablations.yaml``), with ``distill`` the
    distillation arms (``distill.yaml``), then (replacing any of the same name) those of the file ``extra``."""
    arms = _read(PACKAGED_ARMS)
    if ablations:
        arms.update(_read(ABLATIONS))
    if distill:
        arms.update(_read(DISTILL))
    if extra is not None:
        arms.update(_read(Path(extra)))
    return arms


def _read(path: Path) -> dict[str, Arm]:
    if not path.is_file():
        raise ValueError(f"arms file {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an arms file maps arm names to {{description, synthetic, overlay}}")
    out = {}
    for name, spec in raw.items():
        try:
            out[str(name)] = Arm.model_validate(spec)
        except ValidationError as e:
            raise ValueError(f"{path}: arm {name}: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
    return out


def deep_merge(base: dict, overlay: dict) -> dict:
    """``base`` with ``overlay`` merged in: mappings key by key, anything else replaced."""
    out = dict(base)
    for k, v in overlay.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
