"""The in-flight engine (``hare.synth.engine``): greedy answers equal ``model.generate`` one request
at a time, with rows that end at different steps and are replaced, stop strings and JSON Schemas;
sampled answers do not depend on the rows beside them; the slot cache keeps each row's columns
through moves, shifts and growth."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from hare.model.constrain import schema_text
from hare.synth.client import LocalBackend, Request
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
    got, want = answers(inflight, reqs), answers(alone, reqs)
    assert [r.text for r in got] == [r.text for r in want]
    assert [r.completion_tokens for r in got] == [r.completion_tokens for r in want]
    assert [r.finish_reason for r in got] == [r.finish_reason for r in want]
    assert {r.finish_reason for r in got} >= {"length"} and len({r.completion_tokens for r in got}) > 2
    inflight.batch_size = 11  # every request in flight at once: the same answers
    try:
        assert [r.text for r in answers(inflight, reqs)] == [r.text for r in want]
    finally:
        inflight.batch_size = 3


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
    for t, r in zip(tasks, got):
        assert r.finish_reason == "stop", r.text
        jsonschema.validate(json.loads(r.text), schemas[t])
    assert [r.text for r in got] == [r.text for r in answers(alone, reqs)]


def test_a_sampled_answer_is_the_same_whatever_rows_run_beside_it(tiny_backends, tiny):
    inflight, alone = tiny_backends
    reqs = varied(str(tiny), 7, temperature=0.8, top_p=0.95, seed=None)
    together = [r.text for r in answers(inflight, reqs)]
    assert [r.text for r in answers(inflight, reqs[3:])] == together[3:]
    assert [r.text for r in answers(alone, reqs)] == together  # and as the generate engine samples it
    again = varied(str(tiny), 7, temperature=0.8, top_p=0.95, seed=5)
    assert [r.text for r in answers(inflight, again)] != together  # sampled: another seed, other texts


def test_the_packaged_teacher_answers_as_generate_alone(smollm2):
    inflight = LocalBackend(smollm2, batch_size=3, threads=1)
    alone = LocalBackend(smollm2, batch_size=1, threads=1, engine="generate")
    reqs = [Request.chat(str(smollm2), [("user", q)], max_tokens=m) for q, m in
            [("What is the capital of France? One word.", 12), ("Name three rivers of Europe.", 20),
             ("Write one sentence about rain.", 16), ("What is 2+2? Answer with the number.", 8)]]
    got, want = answers(inflight, reqs), answers(alone, reqs)
    assert [r.text for r in got] == [r.text for r in want]
    assert len({r.completion_tokens for r in got}) > 1


def test_the_slot_cache_keeps_each_rows_columns_through_moves_shifts_and_growth():
    cache = SlotCache(layers=2, rows=3, capacity=4)
    rows = [torch.randn(2, 1, 5, 2) for _ in range(3)]  # per row: [heads, columns, head_dim] keys

    def cols(layer, row, width):
        return layer.keys[row, :, cache.end - width: cache.end]

    cache.end = 3
    cache.place(0, [rows[0][0], rows[0][1]], [rows[0][0], rows[0][1]], 3)
    assert cache.capacity == 4 and torch.equal(cols(cache.layers[1], 0, 3), rows[0][1][:, -3:])
    cache.shift(2, 1)  # a longer prompt comes: the row moves right, the buffers grow
    assert cache.end == 5 and cache.capacity >= 6
    cache.place(1, [rows[1][0], rows[1][1]], [rows[1][0], rows[1][1]], 5)
    assert torch.equal(cols(cache.layers[0], 0, 3), rows[0][0][:, -3:])
    assert torch.equal(cols(cache.layers[0], 1, 5), rows[1][0])
    cache.move(1, 0)
    assert torch.equal(cols(cache.layers[1], 0, 5), rows[1][1])
    cache.shift(-2, 1)  # the columns no row reads any more are dropped
    assert cache.end == 3 and torch.equal(cols(cache.layers[1], 0, 3), rows[1][1][:, -3:])
    k, v = cache.layers[0].update(torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    assert k.shape == (1, 1, 4, 2) and torch.equal(k[0, :, -1], torch.ones(1, 2))
