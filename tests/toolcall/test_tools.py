"""Function libraries, family-held-out queries, the AST check, call parsing, functional tokens."""

from __future__ import annotations

import json

import pytest
import torch

from hare.chat.toolcall.check import Call, NoCall, Refusal, ast_check, parse_call, standardize
from hare.chat.toolcall.data import build_examples, chat_record
from hare.chat.toolcall.score import RetrievalBaseline, score
from hare.chat.toolcall.library import END, NONE, LibraryError, load_library
from hare.chat.toolcall.tokens import add_functional_tokens


@pytest.fixture(scope="module")
def lib():
    return load_library()


def test_example_library(lib):
    names = [f.name for f in lib.functions]
    assert len(names) >= 10
    for want in ("call_number", "call_contact", "web_search", "take_photo", "get_weather", "send_email", "send_text",
                 "set_alarm", "create_calendar_event", "open_app"):
        assert want in names
    assert lib.tokens[:2] == ["<nexa_0>", "<nexa_1>"] and lib.tokens[-2:] == [NONE, END]
    assert lib.target("get_weather", {"location": "Paris", "day": "today"}) == \
        '<nexa_4>{"location": "Paris", "day": "today"}<nexa_end>'
    assert lib.target(None) == NONE + END
    assert lib.tools()[0]["type"] == "function"


@pytest.mark.parametrize("bad,msg", [
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], "description"),
    ([{"type": "function", "function": {"name": "f", "description": "d",
                                        "parameters": {"type": "object", "properties": {}, "required": ["x"]}}}],
     "required"),
    ([{"type": "function", "function": {"name": "not valid", "description": "d"}}], "identifier"),
    ({"a": 1}, "list of tools"),
])
def test_bad_library_is_named(tmp_path, bad, msg):
    p = tmp_path / "lib.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(LibraryError, match=msg) as e:
        load_library(p)
    assert str(p) in str(e.value)


def test_held_out_split_takes_whole_families(lib):
    ex = build_examples(lib, seed=0)
    assert ex == build_examples(lib, seed=0)
    train = {e.family for e in ex if e.split == "train"}
    test = {e.family for e in ex if e.split == "test"}
    assert train and test and not train & test
    for f in lib.functions:
        assert any(e.function == f.name for e in ex if e.split == "test"), f.name
        assert any(e.function == f.name for e in ex if e.split == "train"), f.name
    assert any(e.function is None for e in ex if e.split == "test")


def test_ablated_refusals_are_minimal_pairs_of_training_calls(lib, tmp_path):
    ex = build_examples(lib, seed=0)
    more = build_examples(lib, seed=0, ablate=True)
    assert more[:len(ex)] == ex and more == build_examples(lib, seed=0, ablate=True)
    added = more[len(ex):]
    assert added and all(e.function is None and e.split == "train" and e.family.endswith("-a") for e in added)
    held = {e.family for e in ex if e.split == "test"}
    assert not {e.family[:-2] for e in added} & held  # only training families are ablated
    queries = {e.query for e in added}
    assert "Phone someone" in queries or "Phone somebody" in queries
    assert not any("{" in q for q in queries)
    # an optional argument's slot ("body"), or a slot without vague words ("time"), is never ablated
    assert not any(e.family.startswith(("set_alarm/", "set_volume/")) for e in added)
    (tmp_path / "q.json").write_text(json.dumps(
        {"slots": {"contact": ["Bob"]}, "vague": {"contact": "someone"},
         "functions": {"call_contact": {"arguments": {"name": "{contact}"},
                                        "families": [{"templates": ["Call {contact}"]},
                                                     {"templates": ["Phone {contact}"]}]}}}))
    with pytest.raises(LibraryError, match="vague words of {contact}"):
        build_examples(lib, tmp_path / "q.json", ablate=True)
    assert not {e.query for e in ex if e.split == "test"} & {e.query for e in ex if e.split == "train"}
    # every target is a valid call of its function
    for e in ex:
        res = parse_call(lib.target(e.function, e.arguments), lib)
        assert res == (Call(e.function, e.arguments) if e.function else Refusal()), e
    wake = [e for e in ex if e.function == "set_alarm" and e.query.startswith("Wake me up at 7 am")]
    assert wake and wake[0].arguments == {"time": "07:00"}
    rec = chat_record(ex[0], lib)
    assert rec["messages"][-1]["role"] == "assistant" and rec["messages"][-1]["content"].endswith(END)


