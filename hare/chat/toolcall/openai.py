"""OpenAI ``tool_calls`` from a functional-token model, for ``hare serve``.

A model fine-tuned with a library's functional tokens carries the library in its folder
(``tools.json``). Its answers are read with ``parse_call``: a call becomes the message's
``tool_calls`` entry (``{"id", "type": "function", "function": {"name", "arguments"}}``, the
arguments as a JSON string, as OpenAI's API sends them) with ``finish_reason: "tool_calls"``; a
refusal becomes a plain answer; text that is no valid call stays the answer's content, with the
reason in ``hare_tool_error``. The request's own ``tools`` are not needed (the tokens are the
library) and are dropped before generation.

Streamed, an answer that opens with a functional token is held back until it ends, then sent as one
``tool_calls`` delta (index 0, with its id, name and whole arguments; OpenAI's clients join the
deltas of a call) and a last chunk with ``finish_reason: "tool_calls"``; an answer that opens with
anything else streams as text, token by token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from hare.chat.toolcall.check import Call, NoCall, Refusal, parse_call
from hare.chat.toolcall.library import TOKEN_PREFIX, Library, load_library

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


def install(app, library: Library) -> None:
    """Make a ``hare.chat.serve.Guard`` answer with ``tool_calls``: requests, answers and streams."""
    app.request_hooks.append(request_hook(library))
    app.response_hooks.append(response_hook(library))
    app.stream_hooks.append(stream_hook(library))


def _edit_message(msg: dict, content: str, library: Library, call_id: str) -> bool:
    """Rewrite an assistant message (or delta) whose text is ``content``; True when it became a call."""
    res = parse_call(content, library)
    if isinstance(res, Call):
        msg["content"] = None
        msg["tool_calls"] = [{"id": call_id, "type": "function",
                              "function": {"name": res.name, "arguments": json.dumps(res.arguments, ensure_ascii=False)}}]
        return True
    if isinstance(res, Refusal):
        msg["content"] = REFUSAL_TEXT
    elif isinstance(res, NoCall) and TOKEN_PREFIX in content:
        msg["content"] = content
        msg["hare_tool_error"] = f"no valid call: {res.reason}"
    return False


def stream_hook(library: Library) -> Callable[[str], Callable[[dict], list[dict]] | None]:
    """For each streamed chat answer, an editor of its chunks (``hare.chat.serve.SseEditor``)."""
    def hook(path: str):
        if path != CHAT:
            return None
        state = {"mode": "undecided", "held": ""}  # undecided, then text (passed on) or call (held)

        def edit(chunk: dict) -> list[dict]:
            choices = chunk.get("choices") or []
            if not choices or state["mode"] == "text":
                return [chunk]
            choice = choices[0]
            delta = choice.setdefault("delta", {})
            content = delta.pop("content", None)
            if content:
                state["held"] += content
                head = state["held"].lstrip()
                if head.startswith(TOKEN_PREFIX):
                    state["mode"] = "call"
                elif head and not TOKEN_PREFIX.startswith(head[:len(TOKEN_PREFIX)]):
                    state["mode"] = "text"  # no call: the text held so far goes out now
                    delta["content"] = state["held"]
                    return [chunk]
            if choice.get("finish_reason") is None:
                if content and not delta.get("role") and not delta.get("tool_calls") and chunk.get("usage") is None:
                    return []  # held: nothing else in this chunk
                return [chunk]
            held = state["held"]
            if held and _edit_message(delta, held, library, f"{chunk.get('id', 'call')}_tool_call_0"):
                delta["tool_calls"][0]["index"] = 0
                choice["finish_reason"] = "tool_calls"
            elif held:
                delta.setdefault("content", held)
            return [chunk]

        return edit
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
            if _edit_message(msg, content, library, f"{answer.get('id', 'call')}_tool_call_{i}"):
                choice["finish_reason"] = "tool_calls"
        return answer
    return hook
