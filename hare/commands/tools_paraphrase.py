"""Teacher-written paraphrases of the training query families for `hare tools-data --paraphrase`: more
wordings, same slots (here, beside the command, because it joins the chat stage's query data with the
synthetic-data stage's teacher client, which a stage may not import).

Each template of a *training* family ("Wake me up at {time}") is sent to a teacher (a local or
packaged model, or OpenAI-compatible endpoints: ``hare.synth.teacher``) with a request for ``n``
new wordings of the same request, answered under a JSON Schema (``{"paraphrases": [n strings]}``,
each string with the template's placeholders once each and no other brace), so even a 135M
teacher's answer parses and keeps the slots. Every wording is then checked (``check``), in this
order, and dropped with its reason:

- ``slots``: its ``{slot}`` placeholders are not exactly the template's (the same multiset), or it
  has a stray brace; the slots carry the arguments, so a wording that loses or adds one would be
  trained with the wrong call;
- ``glued``: a placeholder touches a letter, a digit or another placeholder (``un{subject}``,
  ``{subject}{body}``): filled, the value would merge with its neighbour;
- ``length``: under 2 words, no word besides the placeholders, over twice the template's words
  plus 6, or over ``MAX_CHARS`` (90) characters;
- ``echo``: it has a word of the request's own scaffolding (``ECHO``: "JSON", "paraphrase",
  "placeholder", "example", "assistant", ...) or a placeholder's name as a plain word ("onoff the
  flashlight"), where the template has none: a small teacher writes about the task ("Here's a
  JSON example ... {level} percent") instead of doing it;
- ``roles``: a placeholder follows a word that, in the function's training templates, comes before
  another placeholder only ("titled {body}", "saying {email}" where the templates have "titled
  {subject}" and "saying {body}"): the slots would be filled with the wrong arguments;
- ``duplicate``: after normalisation (lowercase, words only) it equals a template of the query
  file or a wording kept before;
- ``heldout``: it shares ``SIMILAR`` (0.6) or more of its words (Jaccard over the word sets,
  placeholders counted as words) with a template of a held-out family: the held-out families
  measure generalisation to unseen wordings, so a near copy of one must not reach training.
  "Set an alarm at {time}" against "Set an alarm for {time}" is 0.67; the hand-written training
  templates reach at most 0.71 against the held-out ones of seed 0, and 20 of 138 are at 0.6 or
  more, so a kept paraphrase is never closer to a held-out wording than the hand-written data;
- ``other``: it shares ``SIMILAR`` or more of its words with a template of another function or of
  a refusal family (a paraphrase of "Call {contact}" that became "Send a message to {contact}");
- ``topic``: no word of it (less ``STOPWORDS`` and placeholders) is a word of its function's name
  or training templates: a small teacher's answer can keep the slots and still ask
  for something else ("Put {time} on the speaker" for "Wake me up at {time}"). This drops some
  good wordings with new synonyms too; it is the price of a 135M teacher. Refusal wordings are
  not checked for topic (their families have none in common).

Refusal families are paraphrased only when asked (``refusals=True``, ``hare tools-data
--paraphrase-refusals``), and then not those the query file marks ``"paraphrase": false``: the
families of requests that lack an argument ("Set an alarm"), since a rewording may well supply it
("Set an alarm for {time}") and would then be trained as a refusal. With the packaged 135M teacher
they hurt: its refusal wordings are fragments ("to {city}", "{message} in German"), and a model
trained on them refused calls (docs/tool-calling.md). Without refusal wordings the calls grow
against the refusals, and a model so trained called on anything with a number in it ("Transfer 50
dollars to Bob" -> set_volume); ``build_examples(keep_refusal_share=True)`` repeats refusals to keep
their share instead (off by default: measured, it did not help).

Held-out families are never sent (they are what the paraphrases are measured on). The answers go
through ``hare.synth.client.generate`` and its persistent cache, each request sampled with a seed
drawn from the run's seed and the template, so the same seed gives the same paraphrases and a
second run sends nothing. The kept wordings extend their family on the training side
(``build_examples(paraphrases=...)``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any

from hare.chat.toolcall.data import SLOT, Example, load_queries

SIMILAR = 0.6
CHARS = r"[A-Za-z ,.?!':;-]"  # what a wording is written with, besides its placeholders
# Characters of a wording. A request's token cap allows one token per character, so that the answer
# is closed under its schema however the teacher splits its words, and always parses.
MAX_CHARS = 90
REASONS = ("slots", "glued", "length", "echo", "roles", "duplicate", "heldout", "other", "topic")
_WORD = re.compile(r"\{\w+\}|\w+")
_GLUED = re.compile(r"\w\{|\}\w|\}\{")
_CUE = re.compile(r"(\w+)\W*\{(\w+)\}")
# Words that describe the paraphrasing request or a document about it, not a phone request: the
# prompt's own ("JSON", "placeholder", "ways") and what a small teacher wraps its answer in.
ECHO = frozenset("""json paraphrase paraphrases paraphrased placeholder placeholders curly braces brace ways user
users assistant example examples parody original response template templates""".split())

# The family's other templates are the prompt's examples: a small teacher copies its examples, and
# a copy of a sibling is dropped as a duplicate, where a copy of an unrelated example (a request
# of another function) would keep its slots and pass as a wrong paraphrase.
PROMPT = """A user asks a phone assistant: "{template}"
{siblings}
Write {n} new ways to ask for exactly the same thing, each in different words. {keep} \
Answer with JSON: {{"paraphrases": [...]}}."""
KEEP = ("Keep every placeholder in curly braces ({slots}) exactly as written, once each, and add no other "
        "placeholder.")
# Words too common to show that a wording is about its function's request.
STOPWORDS = frozenset("""a an the to for of on in at by with and or me my i you your it is be can could would
will please want need like just now up this that some get make do let""".split())


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets (placeholders count as words)."""
    wa, wb = words(a), words(b)
    return len(wa & wb) / len(wa | wb) if wa or wb else 1.0