def test_parse_call_never_raises(lib):
    assert parse_call('<nexa_4>{"location": "Paris", "day": "today"}<nexa_end>', lib) == \
        Call("get_weather", {"location": "Paris", "day": "today"})
    assert parse_call("<nexa_none><nexa_end>", lib) == Refusal()
    for bad, why in [("hello", "no functional token"), ("<nexa_4>{location: Paris}", "not JSON"),
                     ('<nexa_4>["Paris"]', "not a JSON object"), ('<nexa_4>{"location": "Paris"}', "day"),
                     ('<nexa_4>{"location": "Paris", "day": "someday"}', "someday"),
                     ('<nexa_4>{"location": "Paris", "day": "today", "unit": "C"}', "unexpected"),
                     ("<nexa_99>{}", "unknown"), ('<nexa_10>{"level": "loud"}', "level")]:
        res = parse_call(bad, lib)
        assert isinstance(res, NoCall) and why in res.reason, (bad, res)


def test_ast_check_verdicts(lib):
    ok = ast_check(Call("get_weather", {"location": "new york", "day": "tomorrow"}), "get_weather",
                   {"location": "New York", "day": "tomorrow"}, lib)
    assert ok.ok, ok.reasons
    assert standardize("New York!") == "newyork"
    cases = [
        (Call("get_weather", {"location": "Paris", "day": "today"}), "send_text", {}, "function"),
        (Call("get_weather", {"location": "Paris"}), "get_weather", {"location": "Paris", "day": "today"}, "missing"),
        (Call("get_weather", {"location": "Paris", "day": "today", "x": 1}), "get_weather",
         {"location": "Paris", "day": "today"}, "unexpected"),
        (Call("set_volume", {"level": "50"}), "set_volume", {"level": 50}, "str where integer"),
        (Call("set_volume", {"level": True}), "set_volume", {"level": 1}, "bool where integer"),
        (Call("get_weather", {"location": "Rome", "day": "today"}), "get_weather",
         {"location": "Paris", "day": "today"}, "expected 'Paris'"),
        (Call("set_alarm", {"time": "07:00"}), "set_alarm", {"time": "07:00", "label": "gym"}, "left out"),
    ]
    for call, name, args, why in cases:
        v = ast_check(call, name, args, lib)
        assert not v.ok and any(why in r for r in v.reasons), (call, v.reasons)
    assert ast_check(Call("set_volume", {"level": 50.0}), "set_volume", {"level": 50}, lib).ok is False  # float
    assert ast_check(Call("get_weather", {"location": "NYC", "day": "today"}), "get_weather",
                     {"location": ["New York", "NYC"], "day": "today"}, lib).ok


