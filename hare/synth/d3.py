"""D3 (the d3 step's work): NLP tasks in natural-language form (the paper's D3).

Two sources of samples:

- **teacher-written tasks** from seed passages (D2 generations and a seeded sample of D1 documents):
  question answering, multiple choice, cloze and summarization, several phrasings each
  (``templates/d3/<task>/*.txt``). Question answering, multiple choice and cloze are answered as
  JSON, decoded under their JSON Schema (``plan_task``, ``synth.d3.constrain``: a grammar engine
  locally, ``response_format`` with endpoints), then checked twice: the syntax against ``SCHEMAS``
  (``parse``: a server may ignore the schema) and the sense (``check_meaning``: four different
  options, a cloze sentence taken from the passage with its key term in it). A multiple-choice
  item is asked as the right answer and three wrong ones, or (``synth.d3.mc_distractors:
  passage``) as a question whose answer is a term of the passage, and hare picks three other terms
  of the passage as the wrong ones (``distractors``); hare places the right answer at a seeded
  letter. For a cloze item hare picks a sentence of the passage (``cloze_sentences``), the teacher
  its key term among the sentence's terms (the schema's ``enum``), and hare makes the blank.
  An answer that fails is asked again, with the reason, up to ``synth.d3.max_reasks`` times, then
  quarantined with its raw text (``quarantine.jsonl``). Valid answers are rendered as text
  (``Question: ... Answer: ...``).
- **labelled datasets** of the user's (``synth.d3.datasets``: question/answer,
  instruction/response, ``messages``), each record written out with one of several templates per
  format (``templates/d3/convert/<format>/*.txt``), as the paper reformats open SFT data.

Samples longer than ``synth.d3.max_sample_tokens`` are dropped. Every sample records its task,
template and seed (provenance). The curate step cleans and decontaminates them into part ``d3``.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from hare.core.documents import Document, ShardWriter, read_shards
from hare.core.io import RecordError, expand_paths, read_rows, write_jsonl
from hare.core.step import Stats
from hare.synth.client import Usage
from hare.synth.common import Teacher, sub_seed
from hare.model.constrain import schema_text
from hare.filters.words import ENGLISH_WORDS
from hare.synth.fidelity import content_words
from hare.synth.prompts import Templates

log = logging.getLogger("hare.synth.d3")

LETTERS = "ABCD"
_STR = {"type": "string", "minLength": 1}
SCHEMAS: dict[str, dict] = {
    "qa": {"type": "object", "required": ["question", "answer"], "properties": {"question": _STR, "answer": _STR}},
    "mc": {"type": "object", "required": ["question", "answer", "wrong_answers"],
           "properties": {"question": _STR, "answer": _STR,
                          "wrong_answers": {"type": "array", "items": _STR, "minItems": 3, "maxItems": 3}}},
    "cloze": {"type": "object", "required": ["sentence", "answer"], "properties": {"sentence": _STR, "answer": _STR}},
}


def _text(lo: int, hi: int, **kw) -> dict:
    return {"type": "string", "minLength": lo, "maxLength": hi, **kw}


# What the teacher decodes under (synth.d3.constrain): the validation schemas above with bounded
# strings and no extra keys. The bounds keep a whole answer within about 120 tokens of SmolLM2's
# tokenizer (a 135M teacher can repeat a phrase until its cap; the bound closes the string
# instead). Field order is the order they are written in. The tasks ask for what a small model can
# write: a multiple-choice item as the right answer and three wrong ones (hare shuffles them into
# lettered options). Cloze items, and multiple-choice items whose wrong answers hare picks, are
# decoded under a schema made for their passage (``plan_task``).
GENERATION_SCHEMAS: dict[str, dict] = {
    "qa": {"type": "object", "properties": {"question": _text(8, 160), "answer": _text(1, 200)},
           "required": ["question", "answer"], "additionalProperties": False},
    "mc": {"type": "object", "properties": {"question": _text(8, 160), "answer": _text(1, 60),
                                            "wrong_answers": {"type": "array", "items": _text(1, 60),
                                                              "minItems": 3, "maxItems": 3}},
           "required": ["question", "answer", "wrong_answers"], "additionalProperties": False},
}
# Terms of a passage: words and dotted names (``os.path``) of three characters or more that are not
# common English words (``content_words``' list).
_TERM = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
# A heading line of a page (``DESCRIPTION``, ``CLASSES``): it ends the paragraph before it.
_HEADING = re.compile(r"\n[ \t]*[A-Z][A-Z ]{2,}[ \t]*(?=\n)")
_ABBREVIATION = re.compile(r"(?:^|\W)(?:e\.g|i\.e|etc|vs|cf|al|approx|no|Mr|Dr)\.$", re.IGNORECASE)
# Words that are no key term and no wrong answer, besides common English words and "-ly" adverbs:
# generic adverbs and pronouns, and the verbs that open most sentences of code documentation.
_GENERIC = frozenset("""actually again already always another anything both each either else etc even ever every
instead least less many might more most much must neither never non none nor often once only other others
rather same several should since still such than then thing things though thus too very whether while yet
does did doing done get gets got give gives given make makes made take takes taken use uses used using return
returns returned""".split())
MAX_TERMS = 64
# Characters of code rather than prose: a sentence with one is no cloze sentence.
_CODE = re.compile(r"[=\[\]{}#<>|`]")


def terms(text: str, limit: int = MAX_TERMS) -> list[str]:
    """The terms of ``text`` in order of first appearance, as written, at most ``limit``: words and
    dotted names of three characters or more, not common English words, not numbers, not on a
    heading line (``DESCRIPTION``)."""
    out: dict[str, str] = {}
    for t in _TERM.findall(_HEADING.sub("\n", "\n" + text)):
        key = _norm(t)
        if (len(t) >= 3 and key not in out and key not in ENGLISH_WORDS and key not in _GENERIC
                and not key.endswith("ly") and sum(c.isalpha() for c in t) >= 3):
            out[key] = t
    return list(out.values())[:limit]


def _paragraphs(text: str) -> list[str]:
    """The paragraphs of ``text``: runs of lines of the same indentation (a signature line above its
    indented description is a paragraph of its own), without blank lines and headings."""
    out: list[list[str]] = []
    indent = None
    for line in _HEADING.sub("\n\n", "\n" + text).splitlines():
        here = len(line) - len(line.lstrip())
        if not line.strip():
            indent = None
            continue
        if here != indent:
            out.append([])
        out[-1].append(line.strip())
        indent = here
    return [" ".join(p) for p in out]


def cloze_sentences(passage: str) -> list[str]:
    """The sentences of ``passage`` a cloze item can be made from, whitespace collapsed, in order:
    whole sentences (ending in ``.``, ``!`` or ``?``, so not the one a cut passage ends in) of 6 to
    40 words with at least two terms (``terms``), 70 % of them plain words and no character of code
    (``=``, brackets, ``#``...)."""
    out = []
    for para in _paragraphs(passage):
        sentences: list[str] = []
        for piece in re.split(r"(?<=[.!?])\s+", " ".join(para.split())):
            if sentences and _ABBREVIATION.search(sentences[-1]):  # "e.g." ends no sentence
                sentences[-1] += " " + piece
            else:
                sentences.append(piece)
        for s in sentences:
            words = s.split()
            alpha = sum(bool(re.fullmatch(r"[A-Za-z][a-z]*[,;:]?", w)) for w in words)
            if (s[-1:] in ".!?" and 6 <= len(words) <= 40 and alpha >= 0.7 * len(words) and len(terms(s)) >= 2
                    and not _CODE.search(s)):
                out.append(s)
    return out


def cloze_schema(sentence: str) -> dict:
    """The generation schema of a cloze item on ``sentence``: the sentence itself, and a key term
    that is one of its terms, so the term is always in its sentence."""
    return {"type": "object", "properties": {"sentence": {"const": sentence}, "answer": {"enum": terms(sentence)}},
            "required": ["sentence", "answer"], "additionalProperties": False}


def mc_term_schema(passage: str) -> dict:
    """The generation schema of a multiple-choice item whose wrong answers hare picks from the
    passage (``synth.d3.mc_distractors: passage``): a question, and its answer, a term of the passage."""
    return {"type": "object", "properties": {"question": _text(8, 160), "answer": {"enum": terms(passage)}},
            "required": ["question", "answer"], "additionalProperties": False}


def plan_task(task: str, passage: str, templates: Templates, rng: random.Random, mc_distractors: str = "teacher"
              ) -> tuple[str, str, dict | None] | None:
    """(template, prompt, generation schema or None) of one task on ``passage``, the template and a
    cloze item's sentence drawn with ``rng``; None for a cloze item on a passage without a whole
    sentence (``cloze_sentences``). The schema is the task's in ``GENERATION_SCHEMAS``, or made for
    the passage: a cloze item's on its sentence (``cloze_schema``), a multiple-choice item's answer
    among the passage's terms when hare picks the wrong ones (``mc_term_schema``; a passage with
    fewer than four terms has its wrong answers written by the teacher)."""
    folder, sentence, schema = f"d3/{task}", "", GENERATION_SCHEMAS.get(task)
    if task == "cloze":
        sentences = cloze_sentences(passage)
        if not sentences:
            return None
        sentence = rng.choice(sentences)
        schema = cloze_schema(sentence)
    elif task == "mc" and mc_distractors == "passage" and len(terms(passage)) >= 4:
        folder, schema = "d3/mc_term", mc_term_schema(passage)
    rel = rng.choice(templates.variants(folder))
    return rel, templates.render(rel, passage=passage, sentence=sentence), schema


def _shape(term: str) -> str:
    """The kind of a term: a dotted name, a snake_case or camelCase name, a capitalised word, a plain word."""
    if "." in term:
        return "dotted"
    if "_" in term or any(c.isdigit() for c in term) or re.search(r"[a-z][A-Z]", term):
        return "code"
    return "capitalised" if term[0].isupper() else "word"


def distractors(question: str, answer: str, passage: str, rng: random.Random) -> list[str]:
    """Three wrong answers for ``answer`` from ``passage``'s other terms (fewer when it has fewer):
    terms of the answer's kind (``_shape``) first, then the others, each group in a seeded order;
    never the answer, a term that contains it or is contained in it, nor a word of the question."""
    asked = set(_norm(question).split())
    key = f" {_norm(answer)} "
    same, other = [], []
    for t in terms(passage):
        n = _norm(t)
        if not n or set(n.split()) & asked or f" {n} " in key or key in f" {n} ":
            continue
        (same if _shape(t) == _shape(answer) else other).append(t)
    rng.shuffle(same)
    rng.shuffle(other)
    return (same + other)[:3]


# Option texts that stand for no option: the letters themselves, or the placeholders of the prompt.
PLACEHOLDERS = {"a", "b", "c", "d", "first", "second", "third", "fourth", "option", "option a", "option b",
                "option c", "option d", "..."}
REASK = ("Your answer could not be used: {reason}. Reply again with only the JSON object, in the form the "
         "instructions give, and nothing else.")


def extract_json(text: str) -> Any:
    """The first JSON object in ``text`` (models wrap it in prose or a ```json fence)."""
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
            return obj
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    raise ValueError("no JSON object found")


def parse(task: str, text: str) -> tuple[dict | None, str | None]:
    """(the parsed answer, None) or (None, why its JSON or schema is invalid): the syntax check."""
    import jsonschema  # imported when an answer is checked, not to list the steps

    try:
        obj = extract_json(text)
    except ValueError as e:
        return None, str(e)
    try:
        jsonschema.validate(obj, SCHEMAS[task])
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "the object"
        return None, f"{where}: {e.message[:200]}"
    return obj, None


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def check_meaning(task: str, obj: dict, passage: str = "") -> tuple[dict | None, str | None]:
    """(the answer, None) or (None, why it makes no sense): a schema guarantees syntax, not sense.
    Multiple choice: four different options, none a placeholder, an answer the question does not
    contain, a question that shares a word with its passage (not an example copied from the
    prompt; its answer may be a word of the passage whatever the question); cloze: a sentence of
    the passage (most of its words are there) that contains its answer, a key term shorter than half
    of it; question answering: an answer that is not the question again, and a question or answer
    that shares a word with the passage."""
    if task == "mc":
        options = [obj["answer"].strip(), *(o.strip() for o in obj["wrong_answers"])]
        if len(options) != 4:
            return None, "not three wrong answers"
        if len({_norm(o) for o in options}) < 4:
            return None, "the four options are not all different"
        if any(_norm(o) in PLACEHOLDERS or not _norm(o) for o in options):
            return None, "an option is a placeholder (a letter, or first/second/...), not an answer"
        if f" {_norm(options[0])} " in f" {_norm(obj['question'])} ":
            return None, "the question contains its answer"
        if passage and not content_words(obj["question"]) & content_words(passage):
            return None, "the question shares no word with the passage"
        return obj, None
    if task == "cloze":
        sentence, answer = _norm(obj["sentence"]), _norm(obj["answer"])
        if not answer:
            return None, "the answer has no words"
        if f" {answer} " not in f" {sentence} ":
            return None, "the answer is not a term of the sentence"
        if len(answer.split()) * 2 > len(sentence.split()):
            return None, "the answer is half the sentence or more"
        words = sentence.split()
        if passage and sum(w in set(_norm(passage).split()) for w in words) < 0.6 * len(words):
            return None, "the sentence is not from the passage"
        return obj, None
    if _norm(obj["answer"]) == _norm(obj["question"]):
        return None, "the answer repeats the question"
    if passage and not content_words(obj["question"] + " " + obj["answer"]) & content_words(passage):
        return None, "the question and answer share no word with the passage"
    return obj, None


def judge(task: str, text: str, passage: str, distractor_rng: random.Random | None = None
          ) -> tuple[dict | None, str | None, bool]:
    """(the answer, None, True), or (None, why it is refused, whether its syntax was valid): ``parse``
    then ``check_meaning``. With ``distractor_rng``, a multiple-choice answer is a question and its
    answer (``mc_term_schema``) to which hare adds three wrong answers (``distractors``)."""
    obj, reason = parse("qa" if task == "mc" and distractor_rng is not None else task, text)
    if reason is not None:
        return None, reason, False
    if task == "mc" and distractor_rng is not None:
        obj = {**obj, "wrong_answers": distractors(obj["question"], obj["answer"], passage, distractor_rng)}
    obj, reason = check_meaning(task, obj, passage)
    return obj, reason, True


def blank(sentence: str, answer: str) -> str:
    """``sentence`` with the first whole-word occurrence of ``answer`` (any case) replaced by ___."""
    pattern = r"(?<!\w)" + r"\W+".join(map(re.escape, re.findall(r"\w+", answer))) + r"(?!\w)"
    return re.sub(pattern, "___", sentence, count=1, flags=re.IGNORECASE)


def validate(task: str, text: str, passage: str = "") -> tuple[dict | None, str | None]:
    """(the parsed answer, None) or (None, the reason it is invalid): ``parse`` then ``check_meaning``."""
    obj, reason, _ = judge(task, text, passage)
    return obj, reason


def render_task(task: str, obj: dict | None, text: str, passage: str, templates: Templates, rng: random.Random
                ) -> tuple[str, str]:
    """(sample text, template) of a valid answer."""
    if task == "qa":
        rel = rng.choice(templates.variants("d3/convert/qa"))
        return templates.render(rel, question=obj["question"].strip(), answer=obj["answer"].strip()), rel
    if task == "mc":  # the right answer among the wrong ones at a seeded place
        options = [obj["answer"].strip(), *(o.strip() for o in obj["wrong_answers"])]
        order = list(range(4))
        rng.shuffle(order)
        opts = "\n".join(f"{LETTERS[i]}. {options[k]}" for i, k in enumerate(order))
        return f"{obj['question'].strip()}\n{opts}\nAnswer: {LETTERS[order.index(0)]}", "mc"
    if task == "cloze":
        return (f"Fill in the blank: {blank(obj['sentence'].strip(), obj['answer'])}\n"
                f"Answer: {obj['answer'].strip()}"), "cloze"
    return f"{passage}\n\nSummary: {text.strip()}", "summary"


def detect_format(rec: dict) -> str | None:
    if isinstance(rec.get("messages"), list):
        return "messages"
    if "question" in rec and "answer" in rec:
        return "qa"
    if "instruction" in rec and ("response" in rec or "output" in rec):
        return "instruction"
    return None


def convert(rec: dict, fmt: str, templates: Templates, rng: random.Random) -> tuple[str, str]:
    """(sample text, template) of one labelled record; ``ValueError`` names what is missing."""
    rel = rng.choice(templates.variants(f"d3/convert/{fmt}"))
    if fmt == "qa":
        q, a = str(rec.get("question") or "").strip(), str(rec.get("answer") or "").strip()
        if not q or not a:
            raise ValueError("empty question or answer")
        return templates.render(rel, question=q, answer=a), rel
    if fmt == "instruction":
        ins = str(rec.get("instruction") or "").strip()
        resp = str(rec.get("response") or rec.get("output") or "").strip()
        ctx = str(rec.get("context") or rec.get("input") or "").strip()
        if not ins or not resp:
            raise ValueError("empty instruction or response")
        text = templates.render(rel, instruction=ins, response=resp, context_block=f"Context: {ctx}" if ctx else "",
                                context_note=" with its context" if ctx else "")
        return re.sub(r"\n{3,}", "\n\n", re.sub(r"\n\s*\n(?=Response|Answer)", "\n", text)), rel
    turns = []
    for m in rec["messages"]:
        if not isinstance(m, dict) or not str(m.get("content") or "").strip():
            raise ValueError("a message without content")
        role = {"user": "User", "assistant": "Assistant", "system": "System"}.get(m.get("role"), str(m.get("role")))
        turns.append(f"{role}: {str(m['content']).strip()}")
    if len(turns) < 2:
        raise ValueError("fewer than two messages")
    return templates.render(rel, dialogue="\n".join(turns)), rel


class D3Stats(Stats):
    enabled: bool
    seeds: int = 0
    requests: int = 0
    samples: int = 0
    tasks: dict[str, dict[str, int]] = {}
    reasks: int = 0
    quarantined: int = 0
    too_long: int = 0
    datasets: dict[str, dict[str, int]] = {}
    usage: Usage | None = None
    task_usage: dict[str, Usage] = {}

    def counts(self) -> dict[str, int | float]:
        return {"samples": self.samples, "requests": self.requests, "quarantined": self.quarantined}


def generate_d3(teacher: Teacher, cfg, templates: Templates, d2_dir: Path, decontam_dir: Path, seed: int, out: Path,
                shard_docs: int) -> D3Stats:
    """Generate D3 (the module docstring): teacher-written tasks on seed passages from D2 (``d2_dir``)
    and D1 (``decontam_dir``), then the labelled datasets converted; ``cfg``: ``D3Config``."""
    kept = _Samples(teacher.token_counter(), cfg.max_sample_tokens)
    seeds = d3_seeds(cfg, d2_dir, decontam_dir, seed)
    quarantine: list[dict] = []
    with teacher.session("d3") as session:
        tasks, reasks = _teacher_tasks(session, teacher, cfg, templates, seeds, seed, kept, quarantine)
    datasets = _convert_datasets(cfg, templates, seed, kept, quarantine)
    with ShardWriter(out / "generated", shard_docs) as w:
        for d in kept.samples:
            w.write(d)
    write_jsonl(out / "quarantine.jsonl", quarantine)
    log.info("d3: %d seeds, %d samples (%d re-asks, %d quarantined, %d too long)", len(seeds), len(kept.samples),
             reasks, sum(t["quarantined"] for t in tasks.values()), kept.too_long)
    return D3Stats(enabled=True, seeds=len(seeds), requests=session.total.requests, samples=len(kept.samples),
                   tasks={k: dict(v) for k, v in sorted(tasks.items())}, reasks=reasks,
                   quarantined=len(quarantine), too_long=kept.too_long,
                   datasets={k: dict(v) for k, v in datasets.items()}, usage=session.total,
                   task_usage=session.by_family())


class _Samples:
    """The samples kept, in order; one longer than ``max_tokens`` is counted as too long instead."""

    def __init__(self, count_tokens, max_tokens: int):
        self.count_tokens, self.max_tokens = count_tokens, max_tokens
        self.samples: list[Document] = []
        self.too_long = 0

    def keep(self, text: str, doc_id: str, meta: dict, tally: Counter) -> None:
        if self.count_tokens(text) > self.max_tokens:
            self.too_long += 1
            tally["too_long"] += 1
            return
        tally["samples"] += 1
        self.samples.append(Document(text, doc_id, "d3", meta))


def d3_seeds(cfg, d2_dir: Path, decontam_dir: Path, seed: int) -> list[tuple[str, str, str, dict]]:
    """(origin, id, passage, provenance) of the seed passages: D2's topic generations, then sampled D1
    documents."""
    out = []
    # D2's topic generations; its rephrases restate D1 documents, which D1's seeds already cover
    d2 = sorted((d for d in read_shards(d2_dir / "generated") if d.metadata.get("family", "topic") == "topic"),
                key=lambda d: d.id)
    random.Random(sub_seed(seed, "d3-d2")).shuffle(d2)
    for d in d2[:cfg.seeds_from_d2]:
        out.append(("d2", d.id, d.text[:cfg.passage_chars], {"topic": d.metadata.get("topic")}))
    if cfg.seeds_from_d1:
        rng = random.Random(sub_seed(seed, "d3-d1"))
        sample: list[Document] = []
        for n, d in enumerate(read_shards(decontam_dir / "train")):  # reservoir sample
            if len(sample) < cfg.seeds_from_d1:
                sample.append(d)
            elif (j := rng.randrange(n + 1)) < cfg.seeds_from_d1:
                sample[j] = d
        for d in sorted(sample, key=lambda d: (d.source, d.id)):
            out.append(("d1", f"{d.source}/{d.id}", d.text[:cfg.passage_chars], {}))
    return out


def _teacher_tasks(session, teacher: Teacher, cfg, templates: Templates, seeds: list, seed: int, kept: _Samples,
                   quarantine: list[dict]) -> tuple[dict[str, Counter], int]:
    """Every seed passage x every task, one phrasing drawn per pair, asked of the teacher; an answer
    that fails its schema is asked again in the same conversation, up to ``max_reasks`` times, then
    quarantined with every raw answer. Returns the tallies per task and the re-asks."""
    tasks: dict[str, Counter] = defaultdict(Counter)
    reasks = 0
    jobs: list[dict] = []
    for origin, sid, passage, prov in seeds:
        for task in cfg.tasks:
            rng = random.Random(sub_seed(seed, "d3", sid, task))
            planned = plan_task(task, passage, templates, rng, cfg.mc_distractors)
            if planned is None:
                tasks[task]["no_sentence"] += 1  # a cloze item needs a whole sentence
                continue
            rel, prompt, schema = planned
            jobs.append({"task": task, "template": rel.split("/", 1)[1][:-4], "prompt": prompt,
                         "passage": passage, "seed_origin": origin, "seed_id": sid, **prov, "history": (),
                         "raws": [], "req_seed": sub_seed(seed, "d3", sid, task),
                         "schema": schema_text(schema) if cfg.constrain and schema is not None else None,
                         "hare_distractors": rel.startswith("d3/mc_term/")})
    open_jobs = jobs
    for attempt in range(cfg.max_reasks + 1):
        if not open_jobs:
            break
        reqs = [teacher.request(j["prompt"], cfg.max_tokens, cfg.temperature, cfg.top_p, j["req_seed"],
                                j["history"], schema=j["schema"]) for j in open_jobs]
        results = session.generate(reqs, [j["task"] for j in open_jobs],
                                   desc="d3: generate" if attempt == 0 else f"d3: re-ask {attempt}")
        again = []
        for j, res in zip(open_jobs, results):
            tally = tasks[j["task"]]
            tally["requests"] += 1
            if not res.ok:
                tally["failed"] += 1
                continue
            obj, reason = None, None
            if j["task"] == "summary":
                reason = None if res.text.strip() else "empty answer"
            else:
                rng = random.Random(sub_seed(seed, "d3-distractors", j["seed_id"], attempt)) \
                    if j["hare_distractors"] else None
                obj, reason, valid = judge(j["task"], res.text, j["passage"], rng)
                if attempt == 0:
                    tally["schema_valid_first" if valid else "schema_invalid_first"] += 1
                if valid and reason is not None:
                    tally["meaning_failed"] += 1
            if reason is None:
                rng = random.Random(sub_seed(seed, "d3-render", j["seed_id"], j["task"]))
                text, rendered = render_task(j["task"], obj, res.text, j["passage"], templates, rng)
                meta = {k: j[k] for k in ("task", "template", "seed_origin", "seed_id") if k in j}
                if j.get("topic") is not None:
                    meta["topic"] = j["topic"]
                meta.update(origin="teacher", rendered_with=rendered, reasks=attempt, key=res.key)
                if j["hare_distractors"]:
                    meta["distractors"] = "passage"  # the wrong answers are hare's, not the teacher's
                kept.keep(text, f"d3/{j['task']}/{j['seed_id']}", meta, tally)
                continue
            j["raws"].append({"text": res.text, "reason": reason})
            if attempt < cfg.max_reasks:
                reasks += 1
                tally["reasked"] += 1
                # Re-ask in the same conversation: the bad answer and why it was refused.
                j["history"] = j["history"] + (("user", j["prompt"]), ("assistant", res.text))
                j["prompt"] = REASK.format(reason=reason)
                again.append(j)
            else:
                tally["quarantined"] += 1
                quarantine.append({"task": j["task"], "template": j["template"], "seed_id": j["seed_id"],
                                   "attempts": [r for r in j["raws"]]})
        open_jobs = again
    return tasks, reasks


def _convert_datasets(cfg, templates: Templates, seed: int, kept: _Samples,
                      quarantine: list[dict]) -> dict[str, Counter]:
    """The labelled datasets converted into samples, no teacher; returns the tallies per dataset."""
    datasets: dict[str, Counter] = {}
    for ds in cfg.datasets:
        tally = datasets.setdefault(ds.name, Counter())
        n = 0
        for path in expand_paths(ds.path):
            try:
                rows = list(read_rows(path))
            except (RecordError, ValueError, OSError) as e:
                raise ValueError(f"synth.d3.datasets {ds.name}: {e}") from None
            for i, rec in enumerate(rows):
                if ds.limit and n >= ds.limit:
                    break
                n += 1
                fmt = ds.format if ds.format != "auto" else detect_format(rec) if isinstance(rec, dict) else None
                if fmt is None:
                    tally["unknown_format"] += 1
                    quarantine.append({"dataset": ds.name, "file": str(path), "line": i + 1,
                                       "reason": "no question/answer, instruction/response or messages fields"})
                    continue
                rng = random.Random(sub_seed(seed, "d3-convert", ds.name, path.name, i))
                try:
                    text, rel = convert(rec, fmt, templates, rng)
                except (ValueError, KeyError, TypeError) as e:
                    tally["invalid"] += 1
                    quarantine.append({"dataset": ds.name, "file": str(path), "line": i + 1, "reason": str(e)})
                    continue
                kept.keep(text, f"d3/{ds.name}/{path.name}:{i + 1}",
                          {"origin": f"dataset:{ds.name}", "task": fmt, "template": rel.split("/")[-1][:-4],
                           "seed_id": f"{path.name}:{i + 1}", **({"category": rec["category"]}
                                                                 if isinstance(rec.get("category"), str) else {})},
                          tally)
    return datasets


def examples(folder: Path) -> list[Document]:
    """One sample per task of a d3 folder (the report shows them)."""
    by_task: dict[str, Document] = {}
    for d in read_shards(folder / "generated"):
        by_task.setdefault(d.metadata.get("task", ""), d)
    return list(by_task.values())