def topic_words(name: str, templates: list[str]) -> set[str]:
    """The words that tie a wording to its function: those of its name and its training templates,
    less ``STOPWORDS`` and the placeholders (not its description: "Set an alarm clock for a time of
    day." would let "{time} is a magical time" pass for set_alarm)."""
    text = " ".join([name.replace("_", " "), *(SLOT.sub("", t) for t in templates)])
    return words(text) - STOPWORDS


def answer_schema(template: str, n: int) -> dict:
    """The JSON Schema of the answer for ``template``: ``n`` strings of letters, spaces and
    ``,.?!':;-`` that start with a letter or a placeholder, with the template's placeholders exactly
    once each (in any order; with a repeated placeholder or more than 4, once or more each).
    Digits, brackets and underscores are left out: templates have none, and a small teacher writes
    ``[time]`` or ``to_json({app})`` with them."""
    slots = SLOT.findall(template)
    names = sorted(set(slots))
    text = CHARS + "*"
    if len(slots) == len(set(slots)) and len(slots) <= 4:
        orders = ["".join(r"\{" + s + r"\}" + text for s in order) for order in permutations(names)]
        pattern = f"^([A-Za-z]{text})?(" + "|".join(orders) + ")$" if slots else f"^[A-Za-z]{text}$"
    else:
        pattern = r"^([A-Za-z]|\{(" + "|".join(names) + r")\})(" + CHARS + r"|\{(" + "|".join(names) + r")\})*$"
    item = {"type": "string", "minLength": 3, "maxLength": MAX_CHARS, "pattern": pattern}
    return {"type": "object", "properties": {"paraphrases": {"type": "array", "items": item, "minItems": n,
                                                             "maxItems": n}},
            "required": ["paraphrases"], "additionalProperties": False}


def cues(templates: list[str]) -> dict[str, set[str]]:
    """The word before each placeholder of ``templates`` (lowercase, not one of ``STOPWORDS``:
"to" or "the" come before anything) -> the placeholders it comes before ("titled {subject}":
titled -> {subject})."""
    out: dict[str, set[str]] = {}
    for t in templates:
        for word, slot in _CUE.findall(t.lower()):
            if word not in STOPWORDS:
                out.setdefault(word, set()).add(slot)
    return out


