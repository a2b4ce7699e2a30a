"""Typed configuration: the base of every recipe section, the markers that say how a key is used,
and the walks over them.

Each stage owns the models of its recipe keys, beside its code (``hare/corpus/config.py``,
``hare/train/config.py``...); ``hare.recipe`` composes them into one recipe. Every section is a
pydantic model with ``extra="forbid"``, so a misspelled or unknown key fails with its key path and
the keys allowed there; field descriptions are the documentation (``hare schema`` prints them).

Markers on fields (``json_schema_extra``), declared here once; the runner, the recipe loader and
``hare schema`` read them:

- ``EXECUTION``: how the work is run, never what it produces (worker counts, devices, logging and
  checkpoint cadence). Never part of a step's fingerprint: changing it neither redoes a finished
  step nor throws away the work of an interrupted one.
- ``CONTINUABLE``: changes the result, but a step can continue its earlier work under the new value
  (``train.max_steps`` on a constant or warmup-stable-decay schedule). The step is run again and
  decides what of its earlier work still holds.
- ``input_path(...)``: a file or folder the run reads. A relative one is resolved against the
  recipe's folder when the recipe is loaded, and a missing one fails before any work starts
  (``input_paths`` walks them). Marks combine: ``{**EXECUTION, **input_path("dir")}``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

EXECUTION: dict[str, Any] = {"hare": "execution"}
FINGERPRINT = "hare_fingerprint"  # the serialization context key of ``config_dump``
CONTINUABLE: dict[str, Any] = {"hare": "continuable"}


def input_path(kind: Literal["any", "file", "dir"] = "any", glob: bool = False) -> dict[str, Any]:
    """The marker of a field naming an input file or folder (or, for a list field, several):
    ``kind`` says what must exist; ``glob``: a pattern matching files is accepted too."""
    return {"hare_path": kind, "hare_glob": glob}


class Config(BaseModel):
    """A recipe section (the base of every stage's config models)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def path_use(self, field: str) -> Literal["path", "name-or-path", "unused"]:
        """How this section reads its input path ``field``: ``path`` (resolved and checked),
        ``name-or-path`` (a value that is no local path is a name, looked up when read, as an hf
        dataset's) or ``unused`` (not read with this section's other settings)."""
        return "path"


def role(f: FieldInfo) -> str | None:
    """The marker of a field: "execution", "continuable" or None (see the module docstring)."""
    extra = f.json_schema_extra
    return extra.get("hare") if isinstance(extra, dict) else None


def path_kind(f: FieldInfo) -> tuple[str, bool] | None:
    """(kind, glob) of a field marked ``input_path``, else None."""
    extra = f.json_schema_extra
    if isinstance(extra, dict) and "hare_path" in extra:
        return extra["hare_path"], bool(extra.get("hare_glob"))
    return None


def nested_section(ann: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section class inside a field's annotation, and whether it sits in a list or dict."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    for arg in typing.get_args(ann):
        sub, inside = nested_section(arg)
        if sub is not None:
            return sub, inside or typing.get_origin(ann) in (list, tuple, set, dict)
    return None, False


def _exclude(model: type[BaseModel], roles: frozenset[str]) -> dict:
    """pydantic's ``exclude`` argument that leaves out every field marked with one of ``roles``."""
    spec: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        if role(f) in roles:
            spec[name] = True
            continue
        sub, inside = nested_section(f.annotation)
        if sub is not None and (inner := _exclude(sub, roles)):
            spec[name] = {"__all__": inner} if inside else inner
    return spec


def config_dump(value: Any, without: tuple[str, ...] = ("execution",)) -> Any:
    """JSON-ready form of a recipe value (a section, a list of sections or a plain value) without the
    fields marked with the roles in ``without``: what a step's fingerprint is made of."""
    if isinstance(value, list):
        return [config_dump(v, without) for v in value]
    if isinstance(value, BaseModel):
        # A section may leave keys at their defaults out of this dump (``FINGERPRINT``), so that keys
        # added later do not change the fingerprint of recipes written before them.
        return value.model_dump(mode="json", exclude=_exclude(type(value), frozenset(without)) or None,
                                context={FINGERPRINT: True})
    return value


def marked_values(value: Any, marker: str, path: str) -> dict[str, Any]:
    """``{key path: value}`` of every field marked ``marker`` in a recipe value found at ``path``."""
    out: dict[str, Any] = {}
    if isinstance(value, list):
        for i, v in enumerate(value):
            out.update(marked_values(v, marker, f"{path}[{i}]"))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.update(marked_values(v, marker, f"{path}.{k}"))
    elif isinstance(value, BaseModel):
        for name, f in type(value).model_fields.items():
            v = getattr(value, name)
            if role(f) == marker:
                out[f"{path}.{name}"] = v.model_dump(mode="json") if isinstance(v, BaseModel) else v
            else:
                out.update(marked_values(v, marker, f"{path}.{name}"))
    return out


@dataclass
class PathRef:
    """One input path of a recipe: where it is (``key``), its value, and how to set it."""

    key: str
    value: str
    kind: str  # "any", "file" or "dir"
    glob: bool
    use: str  # Config.path_use
    enabled: bool  # False when a section above it is switched off (``enabled: false``)
    owner: BaseModel
    field: str
    index: int | None = None  # the element of a list field

    def set(self, value: str) -> None:
        if self.index is None:
            setattr(self.owner, self.field, value)
        else:
            getattr(self.owner, self.field)[self.index] = value


def input_paths(value: Any, prefix: str = "", enabled: bool = True) -> Iterator[PathRef]:
    """Every set input path under a recipe value, in field order, with its key path."""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from input_paths(v, f"{prefix}[{i}]", enabled)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from input_paths(v, f"{prefix}.{k}" if prefix else str(k), enabled)
        return
    if not isinstance(value, BaseModel):
        return
    on = enabled and getattr(value, "enabled", True) is not False
    for name, f in type(value).model_fields.items():
        v = getattr(value, name)
        key = f"{prefix}.{name}" if prefix else name
        marked = path_kind(f)
        if marked is None:
            yield from input_paths(v, key, on)
            continue
        use = value.path_use(name) if isinstance(value, Config) else "path"
        if use == "unused" or v is None:
            continue
        kind, glob = marked
        if isinstance(v, list):
            for i, item in enumerate(v):
                yield PathRef(f"{key}[{i}]", item, kind, glob, use, on, value, name, i)
        else:
            yield PathRef(key, v, kind, glob, use, on, value, name)