def test_functional_tokens_start_from_their_descriptions(tmp_path, lib, reviews):
    from hare.model.model import build_model, mistral_config
    from hare.train.pack import train_tokenizer

    tok = train_tokenizer(reviews[:40], 512, tmp_path / "tok")
    config = mistral_config("tiny", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "max_position_embeddings": 128, "tie_word_embeddings": False},
                            vocab_size=len(tok))
    model = build_model(config, seed=0)
    before = model.get_input_embeddings().weight.detach().clone()
    head_before = model.get_output_embeddings().weight.detach().clone()
    ids = add_functional_tokens(model, tok, lib)
    assert len(tok) == before.shape[0] + len(lib.tokens)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) and model.get_output_embeddings().weight.shape[0] == len(tok)
    torch.testing.assert_close(emb[:before.shape[0]], before)
    fn = lib.by_name["get_weather"]
    desc = tok(fn.description + " " + fn.name.replace("_", " "), add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(emb[ids[fn.token]], before[desc].mean(0))
    torch.testing.assert_close(model.get_output_embeddings().weight[ids[fn.token]], head_before[desc].mean(0))
    assert not torch.allclose(emb[ids["<nexa_0>"]], emb[ids["<nexa_1>"]])
    torch.testing.assert_close(emb[ids[END]], before.mean(0))
    # the tokens are single tokens of the tokenizer
    assert tok("<nexa_3>", add_special_tokens=False)["input_ids"] == [ids["<nexa_3>"]]
    assert add_functional_tokens(model, tok, lib) == ids  # adding again changes nothing


def test_retrieval_baseline_runs_on_held_out_families(lib):
    ex = build_examples(lib, seed=0)
    base = RetrievalBaseline(lib, [e for e in ex if e.split == "train"])
    test = [e for e in ex if e.split == "test"]
    samples: list[dict] = []
    res = score(base, test, lib, arguments=False, samples=samples)
    assert set(res["functions"]) >= {f.name for f in lib.functions}
    assert 0 < res["overall"]["function_accuracy"] <= 1
    assert res["overall"]["irrelevance"] is not None
    # every answer logged, in order, and the logged outcomes add up to the table's accuracy
    assert [s["query"] for s in samples] == [e.query for e in test]
    assert sum(s["function_ok"] for s in samples) / len(samples) == pytest.approx(
        res["overall"]["function_accuracy"], abs=1e-4)
    refused = [s for s in samples if s["expected"] == {"refusal": True}]
    assert refused and all(("call" in s["answer"]) != s["function_ok"] for s in refused)


def test_tools_commands(tmp_path, capsys):
    from hare.cli import main
    from hare.core.io import read_jsonl

    assert main(["tools-data", "--out", str(tmp_path / "d")]) == 0
    train, test = (list(read_jsonl(tmp_path / "d" / f"{s}.jsonl")) for s in ("train", "test"))
    assert train and test and not {r["family"] for r in train} & {r["family"] for r in test}
    assert test[0]["messages"][-1]["content"].startswith("<nexa_")
    assert main(["eval-tools", "--out", str(tmp_path / "r.json"), "--log-samples"]) == 0
    out = capsys.readouterr().out
    logged = list(read_jsonl(tmp_path / "r.samples.jsonl"))
    assert logged and {r["caller"] for r in logged} == {"tf-idf retrieval"} and "answer" in logged[0]
    assert "tf-idf retrieval: function acc" in out and "**overall**" in out
    assert main(["eval-tools", "--data", str(tmp_path / "d" / "test.jsonl")]) == 2
    assert main(["eval-tools", "--log-samples"]) == 2  # nowhere to write them


def test_functional_tokens_survive_decoding_without_special_tokens(tmp_path, lib, reviews):
    from hare.model.model import build_model, mistral_config
    from hare.train.pack import train_tokenizer

    tok = train_tokenizer(reviews[:40], 512, tmp_path / "tok")
    model = build_model(mistral_config("tiny", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                "num_attention_heads": 2, "num_key_value_heads": 1,
                                                "max_position_embeddings": 128}, vocab_size=len(tok)), seed=0)
    add_functional_tokens(model, tok, lib)
    text = lib.target("set_volume", {"level": 50})
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    tok.save_pretrained(tmp_path / "saved")
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert again(text, add_special_tokens=False)["input_ids"] == ids


def test_unseen_queries_load_and_are_not_templates(lib, tmp_path):
    from hare.chat.toolcall.data import load_labelled

    unseen = load_labelled(lib.path.replace(".json", ".unseen.json"), lib)
    assert len(unseen) == 60 and all(e.split == "test" and e.family == "unseen" for e in unseen)
    assert sum(e.function is None for e in unseen) == 8
    filled = {e.query.lower() for e in build_examples(lib)}
    assert not any(e.query.lower() in filled for e in unseen)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"queries": [{"query": "open spotify", "function": "open_app",
                                            "arguments": {"app": "spotify"}}]}))
    with pytest.raises(LibraryError, match="query 0: app"):
        load_labelled(bad, lib)
    bad.write_text(json.dumps({"queries": [{"query": "x", "function": "fly", "arguments": {}}]}))
    with pytest.raises(LibraryError, match="no function 'fly'"):
        load_labelled(bad, lib)