def check(text: str, template: str, known: set[str], heldout: list[str], others: list[str],
          topic: set[str] | None = None, roles: dict[str, set[str]] | None = None) -> str | None:
    """Why the wording ``text`` of ``template`` is dropped (one of ``REASONS``), or None to keep it.
    ``known``: normalised templates and wordings kept so far; ``heldout``: the held-out families'
    templates; ``others``: the templates of the other functions and of the refusal families;
    ``topic``: the words of the function (``topic_words``), or None not to check them; ``roles``:
    ``cues`` of the function's training templates, or None not to check them."""
    if Counter(SLOT.findall(text)) != Counter(SLOT.findall(template)) or \
            "{" in SLOT.sub("", text) or "}" in SLOT.sub("", text):
        return "slots"
    if _GLUED.search(text):
        return "glued"
    n = len(_WORD.findall(text))
    if n < 2 or not _WORD.findall(SLOT.sub("", text)) or n > 2 * len(_WORD.findall(template)) + 6 or \
            len(text) > MAX_CHARS:
        return "length"
    plain, said = words(SLOT.sub(" ", text)), words(SLOT.sub(" ", template))
    if (plain - said) & (ECHO | {s.lower() for s in SLOT.findall(template)}):
        return "echo"
    if roles and any(slot not in roles.get(word, {slot}) for word, slot in _CUE.findall(text.lower())):
        return "roles"
    if normalise(text) in known:
        return "duplicate"
    if any(similarity(text, h) >= SIMILAR for h in heldout):
        return "heldout"
    if any(similarity(text, o) >= SIMILAR for o in others):
        return "other"
    if topic is not None and not (words(SLOT.sub("", text)) - STOPWORDS) & topic:
        return "topic"
    return None


@dataclass
class Paraphrases:
    """The kept wordings per training family, and the accounting: requests, wordings asked for,
    answered, kept, and dropped by reason (``REASONS``, plus ``unparsed`` for wordings of an answer
    that was not the schema's JSON and ``failed`` for requests with no answer)."""

    families: dict[str, list[str]] = field(default_factory=dict)
    requests: int = 0
    asked: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_examples: list[dict[str, str]] = field(default_factory=list)
    sent: int = 0
    cached: int = 0

    def record(self) -> dict[str, Any]:
        return {"requests": self.requests, "sent": self.sent, "cached": self.cached, "asked": self.asked,
                "kept": self.kept, "dropped": self.dropped, "similar": SIMILAR, "families": self.families,
                "dropped_wordings": self.dropped_examples}

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        return (f"paraphrases: {self.asked} asked in {self.requests} requests ({self.sent} sent, {self.cached} "
                f"cached), {self.kept} kept, dropped: {drops}")


Families = tuple[list[tuple[str, str, list[str]]], list[str], dict[str, list[str]], dict[str, list[str]]]


def _families(spec: dict, examples: list[Example], refusals: bool = False) -> Families:
    """(label, function, templates) of every training family to paraphrase (of a function, and with
    ``refusals`` of a refusal family not marked ``"paraphrase": false``), the held-out templates,
    every template per function ("refuse" for the refusal families), and the training templates
    per function."""
    held = {e.family for e in examples if e.split == "test"}
    train, heldout, by_function, train_by_function = [], [], {}, {}
    groups = [(name, f["families"]) for name, f in spec.get("functions", {}).items()]
    groups.append(("refuse", spec.get("refuse", {}).get("families", [])))
    for name, families in groups:
        for i, fam in enumerate(families):
            label = f"{name}/{i}"
            by_function.setdefault(name, []).extend(fam["templates"])
            if label in held:
                heldout.extend(fam["templates"])
                continue
            if name != "refuse" or (refusals and fam.get("paraphrase", True)):
                train.append((label, name, fam["templates"]))
            train_by_function.setdefault(name, []).extend(fam["templates"])
    return train, heldout, by_function, train_by_function


