"""Teacher-written paraphrases of the training query families: the checks, the split, the cache."""

from __future__ import annotations

import json

import pytest

from hare.chat.toolcall.data import build_examples, load_queries
from hare.chat.toolcall.library import LibraryError, load_library
from hare.commands.tools_paraphrase import (SIMILAR, answer_schema, check, cues, normalise, paraphrase_families,
                                            similarity, topic_words)
from hare.synth.cache import RequestCache
from hare.synth.client import Backend, Result

TEMPLATE = "Set an alarm for {time} called {label}"
KNOWN = {normalise(TEMPLATE), normalise("Wake me up at {time}")}


@pytest.fixture(scope="module")
def lib():
    return load_library()


@pytest.mark.parametrize("text,reason", [
    ("Please wake me at {time} with the name {label}", None),
    ("Wake me at {time}", "slots"),                                  # a slot lost
    ("Alarm {time} {label} {label}", "slots"),                       # a slot twice
    ("Alarm at {time} for {label} on {day}", "slots"),               # a slot added
    ("Alarm at {time} called {label} }", "slots"),                   # a stray brace
    ("{time} {label}", "length"),
    ("I would really like you to please go ahead and set up a brand new alarm for me at {time} and give it "
     "the name {label} if you can", "length"),
    ("set an alarm for {time}, called {label}!", "duplicate"),       # the template again, after normalisation
    ("Put an alarm at {time} labelled {label}", "heldout"),
    ("Call {contact}", "slots"),
    ("Alarm un{time} called {label}", "glued"),                      # a placeholder glued to a word
    ("Make an alarm for {time}{label}", "glued"),                    # or to another placeholder
    ("Here's a JSON example: alarm at {time} called {label}", "echo"),  # about the request, not one
    ("Label the alarm {label} for time {time}", "echo"),             # a placeholder's name as a word
])
def test_check(text, reason):
    heldout = ["Alarm at {time} labeled {label}", "Put an alarm at {time} named {label}"]
    assert check(text, TEMPLATE, KNOWN, heldout, others=["Open {app}"]) == reason


def test_check_topic():
    topic = topic_words("set_alarm", ["Wake me up at {time}", "Alarm at {time} called {label}"])
    assert {"alarm", "wake", "called"} <= topic and not {"at", "time", "label"} & topic
    assert check("{time} is a magical hour to live", "Wake me up at {time}", set(), [], [], topic) == "topic"
    assert check("Put {time} on the speaker", "Wake me up at {time}", set(), [], [], topic) == "topic"
    assert check("Rouse me from sleep at {time}", "Wake me up at {time}", set(), [], [], topic) == "topic"
    assert check("I must be awake by {time}, wake me", "Wake me up at {time}", set(), [], [], topic) is None


def test_check_roles():
    """A placeholder after a word that, in the function's templates, comes before another one only."""
    roles = cues(["Email {email} titled {subject} saying {body}", "Send an email to {email} about {subject}"])
    assert roles == {"email": {"email"}, "titled": {"subject"}, "saying": {"body"}, "about": {"subject"}}
    template = "Email {email} titled {subject} saying {body}"
    assert check("Write to {email} titled {body} saying {subject}", template, set(), [], [], roles=roles) == "roles"
    assert check("Write to {email} titled {subject} saying {body}", template, set(), [], [], roles=roles) is None
    # words the templates do not use before a placeholder, and stopwords, say nothing of the slot
    assert check("Mail {email}: {body}, headed {subject}", template, set(), [], [], roles=roles) is None


def test_refusal_share_is_kept(lib):
    plain = build_examples(lib)
    train = [e for e in plain if e.split == "train"]
    share = sum(e.function is None for e in train) / len(train)
    fams = sorted({e.family for e in train if e.function == "set_alarm"})
    wordings = {f: [f"Alarm number {k} at {{time}}" for k in range(40)] for f in fams}
    more = build_examples(lib, paraphrases=wordings, keep_refusal_share=True)
    assert more[:len(plain)] == plain
    mtrain = [e for e in more if e.split == "train"]
    repeats = [e for e in mtrain if e.family.endswith("+r")]
    assert repeats and all(e.function is None and e.arguments == {} for e in repeats)
    assert {e.query for e in repeats} <= {e.query for e in train if e.function is None}
    got = sum(e.function is None for e in mtrain) / len(mtrain)
    assert share <= got < share + 1 / len(mtrain) + 1e-9  # the fewest repeats that keep the share
    assert build_examples(lib, paraphrases=wordings, keep_refusal_share=True) == more  # seeded
    off = build_examples(lib, paraphrases=wordings)  # off by default
    assert not any(e.family.endswith("+r") for e in off) and len(off) == len(more) - len(repeats)


