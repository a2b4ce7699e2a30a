"""Chat data: OpenAI ``messages``, ShareGPT ``conversations`` and Alpaca/Dolly instruction records,
read into one shape, ``{"messages": [{"role", "content"}, ...]}``.

Formats (``format: auto`` picks one per record from its keys):

- ``messages``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``;
- ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}``;
- ``alpaca``: ``{"instruction", "input", "output"}``, or Dolly's ``{"instruction", "context",
  "response"}``: one user turn (the instruction, then a blank line and the input when there is one)
  and the answer.

Records are read through ``hare.core.io``'s JSON Lines and row readers, so JSONL, JSON, Parquet and
CSV files (compressed too) all work. A record that does not fit its format (a missing field, a role
that is not known, no assistant turn, an empty answer) is quarantined with its file, line and
reason, and counted; the rest of the file is read. ``split`` assigns each conversation to the
held-out slice by a hash of its content, so the slice is the same on every run and every machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from hare.core.io import FORMATS, RecordError, expand_paths, file_format, jsonl_records, read_rows

log = logging.getLogger("hare.chat")

CHAT_FORMATS = ("auto", "messages", "sharegpt", "alpaca")
ROLES = ("system", "user", "assistant")
# The roles a template renders; a later feature (tool results) extends this tuple.
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}


class ChatRecordError(ValueError):
    pass


def detect(rec: dict) -> str:
    if "messages" in rec:
        return "messages"
    if "conversations" in rec:
        return "sharegpt"
    if "instruction" in rec:
        return "alpaca"
    raise ChatRecordError("no 'messages', 'conversations' or 'instruction' field: not a chat record "
                          f"(fields: {', '.join(sorted(rec)) or 'none'})")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ChatRecordError(f"{where} is {type(value).__name__}, not a string")
    return value


def _check_turns(turns: list[dict]) -> list[dict]:
    if not any(t["role"] == "assistant" and t["content"].strip() for t in turns):
        raise ChatRecordError("no assistant turn with content: nothing to learn from")
    for i, t in enumerate(turns):
        if t["role"] == "system" and i != 0:
            raise ChatRecordError(f"turn {i}: a system message is allowed only first")
    return turns


def from_messages(rec: dict, key: str = "messages") -> list[dict]:
    msgs = rec.get(key)
    if not isinstance(msgs, list) or not msgs:
        raise ChatRecordError(f"'{key}' is not a non-empty list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ChatRecordError(f"{key}[{i}] is {type(m).__name__}, not an object")
        role = m.get("role")
        if role not in ROLES:
            raise ChatRecordError(f"{key}[{i}].role is {role!r}; known: {', '.join(ROLES)}")
        out.append({"role": role, "content": _text(m.get("content"), f"{key}[{i}].content")})
    return _check_turns(out)


def from_sharegpt(rec: dict) -> list[dict]:
    conv = rec.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise ChatRecordError("'conversations' is not a non-empty list")
    out = []
    for i, m in enumerate(conv):
        if not isinstance(m, dict):
            raise ChatRecordError(f"conversations[{i}] is {type(m).__name__}, not an object")
        who = m.get("from")
        if who not in SHAREGPT_ROLES:
            raise ChatRecordError(f"conversations[{i}].from is {who!r}; known: {', '.join(SHAREGPT_ROLES)}")
        out.append({"role": SHAREGPT_ROLES[who], "content": _text(m.get("value"), f"conversations[{i}].value")})
    return _check_turns(out)


def from_alpaca(rec: dict) -> list[dict]:
    instruction = _text(rec.get("instruction"), "instruction").strip()
    if not instruction:
        raise ChatRecordError("instruction is empty")
    extra_key = "input" if "input" in rec else "context"
    extra = rec.get(extra_key) or ""
    extra = _text(extra, extra_key).strip()
    answer_key = "output" if "output" in rec else "response"
    if answer_key not in rec:
        raise ChatRecordError("no 'output' (Alpaca) or 'response' (Dolly) field")
    answer = _text(rec[answer_key], answer_key)
    user = f"{instruction}\n\n{extra}" if extra else instruction
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        turns.insert(0, {"role": "system", "content": rec["system"]})
    return _check_turns(turns)


READERS = {"messages": from_messages, "sharegpt": from_sharegpt, "alpaca": from_alpaca}


def conversation(rec: dict, fmt: str = "auto") -> list[dict]:
    """The turns of one record in format ``fmt`` (``auto``: from its keys); raises ChatRecordError."""
    if fmt not in CHAT_FORMATS:
        raise ValueError(f"unknown chat format '{fmt}'; known: {', '.join(CHAT_FORMATS)}")
    return READERS[detect(rec) if fmt == "auto" else fmt](rec)


@dataclass
class ChatData:
    """Conversations read from files, and what was quarantined (``{"path", "line", "reason"}``)."""

    conversations: list[list[dict]] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    files: int = 0
    records: int = 0  # read = len(conversations) + len(quarantined)


def _records(path: Path) -> Iterator[tuple[int | None, dict | None, RecordError | None]]:
    errors: list[RecordError] = []
    if file_format(path) == "jsonl" and not str(path).endswith(".json"):
        for lineno, rec in jsonl_records(path, on_error=errors.append):
            while errors:
                e = errors.pop(0)
                yield e.line, None, e
            yield lineno, rec, None
        while errors:
            e = errors.pop(0)
            yield e.line, None, e
        return
    for i, rec in enumerate(read_rows(path), 1):
        if not isinstance(rec, dict):
            yield i, None, RecordError(path, i, f"row is a JSON {type(rec).__name__}, not an object")
        else:
            yield i, rec, None


def read_chats(paths: Iterable[str | Path], fmt: str = "auto", limit: int | None = None) -> ChatData:
    """Every conversation of the files (or folders, or globs) in ``paths``, in file order."""
    out = ChatData()
    for pattern in paths:
        files = expand_paths(pattern, formats=[k for k in FORMATS if k != "text"])
        if not files:
            raise FileNotFoundError(f"{pattern}: no JSONL, JSON, Parquet or CSV file there")
        for path in files:
            out.files += 1
            for line, rec, err in _records(path):
                out.records += 1
                if err is None:
                    try:
                        out.conversations.append(conversation(rec, fmt))
                    except ChatRecordError as e:
                        err = RecordError(path, line, str(e))
                if err is not None:
                    out.quarantined.append({"path": err.path, "line": err.line, "reason": err.reason})
                    log.warning("quarantined %s", err)
                if limit is not None and len(out.conversations) >= limit:
                    return out
    return out


def is_heldout(turns: list[dict], fraction: float, seed: int) -> bool:
    """Whether a conversation belongs to the held-out slice (a hash of its turns and the seed)."""
    if fraction <= 0:
        return False
    h = hashlib.blake2b(json.dumps([seed, turns], ensure_ascii=False).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


def split(conversations: list[list[dict]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, held-out) conversations; the held-out slice has at least one when ``fraction`` > 0."""
    train, held = [], []
    for c in conversations:
        (held if is_heldout(c, fraction, seed) else train).append(c)
    if fraction > 0 and not held and len(train) > 1:
        held.append(train.pop())
    return train, held