def paraphrase_families(spec: dict, examples: list[Example], n: int, backend, cache, model: str, seed: int = 0,
                        temperature: float = 0.6, top_p: float = 0.95, refusals: bool = False) -> Paraphrases:
    """``n`` teacher-written wordings asked for every template of every training family of a
    function (with ``refusals``, of every refusal family not marked ``"paraphrase": false`` too),
    checked (``check``) and kept per family.

    ``spec``: the query file (``load_queries``); ``examples``: ``build_examples`` of it, which says
    which families are held out; ``backend``: a ``hare.synth.client.Backend`` or a function making
    one (called only when a request is not cached); ``cache``: a ``RequestCache``; ``model``: the
    model name the requests carry."""
    from hare.model.constrain import schema_text
    from hare.synth.client import Request, generate
    from hare.synth.common import sub_seed

    if n < 1:
        raise ValueError(f"paraphrases per template must be at least 1, got {n}")
    train, heldout, by_function, train_by_function = _families(spec, examples, refusals)
    requests, where = [], []
    for label, name, templates in train:
        for t, template in enumerate(templates):
            slots = ", ".join(dict.fromkeys("{" + s + "}" for s in SLOT.findall(template)))
            siblings = "; ".join(f'"{x}"' for x in templates if x != template)
            prompt = PROMPT.format(template=template, n=n,
                                   siblings=f"Other users ask for the same thing like this: {siblings}\n"
                                   if siblings else "",
                                   keep=KEEP.format(slots=slots) if slots else "Use no curly braces.")
            requests.append(Request.chat(model, [("user", prompt)], max_tokens=n * (MAX_CHARS + 6) + 16,
                                         temperature=temperature, top_p=top_p,
                                         seed=sub_seed(seed, "tools-paraphrase", label, t, template),
                                         schema=schema_text(answer_schema(template, n)),
                                         tag=f"tools-paraphrase/{label}"))
            where.append((label, name, template))
    results, usage = generate(requests, backend, cache, desc="paraphrases")
    out = Paraphrases(requests=len(requests), asked=n * len(requests), sent=usage.sent, cached=usage.cached,
                      dropped={r: 0 for r in (*REASONS, "unparsed", "failed")})
    known = {normalise(t) for ts in by_function.values() for t in ts}
    for (label, name, template), res in zip(where, results):
        if not res.ok:
            out.dropped["failed"] += n
            continue
        try:
            got = json.loads(res.text)["paraphrases"]
            if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
                raise TypeError("paraphrases is not a list of strings")
        except (ValueError, KeyError, TypeError):
            out.dropped["unparsed"] += n
            out.dropped_examples.append({"family": label, "template": template, "text": res.text[:300],
                                         "reason": "unparsed"})
            continue
        others = [t for f, ts in by_function.items() if f != name for t in ts]
        topic = topic_words(name, train_by_function[name]) if name != "refuse" else None
        roles = cues(train_by_function[name]) if name != "refuse" else None
        for text in got[:n]:
            text = " ".join(text.split())
            reason = check(text, template, known, heldout, others, topic, roles)
            if reason is None:
                known.add(normalise(text))
                out.families.setdefault(label, []).append(text)
                out.kept += 1
            else:
                out.dropped[reason] += 1
                out.dropped_examples.append({"family": label, "template": template, "text": text, "reason": reason})
        out.dropped["unparsed"] += max(0, n - len(got))
    return out


def paraphrase_queries(library, n: int, teacher, cache_path: str | Path, queries: str | Path | None = None,
                       per_template: int = 6, seed: int = 0, refusals: bool = False) -> Paraphrases:
    """``paraphrase_families`` for a library's query file, with a teacher section
    (``hare.synth.config.TeacherConfig``) and the request cache at ``cache_path``."""
    from hare.chat.toolcall.data import build_examples
    from hare.synth.cache import RequestCache
    from hare.synth.teacher import make_backend, teacher_model

    spec = load_queries(library, queries)
    examples = build_examples(library, queries, per_template=per_template, seed=seed)
    with RequestCache(cache_path) as cache:
        return paraphrase_families(spec, examples, n, lambda: make_backend(teacher, seed), cache,
                                   teacher_model(teacher), seed=seed, refusals=refusals)