def test_check_rejects_near_copies_of_held_out_and_other_functions():
    assert similarity("Set an alarm at {time}", "Set an alarm for {time}") >= SIMILAR
    assert check("Set an alarm at {time}", "Wake me up at {time}", set(), ["Set an alarm for {time}"], []) == "heldout"
    assert check("Set an alarm at {time}", "Wake me up at {time}", set(), [], []) is None
    # a wording of call_contact that became another function's (or a refusal's) request
    assert check("Send a message to {contact}", "Call {contact}", set(), [],
                 ["Send a message to {contact}", "Text {contact}"]) == "other"


def test_answer_schema_allows_only_the_templates_slots():
    import re

    item = answer_schema("Text {contact} {message}", 3)["properties"]["paraphrases"]
    assert item["minItems"] == item["maxItems"] == 3
    pattern = re.compile(item["items"]["pattern"])
    assert pattern.match("Send {contact} the text {message}")
    assert not pattern.match("Send {contact} the text {message} at {time}")
    assert not pattern.match("Send {contact} a {text")
    assert not pattern.match("Send {contact} a message")  # a slot lost
    assert pattern.match("Send {message} to {contact}")
    assert not pattern.match("Send {contact} the [message] {message}")  # brackets, as a small teacher writes
    assert not pattern.match(".{contact} {message}")  # starts with neither a letter nor a placeholder
    assert not re.compile(answer_schema("Tell me a joke", 2)["properties"]["paraphrases"]["items"]["pattern"]).match(
        "Tell me {joke}")


def test_paraphrases_extend_training_families_only(lib):
    plain = build_examples(lib)
    held = sorted({e.family for e in plain if e.split == "test"})
    train_fam = next(e.family for e in plain if e.split == "train" and e.function == "set_alarm")
    more = build_examples(lib, paraphrases={train_fam: ["Please wake me at {time}", "Ring the alarm at {time}"]},
                          keep_refusal_share=False)
    assert more[:len(plain)] == plain  # the query file's queries and the split are unchanged
    extra = more[len(plain):]
    assert extra and all(e.split == "train" and e.family == f"{train_fam}+p" and e.function == "set_alarm"
                         for e in extra)
    assert all(set(e.arguments) >= {"time"} and len(e.arguments["time"]) == 5 for e in extra)
    with pytest.raises(LibraryError, match="held-out"):
        build_examples(lib, paraphrases={held[0]: ["anything"]})
    with pytest.raises(LibraryError, match="does not have"):
        build_examples(lib, paraphrases={"set_alarm/99": ["Alarm {time}"]})


def test_paraphrase_flag_must_be_a_boolean(lib, tmp_path):
    spec = load_queries(lib)
    spec["refuse"]["families"][5]["paraphrase"] = "no"
    (tmp_path / "q.json").write_text(json.dumps(spec))
    with pytest.raises(LibraryError, match=r"q.json: refuse family 5: \"paraphrase\" must be true or false, not 'no'"):
        build_examples(lib, tmp_path / "q.json")


class Scripted(Backend):
    """Answers every request with the same text; counts what it was sent."""

    name = "scripted"

    def __init__(self, text: str):
        self.text, self.sent, self.tags = text, 0, []

    def run(self, requests, done):
        for r in requests:
            self.sent += 1
            self.tags.append(r.tag)
            done(r, Result(r.key(), ok=True, text=self.text))


def test_checks_applied_to_answers(lib, tmp_path):
    spec = load_queries(lib)
    examples = build_examples(lib)
    one = {**spec, "functions": {"set_volume": spec["functions"]["set_volume"]}, "refuse": {"families": []}}
    train = [i for i in range(len(one["functions"]["set_volume"]["families"]))
             if f"set_volume/{i}" not in {e.family for e in examples if e.split == "test"}]
    answer = json.dumps({"paraphrases": ["Bring the sound volume to {level}", "Volume {level} {level}",
                                         "Set the volume to {level}"]})
    with RequestCache(tmp_path / "c.jsonl") as cache:
        p = paraphrase_families(one, examples, 3, Scripted(answer), cache, "scripted")
    assert p.requests == 3 * len(train) and p.asked == 3 * p.requests
    # the first wording is kept once (then a duplicate), the second has a slot twice, the third is a template
    assert p.kept == 1 and p.dropped["slots"] == p.requests and p.dropped["duplicate"] == 2 * p.requests - 1
    assert p.kept + sum(p.dropped.values()) == p.asked
    assert list(p.families.values()) == [["Bring the sound volume to {level}"]]


