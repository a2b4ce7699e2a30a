"""A tiny model fine-tuned with functional tokens through ``hare sft --tools``: the loss covers the
call, the export carries the library, decoding returns a schema-valid call, and ``hare serve``
answers the official ``openai`` client with a ``tool_calls`` entry it parses."""

from __future__ import annotations

import json

import pytest

from hare.cli import main
from hare.core.io import write_jsonl
from hare.chat.toolcall.check import Call
from hare.chat.toolcall.library import END, load_library
from tests.chat.conftest import dolly, tiny_base  # noqa: F401  (fixtures)

QUERY = "What is the weather in Paris tomorrow?"
ARGS = {"location": "Paris", "day": "tomorrow"}


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, tiny_base):  # noqa: F811
    """The tiny base fine-tuned until it answers QUERY with the weather call (one conversation, repeated)."""
    lib = load_library()
    folder = tmp_path_factory.mktemp("tool-sft")
    rec = {"messages": [{"role": "user", "content": QUERY},
                        {"role": "assistant", "content": lib.target("get_weather", ARGS)}]}
    write_jsonl(folder / "train.jsonl", [rec] * 32)
    assert main(["sft", str(tiny_base), str(folder / "train.jsonl"), "--tools", lib.path, "--out",
                 str(folder / "run"), "--max-steps", "150", "--lr", "5e-3", "--batch-size", "4", "--max-length", "128", "--eval-fraction",
                 "0", "--template", "hare", "--device", "cpu", "--threads", "1"]) == 0
    return folder / "run" / "model"


@pytest.mark.slow
def test_tool_sft_export_and_decoding(tool_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hare.chat.toolcall.decode import ToolCaller
    from hare.chat.toolcall.openai import model_library

    lib = model_library(tool_model)
    assert lib is not None and [f.name for f in lib.functions] == [f.name for f in load_library().functions]
    tok = AutoTokenizer.from_pretrained(tool_model)
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) == 1 for t in lib.tokens)
    # the loss covers the call: every token of the answer, the functional token first, is an assistant token
    tok_train = AutoTokenizer.from_pretrained(tool_model.parent / "base-tools")
    from hare.chat.template import prepare

    prepare(tok_train, None, "hare")
    msgs = [{"role": "user", "content": QUERY}, {"role": "assistant", "content": lib.target("get_weather", ARGS)}]
    enc = tok_train.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    call_ids = tok_train(lib.target("get_weather", ARGS), add_special_tokens=False)["input_ids"]
    assert masked[:len(call_ids)] == call_ids and tok_train.convert_tokens_to_ids("<nexa_4>") == masked[0]
    assert tok_train.convert_tokens_to_ids(END) in masked
    model = AutoModelForCausalLM.from_pretrained(tool_model)
    caller = ToolCaller(model, tok, lib)
    out = caller(QUERY)
    assert out.result == Call("get_weather", ARGS), out.text
    other = caller("Tell me a joke")  # whatever it writes, it is a result, never an exception
    assert other.result is not None


