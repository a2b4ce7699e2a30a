"""``hare schema``: every recipe key with its type, default and meaning."""

from __future__ import annotations

import argparse
import textwrap

from hare.core.config import role
from hare.recipe import Recipe

HELP = "print every recipe key with its type, default and meaning"


def _type_name(ann) -> str:
    import typing

    if typing.get_origin(ann) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(ann))
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


MARKS = {"execution": "execution only: not part of any step's fingerprint",
         "continuable": "a change continues the step's earlier work"}


def schema_lines(model: type = Recipe, prefix: str = "") -> list[str]:
    """Every recipe key with its type, default and description, nested sections indented; keys
    marked EXECUTION or CONTINUABLE in the schema say so."""
    from pydantic import BaseModel

    lines = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        sub = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)),
                   None)
        default = "" if f.is_required() else (" = " + repr(f.get_default(call_default_factory=True))
                                              if sub is None else "")
        tname = _type_name(ann)
        mark = f"  ({MARKS[role(f)]})" if role(f) in MARKS else ""
        lines.append(f"{prefix}{name}: {tname if sub is None else ('[' + sub.__name__ + ']' if ann is not sub else sub.__name__)}"
                     f"{default}{mark}")
        if f.description:
            lines += [prefix + "    " + l for l in textwrap.wrap(f.description, 96)]
        if sub is not None:
            lines += schema_lines(sub, prefix + "  ")
    return lines


def add_arguments(sp: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("\n".join(schema_lines()))
    return 0
