"""The in-flight engine (``hare.synth.engine``): greedy answers equal ``model.generate`` one request
at a time, with rows that end at different steps and are replaced, shared prompt prefixes, checked
proposals, stop strings and JSON Schemas; sampled answers do not depend on the rows beside them and
they are the same with or without proposals; the slot cache writes each row at its own
length and keeps its columns through copies and growth."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest
import torch

from hare.model.constrain import schema_text
from hare.synth.client import LocalBackend, Penalties, Request
from hare.synth.d3 import GENERATION_SCHEMAS, cloze_schema, mc_term_schema
from hare.synth.engine import SlotCache


def answers(backend: LocalBackend, reqs: list[Request]) -> list:
    got: dict = {}
    backend.run(reqs, lambda r, res: got.__setitem__(r.key(), res))
    return [got[r.key()] for r in reqs]


def varied(model: str, n: int, **kw) -> list[Request]:
    """Prompts of different lengths and answers of different caps: rows end at different steps."""
    return [Request.chat(model, [("user", f"Tell me {'much more ' * (i % 6) * (1 + 20 * (i % 5 == 4))}about the "
                                          f"number {i}.")], max_tokens=5 + 9 * (i % 4), **kw) for i in range(n)]


@pytest.fixture(scope="module")
def tiny_backends(tiny):
    return LocalBackend(tiny, batch_size=3), LocalBackend(tiny, batch_size=1, engine="generate")


def test_greedy_answers_equal_generate_one_request_at_a_time(tiny_backends, tiny):
    inflight, alone = tiny_backends
    reqs = varied(str(tiny), 11)
    reqs += [Request.chat(str(tiny), r.messages, max_tokens=r.max_tokens + 3) for r in reqs[4:7]]  # same prompts
    got, want = answers(inflight, reqs), answers(alone, reqs)
    assert inflight.stats.reused_tokens > 0  # the same prompts (and the chat template's system turn) shared
    assert [r.text for r in got] == [r.text for r in want]
    assert [r.completion_tokens for r in got] == [r.completion_tokens for r in want]
    assert [r.finish_reason for r in got] == [r.finish_reason for r in want]
    assert {r.finish_reason for r in got} >= {"length"} and len({r.completion_tokens for r in got}) > 2
    inflight.batch_size, inflight.speculate = 14, 0  # every request in flight at once, no proposals
    try:
        assert [r.text for r in answers(inflight, reqs)] == [r.text for r in want]
        assert inflight.stats.proposed == 0
    finally:
        inflight.batch_size, inflight.speculate = 3, 8


def test_stop_strings_cut_the_answer_where_generate_cuts_it(tiny_backends, tiny):
    inflight, alone = tiny_backends
    free = answers(alone, varied(str(tiny), 6))
    # A stop string that each answer meets midway: a piece of its own text.
    reqs = [Request.chat(str(tiny), r.messages, max_tokens=r.max_tokens, stop=(a.text[len(a.text) // 2:][:3],))
            for r, a in zip(varied(str(tiny), 6), free) if len(a.text) > 8]
    assert len(reqs) >= 3
    got, want = answers(inflight, reqs), answers(alone, reqs)
    assert [r.text for r in got] == [r.text for r in want]
    assert all(r.finish_reason == "stop" for r in got)
    assert all(len(g.text) < len(f.text) for g, f in zip(got, free))


def test_every_answer_under_a_schema_is_valid_json_of_its_schema(tiny_backends, tiny):
    inflight, alone = tiny_backends
    passage = "The river Nile flows north through Egypt. Farmers along its banks grow wheat and cotton."
    schemas = {**GENERATION_SCHEMAS, "cloze": cloze_schema("Farmers along its banks grow wheat and cotton."),
               "mc_term": mc_term_schema(passage)}
    tasks = ["qa", "mc", "cloze", "mc_term"] * 2
    reqs = [Request.chat(str(tiny), [("user", f"Write a {t} task on passage {i}.")], max_tokens=600,
                         schema=schema_text(schemas[t])) for i, t in enumerate(tasks)]
    reqs.append(Request.chat(str(tiny), [("user", "No schema here.")], max_tokens=9))  # a free row beside them
    got = answers(inflight, reqs)
    assert inflight.stats.proposed > 0  # rows under a grammar checked proposals too
    for t, r in zip(tasks, got):
        assert r.finish_reason == "stop", r.text
        jsonschema.validate(json.loads(r.text), schemas[t])
    assert [r.text for r in got] == [r.text for r in answers(alone, reqs)]
    sampled = [Request.chat(str(tiny), r.messages, max_tokens=r.max_tokens, schema=r.schema, temperature=0.7)
               for r in reqs[:-1]]
    for t, r in zip(tasks, answers(inflight, sampled)):  # sampled, proposals checked under the grammar
        jsonschema.validate(json.loads(r.text), schemas[t])


def test_a_sampled_answer_is_the_same_whatever_rows_run_beside_it(tiny_backends, tiny):
    inflight, alone = tiny_backends
    reqs = varied(str(tiny), 7, temperature=0.8, top_p=0.95, seed=None)
    reqs += [Request.chat(str(tiny), [("user", f"Quiz {i}.")], max_tokens=200, temperature=0.8, top_p=0.95,
                          schema=schema_text(GENERATION_SCHEMAS["mc"])) for i in range(4)]  # JSON: proposals
    together = [r.text for r in answers(inflight, reqs)]
    assert inflight.stats.proposed > 0
    assert [r.text for r in answers(inflight, reqs[3:])] == together[3:]
    again = varied(str(tiny), 7, temperature=0.8, top_p=0.95, seed=5)
    assert [r.text for r in answers(inflight, again)] != together[:7]  # sampled: another seed, other texts
    assert [r.text for r in answers(alone, reqs)] == together  # the generate engine draws the same
    inflight.speculate = 0  # and without proposals
    try:
        assert [r.text for r in answers(inflight, reqs)] == together
    finally:
        inflight.speculate = 8


def test_penalties_apply_alike_in_both_engines_with_or_without_proposals(tiny_backends, tiny):
    inflight, alone = tiny_backends
    plain = varied(str(tiny), 7)
    base = [r.text for r in answers(alone, plain)]
    for kw in ({"presence_penalty": -1e4}, {"frequency_penalty": -50.0, "presence_penalty": 2.0},
               {"frequency_penalty": -3.0, "temperature": 0.8, "seed": 3}):
        reqs = [dataclasses.replace(r, **kw) for r in plain]
        got = answers(inflight, reqs)
        assert [r.text for r in got] == [r.text for r in answers(alone, reqs)]  # generate's Penalties: the same
        inflight.speculate = 0
        try:
            assert [r.text for r in answers(inflight, reqs)] == [r.text for r in got]
        finally:
            inflight.speculate = 8
        if "temperature" not in kw:
            assert [r.text for r in got] != base
            for r in got:  # a negative penalty large enough: the first token over and over
                ids = inflight.tok(r.text, add_special_tokens=False).input_ids
                assert len(set(ids)) == 1 or r.completion_tokens > len(ids), r.text


def test_the_penalties_processor_lowers_each_generated_token_by_its_count():
    scores = torch.zeros(2, 6)
    ids = torch.tensor([[5, 5, 1, 1, 2], [5, 5, 3, 3, 3]])  # two prompt columns, then three generated
    got = Penalties(2, frequency=0.5, presence=1.0)(ids, scores)
    assert got.tolist() == [[0, -2.0, -1.5, 0, 0, 0], [0, 0, 0, -2.5, 0, 0]]  # the prompt's 5 is free
    assert "frequency_penalty" not in Request(model="m", prompt="x").body()  # 0: not sent, keys unchanged
    assert Request(model="m", prompt="x", presence_penalty=0.5).body()["presence_penalty"] == 0.5


def test_the_packaged_teacher_answers_as_generate_alone(smollm2):
    inflight = LocalBackend(smollm2, batch_size=3, threads=1)
    alone = LocalBackend(smollm2, batch_size=1, threads=1, engine="generate")
    copy = ("Repeat this sentence word for word: The old lighthouse keeper climbed the narrow stairs every "
            "evening to light the lamp for the fishing boats.")
    reqs = [Request.chat(str(smollm2), [("user", q)], max_tokens=m) for q, m in
            [("What is the capital of France? One word.", 12), ("Name three rivers of Europe.", 20),
             ("Write one sentence about rain.", 16), ("What is 2+2? Answer with the number.", 8), (copy, 30)]]
    count = Request.chat(str(smollm2), [("user", "List the numbers from 1 to 8, one per line.")], max_tokens=24)
    reqs += [count, dataclasses.replace(count, presence_penalty=1e4)]  # no token twice under a huge one
    got, want = answers(inflight, reqs), answers(alone, reqs)
    assert [r.text for r in got] == [r.text for r in want]
    assert len({r.completion_tokens for r in got}) > 1
    assert got[-2].text.count(",") >= 5 and got[-1].text.count(",") <= 1, got[-2:]  # "1, 2, 3, ..." and not
    assert inflight.stats.accepted >= 5  # the copied sentence came several tokens a step


def test_the_slot_cache_writes_each_row_at_its_own_length_and_keeps_it_through_copies_and_growth():
    cache = SlotCache(layers=2, rows=3, capacity=4)
    layer = cache.layers[0]
    # Two rows write 3 columns each, row 0 from column 0 and row 1 from column 1 (it holds 1 already).
    positions, mask = cache.begin(0, [0, 1], 3)
    assert positions.tolist() == [[0, 1, 2], [1, 2, 3]] and cache.span == 4
    causal = [[True, False, False, False], [True, True, False, False], [True, True, True, False]]
    assert mask.shape == (2, 1, 3, 4) and mask[0, 0].tolist() == causal
    assert mask[1, 0].tolist() == [[True, True, False, False], [True, True, True, False], [True] * 4]
    new = torch.arange(2 * 1 * 3 * 2, dtype=torch.float).view(2, 1, 3, 2)  # [rows, heads, columns, head_dim]
    k, v = layer.update(new, new + 100)
    assert k.shape == (2, 1, 4, 2) and torch.equal(k[0, :, :3], new[0]) and torch.equal(k[1, :, 1:4], new[1])
    # One more column for each row at its own length: 3 and 4 (the buffers grow).
    cache.begin(0, [3, 4], 1)
    assert cache.capacity >= 5
    one = torch.full((2, 1, 1, 2), 7.0)
    k, v = layer.update(one, one)
    assert torch.equal(k[0, :, :3], new[0]) and torch.equal(k[0, :, 3], one[0, :, 0])
    assert torch.equal(k[1, :, 1:4], new[1]) and torch.equal(k[1, :, 4], one[1, :, 0])
    cache.copy(1, 2, 5)  # row 2 takes row 1's first 5 columns
    assert torch.equal(layer.keys[2, :, :5], layer.keys[1, :, :5])
    assert torch.equal(layer.values[2, :, 1:4], new[1] + 100)


def test_bfloat16_teacher_runs_the_engine_and_names_itself_in_cache_keys(tiny):
    """``teacher.dtype: bfloat16``: the engine runs the model in bfloat16 (answers under a schema still
    validate), and the model name of the requests, part of every cache key, says so."""
    from hare.core.teacher import TeacherConfig
    from hare.synth.teacher import make_backend, teacher_dtype, teacher_model

    cfg = TeacherConfig(local=str(tiny), dtype="bfloat16", batch_size=3)
    assert teacher_model(cfg) == f"{tiny}@bfloat16" and teacher_model(TeacherConfig(local=str(tiny))) == str(tiny)
    # auto: bfloat16 where the CPU has AMX, float32 elsewhere; the key follows what runs
    auto = TeacherConfig(local=str(tiny), dtype="auto")
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    assert teacher_dtype(auto) == ("bfloat16" if amx else "float32")
    assert teacher_model(auto) == (f"{tiny}@bfloat16" if amx else str(tiny))
    backend = make_backend(cfg)
    assert backend.model.dtype == torch.bfloat16
    reqs = [Request.chat(teacher_model(cfg), [("user", f"Quiz {i}.")], max_tokens=300,
                         schema=schema_text(GENERATION_SCHEMAS["qa"])) for i in range(4)]
    reqs += varied(teacher_model(cfg), 3)
    got = answers(backend, reqs)
    for r in got[:4]:
        jsonschema.validate(json.loads(r.text), GENERATION_SCHEMAS["qa"])
    assert all(r.completion_tokens > 0 for r in got)
