"""Schema-constrained generation: the grammar engine on real models (a random-weight one writes
valid JSON too), ``response_format`` over HTTP to a real server that honours it, one that ignores
it and one that refuses it, and the meaning checks that a schema cannot make."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest

from hare.synth.cache import RequestCache
from hare.synth.client import HttpBackend, LocalBackend, Request, generate
from hare.model.constrain import schema_text
from hare.synth.d3 import (GENERATION_SCHEMAS, SCHEMAS, check_meaning, cloze_schema, cloze_sentences, distractors,
                           judge, parse, plan_task, render_task, terms)
from hare.synth.prompts import Templates
from tests.conftest import shared_or_skip

TASKS = ("qa", "mc", "cloze")
RIVERS = "Rivers carry water to the sea and shape the land they cross."


def passages(n: int) -> list[str]:
    path = shared_or_skip("dolly", "dolly-15k-head.jsonl")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r["context"][:500] for r in recs if len(r["context"]) > 400][:n]


def task_requests(model: str, texts: list[str], max_tokens: int, temperature: float = 0.7) -> list[Request]:
    """A D3 request per passage and task (``plan_task``), each under its generation schema: the
    qa and mc schemas, and the cloze schema made for a sentence of the passage."""
    tpl = Templates(None)
    reqs = []
    for i, (p, task) in enumerate((p, t) for p in texts for t in TASKS):
        _, prompt, schema = plan_task(task, p, tpl, random.Random(i))
        reqs.append(Request.chat(model, [("user", prompt)], max_tokens=max_tokens, temperature=temperature,
                                 top_p=0.95, seed=i, schema=schema_text(schema)))
    return reqs


def assert_valid(reqs: list[Request], results) -> None:
    for req, res in zip(reqs, results):
        schema = json.loads(req.schema)
        task = "cloze" if "sentence" in schema["properties"] else "mc" if "wrong_answers" in schema["properties"] \
            else "qa"
        assert res.ok and res.finish_reason == "stop", (task, res.text)
        obj = json.loads(res.text)  # the whole answer is the JSON: nothing before or after it
        jsonschema.validate(obj, schema)
        assert parse(task, res.text)[1] is None
        if task == "cloze":  # the schema makes the term one of its sentence's: the meaning check agrees
            assert check_meaning(task, obj)[1] is None, obj


def test_a_random_weight_model_under_a_schema_writes_only_valid_json(tiny, tmp_path):
    """Random weights write noise; under the schema the noise is still the JSON the task asks for."""
    reqs = task_requests(str(tiny), [RIVERS],
                         max_tokens=600)
    with RequestCache(tmp_path / "c.jsonl") as cache:
        results, usage = generate(reqs, LocalBackend(tiny, batch_size=3), cache)
    assert usage.ok == 3
    assert_valid(reqs, results)


def test_the_packaged_teacher_answers_every_task_in_its_schema_and_leaves_other_rows_alone(smollm2, tmp_path):
    reqs = task_requests(str(smollm2), passages(2), max_tokens=200)
    free = Request.chat(str(smollm2), [("user", "Summarize in one sentence: rivers carry water to the sea.")],
                        max_tokens=24)
    backend = LocalBackend(smollm2, batch_size=8)
    with RequestCache(tmp_path / "c.jsonl") as cache:
        results, _ = generate(reqs + [free], backend, cache)
    assert_valid(reqs, results[:-1])
    with RequestCache(tmp_path / "alone.jsonl") as cache:
        alone, _ = generate([free], backend, cache)
    assert results[-1].text == alone[0].text  # the unconstrained row of the batch: as if alone


class _Handler(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint on 127.0.0.1 answered by a real local model: it honours
    ``response_format`` with the grammar engine, ignores it, or refuses it (400), as ``mode`` says."""

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        fmt = body.get("response_format")
        if fmt is not None and self.server.mode == "refuse":
            return self._send(400, {"error": {"message": "unsupported fields: response_format"}})
        schema = schema_text(fmt["json_schema"]["schema"]) if fmt and self.server.mode == "honour" else None
        req = Request.chat(body["model"], [(m["role"], m["content"]) for m in body["messages"]],
                           max_tokens=body["max_tokens"], temperature=body["temperature"], top_p=body["top_p"],
                           seed=body.get("seed"), schema=schema)
        out = []
        self.server.backend.run([req], lambda r, res: out.append(res))
        res = out[0]
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": res.text},
                                      "finish_reason": res.finish_reason}],
                         "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens}})

    def _send(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def endpoint(tiny):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.backend, server.bodies, server.mode = LocalBackend(tiny, batch_size=1), [], "honour"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode", ["honour", "ignore", "refuse"])
def test_endpoints_get_the_schema_as_response_format(endpoint, tiny, tmp_path, mode):
    endpoint.mode, endpoint.bodies[:] = mode, []
    # noise from random weights: long enough to close its JSON under the schema, a few tokens otherwise
    reqs = task_requests(str(tiny), [RIVERS],
                         600 if mode == "honour" else 8)
    backend = HttpBackend([f"http://127.0.0.1:{endpoint.server_address[1]}/v1"], concurrency=1, max_retries=0)
    with RequestCache(tmp_path / "c.jsonl") as cache:
        results, usage = generate(reqs, backend, cache)
    assert usage.ok == 3 and usage.failed == 0
    sent = [b.get("response_format") for b in endpoint.bodies]
    assert sent[0] == {"type": "json_schema", "json_schema": {"name": "answer", "strict": True,
                                                              "schema": GENERATION_SCHEMAS["qa"]}}
    if mode == "honour":
        assert_valid(reqs, results)
    if mode == "refuse":  # asked again without the field, and never with it again
        assert sent == [sent[0], None, None, None] and backend.refuses_schema
    else:
        assert all(s is not None for s in sent) and len(sent) == 3


def test_a_schema_changes_the_cache_key_and_a_request_without_one_keeps_its_old_key():
    plain = Request.chat("m", [("user", "hi")])
    assert "response_format" not in plain.body()
    assert Request.chat("m", [("user", "hi")], schema=schema_text(GENERATION_SCHEMAS["qa"])).key() != plain.key()
    # the key of a request without a schema is the one it had before schemas existed: caches stay valid
    assert plain.key() == "1e47e5d1e995bcc2319d47d2963ca5b9e5cee8c359ee035a979d91b091f231c0"


@pytest.mark.parametrize("task,obj,passage,reason", [
    ("mc", {"question": "Which river?", "answer": "Nile", "wrong_answers": ["nile", "Amazon", "Rhine"]}, "",
     "not all different"),
    ("mc", {"question": "Which river?", "answer": "Nile", "wrong_answers": ["first", "second", "third"]}, "",
     "placeholder"),
    ("mc", {"question": "Which planet is red?", "answer": "Mars", "wrong_answers": ["Venus", "Earth", "Pluto"]},
     "The Nile flows north through Egypt.", "shares no word"),
    # the prompt's example question copied, with an answer taken from the passage
    ("mc", {"question": "Which river flows north through Egypt?", "answer": "os.path",
            "wrong_answers": ["ntpath", "posixpath", "genericpath"]}, "os.path is ntpath or posixpath.",
     "shares no word"),
    ("mc", {"question": "What is os.path for?", "answer": "os.path", "wrong_answers": ["ntpath", "posixpath", "sys"]},
     "", "contains its answer"),
    ("cloze", {"sentence": "The Nile flows north.", "answer": "Amazon"}, "", "not a term of the sentence"),
    ("cloze", {"sentence": "The Nile flows north.", "answer": "Nile flows north"}, "", "half the sentence"),
    ("cloze", {"sentence": "The Amazon flows east into the Atlantic.", "answer": "Amazon"},
     "The Nile flows north through Egypt.", "not from the passage"),
    ("qa", {"question": "Where does the Nile flow?", "answer": "where does the Nile flow"}, "", "repeats"),
])
def test_meaning_checks_refuse_what_a_schema_allows(task, obj, passage, reason):
    assert parse(task, json.dumps(obj))[1] is None  # valid JSON in the schema...
    out, why = check_meaning(task, obj, passage)
    assert out is None and reason in why  # ...that makes no sense


def test_a_sound_item_is_kept_and_rendered_with_its_answer_at_a_seeded_letter_or_blank():
    import random

    passage = "The Nile flows north through Egypt into the Mediterranean Sea."
    mc = {"question": "Where does the Nile flow?", "answer": "North", "wrong_answers": ["South", "East", "West"]}
    assert check_meaning("mc", mc, passage) == (mc, None)
    letters = set()
    for seed in range(8):
        text, _ = render_task("mc", mc, "", passage, Templates(None), random.Random(seed))
        lines = text.splitlines()
        letter = lines[-1].removeprefix("Answer: ")
        assert f"{letter}. North" in lines and sorted(x[3:] for x in lines[1:5]) == ["East", "North", "South", "West"]
        letters.add(letter)
    assert len(letters) > 1  # the right answer is not always at the same place
    cloze = {"sentence": "The Nile flows north through Egypt.", "answer": "nile"}
    assert check_meaning("cloze", cloze, passage) == (cloze, None)
    text, _ = render_task("cloze", cloze, "", passage, Templates(None), random.Random(0))
    assert text == "Fill in the blank: The ___ flows north through Egypt.\nAnswer: nile"
    assert set(GENERATION_SCHEMAS) <= set(SCHEMAS)


PAGE = """NAME
    os.path - Common pathname manipulations, Posix version.

DESCRIPTION
    Instead of importing this module directly, import os and refer to
    this module as os.path.  The "os.path" name is an alias for this
    module on Posix systems; on other systems (e.g. Windows), os.path
    provides the same operations in a manner specific to that platform.

    join(a, *p)
        Join two or more pathname components, inserting '/' as needed. If any
        component is an absolute path, all previous path components will be dis"""


def test_cloze_sentences_are_whole_sentences_of_words_and_their_terms_are_content_words():
    sentences = cloze_sentences(PAGE)
    assert sentences == [
        "Instead of importing this module directly, import os and refer to this module as os.path.",
        'The "os.path" name is an alias for this module on Posix systems; on other systems (e.g. Windows), os.path '
        "provides the same operations in a manner specific to that platform.",
        "Join two or more pathname components, inserting '/' as needed."]  # not the heading, not the cut one
    assert terms(sentences[0]) == ["importing", "module", "import", "refer", "os.path"]  # not "of", "instead"
    assert "NAME" not in terms(PAGE) and "DESCRIPTION" not in terms(PAGE)  # headings are no terms
    assert cloze_sentences("def f(x):\n    return x.y(z) + g(a, b, c, d, e)\n") == []
    assert cloze_sentences("The sky is blue.") == []  # too short to blank a word of


@pytest.mark.parametrize("passage", [PAGE, RIVERS])
def test_a_cloze_schema_admits_only_terms_of_its_sentence_and_every_one_passes_the_meaning_check(passage):
    for sentence in cloze_sentences(passage):
        schema = cloze_schema(sentence)
        for term in terms(sentence):
            obj = {"sentence": sentence, "answer": term}
            jsonschema.validate(obj, schema)
            assert check_meaning("cloze", obj, passage) == (obj, None)
            text, _ = render_task("cloze", obj, "", passage, Templates(None), random.Random(0))
            assert "___" in text and text.endswith(f"Answer: {term}")
        for wrong in ("Nile", sentence.split()[0] + "x"):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({"sentence": sentence, "answer": wrong}, schema)
        with pytest.raises(jsonschema.ValidationError):  # the sentence is the one hare picked
            jsonschema.validate({"sentence": sentence + " More.", "answer": terms(sentence)[0]}, schema)


def test_a_passage_without_a_whole_sentence_gets_no_cloze_item_and_the_prompt_names_the_sentence():
    tpl = Templates(None)
    assert plan_task("cloze", "x = f(1)\ny = g(2)\n", tpl, random.Random(0)) is None
    rel, prompt, schema = plan_task("cloze", PAGE, tpl, random.Random(0))
    sentence = schema["properties"]["sentence"]["const"]
    assert rel.startswith("d3/cloze/") and f"Sentence: {sentence}" in prompt and sentence in cloze_sentences(PAGE)
    picked = {plan_task("cloze", PAGE, tpl, random.Random(i))[2]["properties"]["sentence"]["const"] for i in range(20)}
    assert len(picked) > 1  # a seeded choice among the sentences, not always the first


def test_hare_picks_three_distinct_wrong_answers_of_the_answers_kind_from_the_passage():
    question = "Which module gives pathname manipulations on Posix?"
    for seed in range(10):
        wrong = distractors(question, "os.path", PAGE, random.Random(seed))
        assert len(wrong) == 3 and len({w.lower() for w in wrong}) == 3 and "os.path" not in wrong
        assert all(w in terms(PAGE) and w.lower() not in question.lower().split() for w in wrong)
        wrong = distractors("What kind of path makes all previous path components be discarded?", "absolute", PAGE,
                            random.Random(seed))
        assert all(w.islower() and "." not in w for w in wrong)  # plain words for a plain word
        assert "path" not in wrong and "components" not in wrong  # none of the question's words
    assert distractors("What flows?", "Rivers", RIVERS, random.Random(0)) == \
        distractors("What flows?", "Rivers", RIVERS, random.Random(0))  # seeded
    assert len(distractors("Which?", "water", "Water is wet.", random.Random(0))) < 3


def test_a_multiple_choice_answer_among_the_passage_terms_gets_hares_wrong_answers_or_a_reason():
    tpl = Templates(None)
    rel, prompt, schema = plan_task("mc", PAGE, tpl, random.Random(0), mc_distractors="passage")
    assert rel.startswith("d3/mc_term/") and schema["properties"]["answer"]["enum"] == terms(PAGE)
    assert "wrong_answers" not in schema["properties"]
    assert plan_task("mc", PAGE, tpl, random.Random(0))[2] == GENERATION_SCHEMAS["mc"]  # the teacher writes them
    assert plan_task("mc", "Water is wet.", tpl, random.Random(0), "passage")[2] == GENERATION_SCHEMAS["mc"]
    text = json.dumps({"question": "Which module gives pathname manipulations?", "answer": "os.path"})
    obj, why, valid = judge("mc", text, PAGE, random.Random(0))
    assert why is None and valid and len(obj["wrong_answers"]) == 3
    # the question gives its answer away: refused, though the options are distinct
    obj, why, valid = judge("mc", json.dumps({"question": "What is os.path for?", "answer": "os.path"}), PAGE,
                            random.Random(0))
    assert obj is None and valid and "contains its answer" in why
    # a passage too poor in terms for three wrong answers
    obj, why, valid = judge("mc", json.dumps({"question": "What is wet?", "answer": "Water"}), "Water is wet.",
                            random.Random(0))
    assert obj is None and valid and "three wrong answers" in why
    # without the generator the teacher's three wrong answers are required, as before
    assert judge("mc", text, PAGE)[1:] == ("the object: 'wrong_answers' is a required property", False)