@pytest.mark.slow
def test_serve_returns_tool_calls(tool_model):
    import openai

    from hare.chat.serve import Limits, Server, build_app
    from hare.chat.toolcall.openai import install, model_library

    lib = model_library(tool_model)
    app = build_app(tool_model, Limits(max_tokens=48), device="cpu")
    install(app, lib)
    server = Server(app).start()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="none")
        r = client.chat.completions.create(model=str(tool_model), messages=[{"role": "user", "content": QUERY}],
                                           tools=lib.tools(), max_tokens=48, temperature=0)
        call = r.choices[0].message.tool_calls[0]
        assert r.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGS
        # streamed: tool_calls deltas as OpenAI streams them, never the functional tokens as text
        chunks = list(client.chat.completions.create(
            model=str(tool_model), messages=[{"role": "user", "content": QUERY}], tools=lib.tools(), max_tokens=48,
            temperature=0, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
        assert "<nexa_" not in text and len(deltas) == 1 and deltas[0].index == 0
        assert deltas[0].id == call.id.replace(r.id, chunks[0].id)
        assert deltas[0].function.name == "get_weather" and json.loads(deltas[0].function.arguments) == ARGS
        last = [c for c in chunks if c.choices][-1]  # transformers 5.25 on: the usage in a chunk of its own
        assert last.choices[0].finish_reason == "tool_calls" and chunks[-1].usage.completion_tokens >= 1
    finally:
        server.stop()


def test_tool_hooks_on_answers():
    from hare.chat.toolcall.openai import REFUSAL_TEXT, response_hook

    lib = load_library()
    hook = response_hook(lib)

    def answer(content):
        return {"id": "x", "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}

    a = hook("/v1/chat/completions", answer('<nexa_7>{"time": "07:00"}<nexa_end>'))
    assert a["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "set_alarm",
                                                                       "arguments": '{"time": "07:00"}'}
    assert hook("/v1/chat/completions", answer("<nexa_none><nexa_end>"))["choices"][0]["message"]["content"] == \
        REFUSAL_TEXT
    bad = hook("/v1/chat/completions", answer('<nexa_7>{"time": "seven"}'))["choices"][0]["message"]
    assert "no valid call" in bad["hare_tool_error"] and "tool_calls" not in bad
    assert hook("/v1/completions", answer("<nexa_none>"))["choices"][0]["message"]["content"] == "<nexa_none>"


def test_tool_stream_editor_on_chunks():
    """A streamed answer that opens with a functional token is held and sent as one tool_calls delta;
    one that opens with text streams as text; a refusal becomes the refusal text."""
    from hare.chat.toolcall.openai import REFUSAL_TEXT, stream_hook

    def stream(*pieces):
        edit = stream_hook(load_library())("/v1/chat/completions")
        chunks = [{"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
        chunks += [{"id": "c1", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                   for p in pieces]
        chunks.append({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"completion_tokens": len(pieces)}})
        return [c for chunk in chunks for c in edit(chunk)]

    out = stream("<nexa_7>", '{"time"', ': "07:00"}', "<nexa_end>")
    assert [c["choices"][0]["delta"] for c in out] == [
        {"role": "assistant"},
        {"tool_calls": [{"id": "c1_tool_call_0", "type": "function", "index": 0,
                         "function": {"name": "set_alarm", "arguments": '{"time": "07:00"}'}}], "content": None}]
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls" and out[-1]["usage"] == {"completion_tokens": 4}
    out = stream("<", "Hello", " there")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in out) == "<Hello there"
    assert len(out) == 4 and out[-1]["choices"][0]["finish_reason"] == "stop"
    out = stream("<nexa_none>", "<nexa_end>")
    assert out[-1]["choices"][0]["delta"]["content"] == REFUSAL_TEXT
    bad = stream("<nexa_7>", '{"time": "seven"}')[-1]["choices"][0]["delta"]
    assert "no valid call" in bad["hare_tool_error"] and bad["content"] == '<nexa_7>{"time": "seven"}'
    assert stream_hook(load_library())("/v1/completions") is None


@pytest.mark.slow
def test_chat_prints_the_parsed_call(tool_model):
    import sys

    import pexpect

    from tests.conftest import ROOT

    child = pexpect.spawn(sys.executable, ["-m", "hare", "chat", str(tool_model), "--max-tokens", "48", "--device",
                                           "cpu", "--temperature", "0"], cwd=str(ROOT), encoding="utf-8", timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TERM": "dumb", "HARE_API_KEY": ""})
    child.expect(">>> ")
    child.sendline(QUERY)
    child.expect(r'call: get_weather\(location="Paris", day="tomorrow"\)')
    child.expect(">>> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.slow
def test_arguments_are_decoded_under_the_functions_schema(tool_model):
    """Queries unlike the one the model learned: left to itself it writes broken JSON for them (measured:
    6 of 6 here); under the function's schema every call is one the schema accepts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hare.chat.toolcall.check import NoCall, schema_problem
    from hare.chat.toolcall.decode import ToolCaller
    from hare.chat.toolcall.openai import model_library

    lib = model_library(tool_model)
    tok = AutoTokenizer.from_pretrained(tool_model)
    model = AutoModelForCausalLM.from_pretrained(tool_model)
    queries = ["Call my mother", "Start the camera app", "Send a text to Bob saying hi", "Set an alarm for 7am",
               "Search the web for pizza", "Turn on the flashlight", QUERY]
    free = [ToolCaller(model, tok, lib, max_new_tokens=48, constrained=False)(q) for q in queries]
    held = [ToolCaller(model, tok, lib, max_new_tokens=48)(q) for q in queries]
    assert sum(isinstance(d.result, NoCall) for d in free) >= 3
    for d in held:
        if isinstance(d.result, NoCall):  # only a call whose arguments the token cap cut off
            assert d.result.reason.startswith("arguments are not JSON"), d.text
            assert len(tok(d.text, add_special_tokens=False)["input_ids"]) >= 48
        elif hasattr(d.result, "arguments"):
            assert schema_problem(d.result.arguments, lib.by_name[d.result.name].parameters) is None
    assert sum(isinstance(d.result, Call) for d in held) >= 6
    assert held[-1].result == Call("get_weather", ARGS)  # what it learned is unchanged


def test_tool_sft_soup_carries_the_library(tmp_path, tiny_base, capsys):  # noqa: F811
    """``hare sft --tools --soup 2``: both runs start from one functional-token base, and the soup
    carries the library like a single run's export."""
    lib = load_library()
    rec = {"messages": [{"role": "user", "content": QUERY},
                        {"role": "assistant", "content": lib.target("get_weather", ARGS)}]}
    write_jsonl(tmp_path / "train.jsonl", [rec] * 8)
    assert main(["sft", str(tiny_base), str(tmp_path / "train.jsonl"), "--tools", lib.path, "--out",
                 str(tmp_path / "run"), "--max-steps", "2", "--batch-size", "4", "--max-length", "128",
                 "--eval-fraction", "0", "--template", "hare", "--device", "cpu", "--threads", "1",
                 "--soup", "2"]) == 0
    out = capsys.readouterr().out
    assert "run 1 (seed 1235)" in out and "soup of 2 runs" in out
    soup = tmp_path / "run" / "model"
    assert (soup / "tools.json").read_bytes() == (tmp_path / "run" / "run-0" / "model" / "tools.json").read_bytes()
    from hare.chat.toolcall.openai import model_library

    assert [f.name for f in model_library(soup).functions] == [f.name for f in lib.functions]