def test_refusal_families_are_paraphrased_when_asked_unless_marked(lib, tmp_path):
    """With ``refusals``, refusal families are sent like the functions' (not held-out ones, nor those
    marked ``"paraphrase": false``); their wordings are not checked for topic but are for other
    functions. Without it, none is sent."""
    spec = load_queries(lib)
    examples = build_examples(lib)
    held = {e.family for e in examples if e.split == "test"}
    one = {**spec, "functions": {"set_volume": spec["functions"]["set_volume"]}}
    marked = {f"refuse/{i}" for i, f in enumerate(spec["refuse"]["families"]) if f.get("paraphrase") is False}
    assert marked  # the query file marks the families of requests lacking an argument
    sent = [f"refuse/{i}" for i, f in enumerate(spec["refuse"]["families"])
            if f"refuse/{i}" not in held and f"refuse/{i}" not in marked]
    answer = json.dumps({"paraphrases": ["Do a thing for me now", "Set the volume to 40"]})
    teacher = Scripted(answer)
    with RequestCache(tmp_path / "c.jsonl") as cache:
        p = paraphrase_families(one, examples, 2, teacher, cache, "scripted", refusals=True)
    asked = {t.removeprefix("tools-paraphrase/") for t in teacher.tags}
    assert {a for a in asked if a.startswith("refuse/")} == set(sent)
    assert p.requests == teacher.sent == 4 * len(sent) + sum(
        len(f["templates"]) for i, f in enumerate(spec["functions"]["set_volume"]["families"])
        if f"set_volume/{i}" not in held)
    # the answer has no placeholder: its first wording is kept for the first refusal template
    # without one (then it is a duplicate); its second is a function's request ("Set the volume to
    # {level}", held out or not), never kept as a refusal
    assert p.kept == 1 and list(p.families) == [sent[0]]
    second = [d["reason"] for d in p.dropped_examples if d["text"] == "Set the volume to 40"]
    assert len(second) == p.requests and {"heldout", "other"} & set(second) and set(second) <= {
        "slots", "heldout", "other"}
    plain = Scripted(answer)  # by default, only the functions' families are sent
    with RequestCache(tmp_path / "d.jsonl") as cache:
        paraphrase_families(one, examples, 2, plain, cache, "scripted")
    assert plain.tags and not any(t.startswith("tools-paraphrase/refuse/") for t in plain.tags)


def test_tiny_teacher_end_to_end_and_cached(lib, smollm2, tmp_path):
    """``hare tools-data --paraphrase`` with a real (tiny, random) local model as the teacher, on
    one function's families; a second run is answered by the cache alone and writes the same files."""
    from hare.cli import main as hare
    from hare.synth.teacher import tiny_teacher

    folder = tiny_teacher(tmp_path / "tiny", tokenizer_from=smollm2)
    spec = load_queries(lib)
    one = {"slots": spec["slots"], "functions": {"open_app": spec["functions"]["open_app"]}}
    (tmp_path / "q.json").write_text(json.dumps(one))
    runs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        assert hare(["tools-data", "--queries", str(tmp_path / "q.json"), "--out", str(out), "--paraphrase", "1",
                     "--teacher", str(folder), "--cache", str(tmp_path / "cache.jsonl"), "--seed", "3"]) == 0
        runs.append((json.loads((out / "paraphrases.json").read_text()), (out / "train.jsonl").read_text(),
                     (out / "test.jsonl").read_text()))
    (first, train0, test0), (second, train1, test1) = runs
    assert first["requests"] == 9 and first["sent"] == 9 and first["asked"] == 9
    assert first["dropped"]["unparsed"] == 0  # the schema makes every answer parse, even a random model's
    assert first["kept"] + sum(first["dropped"].values()) == first["asked"]
    assert second["sent"] == 0 and second["cached"] == 9
    assert {**second, "sent": 9, "cached": 0} == first and (train1, test1) == (train0, test0)
    held = {json.loads(r)["family"] for r in test0.splitlines()}
    assert len(held) == 1 and not any(k in held for k in first["families"])
    extra = [json.loads(r) for r in train0.splitlines() if json.loads(r)["family"].endswith("+p")]
    assert len({r["family"] for r in extra}) == len(first["families"])
