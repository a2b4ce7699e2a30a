"""The chat readers: three formats into one shape, malformed records quarantined with file and line."""

from __future__ import annotations

import json

import pytest

from hare.chat.data import conversation, read_chats, split


def test_three_formats_read_into_messages(tmp_path):
    rows = [
        {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
        {"instruction": "Say hello", "input": "to Ann", "output": "Hello, Ann."},
        {"instruction": "Say hello", "context": "", "response": "Hello.", "category": "open_qa"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_chats([path])
    assert data.records == 4 and not data.quarantined
    assert data.conversations[1] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert data.conversations[2][0] == {"role": "user", "content": "Say hello\n\nto Ann"}
    assert data.conversations[3] == [{"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "Hello."}]
    with pytest.raises(ValueError, match="no 'messages'"):
        conversation({"text": "x"})


def test_malformed_records_are_quarantined_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}),
        "not json",
        json.dumps({"messages": [{"role": "wizard", "content": "Hi"}]}),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
        json.dumps({"conversations": [{"from": "human", "value": 3}]}),
        json.dumps([1, 2]),
        json.dumps({"text": "plain"}),
        json.dumps({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    data = read_chats([tmp_path])
    assert len(data.conversations) == 2 and data.records == 8
    assert [q["line"] for q in data.quarantined] == [2, 3, 4, 5, 6, 7]
    reasons = [q["reason"] for q in data.quarantined]
    assert "bad JSON" in reasons[0] and "'wizard'" in reasons[1] and "no assistant turn" in reasons[2]
    assert "value is int" in reasons[3] and "not an object" in reasons[4] and "not a chat record" in reasons[5]


def test_heldout_split_is_stable_and_by_content(dolly):
    convs = read_chats([dolly]).conversations
    assert len(convs) == 840
    train, held = split(convs, 0.05, seed=7)
    train2, held2 = split(list(reversed(convs)), 0.05, seed=7)
    assert sorted(map(str, held)) == sorted(map(str, held2)) and 20 <= len(held) <= 65
    assert len(train) + len(held) == 840
