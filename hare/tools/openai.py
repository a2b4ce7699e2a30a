"""OpenAI ``tool_calls`` from a functional-token model, for ``hare serve``.

A model fine-tuned with a library's functional tokens carries the library in its folder
(``tools.json``). Its answers are read with ``parse_call``: a call becomes the message's
``tool_calls`` entry (``{"id", "type": "function", "function": {"name", "arguments"}}``, the
arguments as a JSON string, as OpenAI's API sends them) with ``finish_reason: "tool_calls"``; a
refusal becomes a plain answer; text that is no valid call stays the answer's content, with the
reason in ``hare_tool_error``. The request's own ``tools`` are not needed (the tokens are the
library) and are dropped before generation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from hare.tools.check import Call, NoCall, Refusal, parse_call
from hare.tools.library import Library, load_library

LIBRARY_FILE = "tools.json"
REFUSAL_TEXT = "None of the available functions can do that (or the request lacks what a function needs)."
CHAT = "/v1/chat/completions"


def model_library(model_dir: str | Path) -> Library | None:
    """The library a model folder was fine-tuned on, or None for an ordinary model."""
    path = Path(model_dir) / LIBRARY_FILE
    return load_library(path) if path.is_file() else None


def save_library(library: Library, model_dir: str | Path) -> Path:
    from hare.core.io import write_json

    path = Path(model_dir) / LIBRARY_FILE
    write_json(path, library.tools())
    return path


def request_hook(library: Library) -> Callable[[str, dict], None]:
    def hook(path: str, body: dict) -> None:
        if path == CHAT:
            body.pop("tools", None)
            body.pop("tool_choice", None)
    return hook


def response_hook(library: Library) -> Callable[[str, dict], dict]:
    def hook(path: str, answer: dict) -> dict:
        if path != CHAT:
            return answer
        for i, choice in enumerate(answer.get("choices") or []):
            msg = choice.get("message") or {}
            content = msg.get("content")
            if not isinstance(content, str):
                continue
            res = parse_call(content, library)
            if isinstance(res, Call):
                msg["content"] = None
                msg["tool_calls"] = [{"id": f"{answer.get('id', 'call')}_tool_call_{i}", "type": "function",
                                      "function": {"name": res.name,
                                                   "arguments": json.dumps(res.arguments, ensure_ascii=False)}}]
                choice["finish_reason"] = "tool_calls"
            elif isinstance(res, Refusal):
                msg["content"] = REFUSAL_TEXT
            elif isinstance(res, NoCall) and "<nexa_" in content:
                msg["hare_tool_error"] = f"no valid call: {res.reason}"
        return answer
    return hook
