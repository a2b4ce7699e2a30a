"""Function libraries in the OpenAI tools format, and their functional tokens (Octopus v2).

A library is a JSON file holding a list of tools, each ``{"type": "function", "function": {"name",
"description", "parameters"}}`` with ``parameters`` a JSON Schema object, as the OpenAI chat API,
vLLM and ``transformers`` chat templates take them (a bare ``{"name", "description",
"parameters"}`` is accepted too). Octopus v2 (Chen & Li 2024, arXiv 2404.01744) gives every
function one new token, ``<nexa_0>`` ... ``<nexa_{N-1}>``, so that choosing a function is one
decoding step; the call is that token, the arguments, and ``<nexa_end>``. hare writes the
arguments as a JSON object (what the OpenAI ``tool_calls`` carry) and adds ``<nexa_none>`` for a
query that no function serves, or that lacks what a function requires:

    <nexa_4>{"location": "Paris", "day": "tomorrow"}<nexa_end>
    <nexa_none><nexa_end>
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_LIBRARIES = Path(__file__).with_name("library")
EXAMPLE = PACKAGE_LIBRARIES / "phone.json"

TOKEN_PREFIX = "<nexa_"  # every functional token starts so
END = "<nexa_end>"
NONE = "<nexa_none>"


class LibraryError(ValueError):
    """A library file that cannot be used; the message names the file and the tool."""


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]
    token: str

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    @property
    def properties(self) -> dict[str, dict]:
        return dict(self.parameters.get("properties", {}))

    def tool(self) -> dict:
        """The OpenAI tools entry of this function."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass
class Library:
    """The functions of a library, in file order; function ``i`` has the token ``<nexa_i>``."""

    functions: list[Function]
    path: str = ""
    by_name: dict[str, Function] = field(init=False)
    by_token: dict[str, Function] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.functions}
        self.by_token = {f.token: f for f in self.functions}

    @property
    def tokens(self) -> list[str]:
        """Every token the library adds: one per function, the refusal and the end token."""
        return [f.token for f in self.functions] + [NONE, END]

    def tools(self) -> list[dict]:
        return [f.tool() for f in self.functions]

    def target(self, name: str | None, arguments: dict | None = None) -> str:
        """The text a model trained on this library writes for a call (``name`` None: a refusal)."""
        if name is None:
            return NONE + END
        return self.by_name[name].token + json.dumps(arguments or {}, ensure_ascii=False) + END


def _check_schema(where: str, params: Any) -> None:
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise LibraryError(f"{where}: 'parameters' must be a JSON Schema object (type: object)")
    props = params.get("properties", {})
    if not isinstance(props, dict):
        raise LibraryError(f"{where}: 'parameters.properties' must be a mapping")
    missing = [r for r in params.get("required", []) if r not in props]
    if missing:
        raise LibraryError(f"{where}: required parameters {missing} are not in 'properties'")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(params)
    except SchemaError as e:
        raise LibraryError(f"{where}: 'parameters' is not a valid JSON Schema: {e.message}") from e


def load_library(path: str | Path | None = None) -> Library:
    """Read a library file (default: the example phone library shipped with hare)."""
    path = Path(path) if path is not None else EXAMPLE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise LibraryError(f"{path}: no such function library") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LibraryError(f"{path}: not a JSON file: {e}") from e
    if isinstance(raw, dict) and "tools" in raw:
        raw = raw["tools"]
    if not isinstance(raw, list) or not raw:
        raise LibraryError(f"{path}: a function library is a non-empty JSON list of tools")
    functions: list[Function] = []
    for i, entry in enumerate(raw):
        where = f"{path}: tool {i}"
        if not isinstance(entry, dict):
            raise LibraryError(f"{where}: expected an object, got {type(entry).__name__}")
        fn = entry.get("function", entry) if entry.get("type", "function") == "function" else None
        if not isinstance(fn, dict):
            raise LibraryError(f"{where}: only tools of type 'function' are supported")
        name = fn.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise LibraryError(f"{where}: 'name' must be an identifier, got {name!r}")
        if any(f.name == name for f in functions):
            raise LibraryError(f"{where}: the name {name!r} is used twice")
        desc = fn.get("description", "")
        if not isinstance(desc, str) or not desc.strip():
            raise LibraryError(f"{where} ({name}): 'description' is needed (the functional token starts from it)")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        _check_schema(f"{where} ({name})", params)
        functions.append(Function(name, desc.strip(), params, f"{TOKEN_PREFIX}{len(functions)}>"))
    return Library(functions, str(path))
