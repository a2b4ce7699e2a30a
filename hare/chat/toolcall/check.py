"""Reading a model's answer as a call, and checking a call in the Berkeley Function Calling
Leaderboard's AST style.

``parse_call`` turns generated text into ``Call`` (a function of the library with arguments valid
under its JSON Schema), ``Refusal`` (``<nexa_none>``) or ``NoCall`` (anything else: no functional
token, arguments that are not a JSON object, or that break the schema); it never raises.

``ast_check`` compares a call with the expected one as BFCL's AST checker does (Yan et al. 2024,
``ast_checker``): the function name; every required parameter present; no parameter the function
does not declare; every value of its declared type; and every value equal to an accepted one after
normalization (strings compared lowercased with punctuation and surrounding spaces removed, as
BFCL's ``standardize_string``; numbers by value, an integer accepted where a number is declared).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from hare.chat.toolcall.library import END, NONE, Library


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    pass


@dataclass(frozen=True)
class NoCall:
    reason: str
    text: str = ""


def parse_call(text: str, library: Library) -> Call | Refusal | NoCall:
    """The call in ``text`` (what follows the prompt), or why there is none."""
    m = re.search(r"<nexa_(\d+|none)>", text)
    if m is None:
        return NoCall("no functional token", text)
    if m.group(0) == NONE:
        return Refusal()
    fn = library.by_token.get(m.group(0))
    if fn is None:
        return NoCall(f"unknown functional token {m.group(0)}", text)
    rest = text[m.end():]
    args_text = rest.split(END, 1)[0].strip()
    try:
        args = json.loads(args_text) if args_text else {}
    except json.JSONDecodeError as e:
        return NoCall(f"arguments are not JSON: {e.msg}", text)
    if not isinstance(args, dict):
        return NoCall("arguments are not a JSON object", text)
    problem = schema_problem(args, fn.parameters)
    if problem:
        return NoCall(f"{fn.name}: {problem}", text)
    return Call(fn.name, args)


def schema_problem(args: dict, schema: dict) -> str | None:
    """Why ``args`` break the function's JSON Schema (undeclared parameters included), or None."""
    from jsonschema import Draft202012Validator

    extra = sorted(set(args) - set(schema.get("properties", {})))
    if extra:
        return f"unexpected parameters {extra}"
    errors = sorted(Draft202012Validator(schema).iter_errors(args), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(map(str, e.path)) or "arguments"
        return f"{where}: {e.message}"
    return None


def standardize(value: str) -> str:
    """BFCL's string normalization: lowercase, no punctuation or spaces around words."""
    return re.sub(r"[ ,./\-_*^()'\"!?:;]", "", value.lower())


_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def _typed(value: Any, kind: str | None) -> bool:
    if kind is None:
        return True
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES.get(kind, object))


def _same(value: Any, accepted: Any) -> bool:
    if isinstance(accepted, str) and isinstance(value, str):
        return standardize(value) == standardize(accepted)
    if isinstance(accepted, bool) or isinstance(value, bool):
        return value is accepted
    if isinstance(accepted, (int, float)) and isinstance(value, (int, float)):
        return float(value) == float(accepted)
    if isinstance(accepted, list) and isinstance(value, list):
        return len(value) == len(accepted) and all(_same(v, a) for v, a in zip(value, accepted))
    return value == accepted


@dataclass
class Verdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)


def ast_check(call: Call, expected_name: str, expected_args: dict[str, Any], library: Library) -> Verdict:
    """BFCL AST check of ``call`` against the expected function and arguments.

    A value in ``expected_args`` may be a list of accepted values for a non-array parameter."""
    if call.name != expected_name:
        return Verdict(False, [f"function {call.name!r}, expected {expected_name!r}"])
    fn = library.by_name[expected_name]
    props = fn.properties
    reasons = []
    for p in fn.required:
        if p not in call.arguments:
            reasons.append(f"missing required parameter {p!r}")
    for p, v in call.arguments.items():
        if p not in props:
            reasons.append(f"unexpected parameter {p!r}")
            continue
        kind = props[p].get("type")
        if not _typed(v, kind):
            reasons.append(f"{p!r}: {type(v).__name__} where {kind} is declared")
            continue
        if p not in expected_args:
            reasons.append(f"{p!r}: not asked for")
            continue
        want = expected_args[p]
        options = want if isinstance(want, list) and kind != "array" else [want]
        if not any(_same(v, o) for o in options):
            reasons.append(f"{p!r}: {v!r}, expected {want!r}")
    for p in expected_args:
        if p not in call.arguments and p not in fn.required:
            reasons.append(f"optional parameter {p!r} left out")
    return Verdict(not reasons, reasons)


def describe(result: Call | Refusal | NoCall) -> str:
    """One line for a person: the call, the refusal, or why there is no valid call."""
    if isinstance(result, Call):
        args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in result.arguments.items())
        return f"call: {result.name}({args})"
    if isinstance(result, Refusal):
        return "no function fits this request (refused)"
    return f"no valid call: {result.reason}"
