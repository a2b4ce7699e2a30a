"""The teacher as a grader: 0-5 grades of documents on a written rubric (the corpus step's annotator mode).

Each document, cut to ``corpus.quality.annotate_chars`` characters, goes into the rubric's
``$document`` and the teacher answers under a JSON Schema, ``{"score": integer 0..5}``: decoded under
it by the grammar engine with a local teacher, sent as ``response_format`` to endpoints, so even the
packaged 135M teacher always answers a grade. Decoding is greedy (temperature 0). The requests go
through ``hare.synth.client.generate`` and its append-only cache: a run killed midway (``kill -9``)
and started again sends only the documents not yet graded, and a second run sends nothing.

The corpus step calls ``grade`` through the hook the step registry gives it (the corpus stage does
not import this one).
"""

from __future__ import annotations

import json
import logging
import re
import string
from pathlib import Path

from hare.model.constrain import schema_text
from hare.synth.cache import RequestCache
from hare.synth.client import Backend, Request, generate
from hare.synth.teacher import make_backend, teacher_model

log = logging.getLogger("hare.synth.annotate")

GRADE_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 5}},
                "required": ["score"], "additionalProperties": False}
# A server that ignores response_format may wrap the object in prose.
_GRADE = re.compile(r'"score"\s*:\s*([0-5])\b')


def parse_grade(text: str) -> int | None:
    """The grade in an answer, or None when it holds none in 0..5."""
    try:
        obj = json.loads(text)
        if isinstance(obj, dict) and isinstance(obj.get("score"), int) and 0 <= obj["score"] <= 5:
            return int(obj["score"])
    except json.JSONDecodeError:
        pass
    m = _GRADE.search(text)
    return int(m.group(1)) if m else None


def grade_requests(texts: list[str], rubric: str, teacher, max_chars: int, max_tokens: int,
                   seed: int) -> list[Request]:
    """The grading request of each text (``grade``'s arguments): the rubric with the text's first
    ``max_chars`` characters, greedy, under the grade schema."""
    template = string.Template(rubric)
    model, schema = teacher_model(teacher), schema_text(GRADE_SCHEMA)
    requests = []
    for t in texts:
        prompt = template.substitute(document=t[:max_chars].strip())
        if teacher.api == "completions":
            requests.append(Request(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.0, seed=seed,
                                    schema=schema))
        else:
            requests.append(Request.chat(model, [("user", prompt)], max_tokens=max_tokens, temperature=0.0,
                                         seed=seed, schema=schema))
    return requests


def grade(texts: list[str], rubric: str, teacher, cache_path: str | Path, max_chars: int, max_tokens: int,
          seed: int) -> tuple[list[int | None], dict]:
    """The teacher's grade of every text (None where its answer holds none) and the usage of the
    requests (``hare.synth.client.Usage``: requests, cached, sent, failed...). ``rubric`` is the
    prompt with ``$document``; ``teacher`` a teacher section (``hare.core.teacher.TeacherConfig``)."""
    requests = grade_requests(texts, rubric, teacher, max_chars, max_tokens, seed)
    made: list[Backend] = []

    def backend() -> Backend:  # made only when a request is not in the cache
        made.append(make_backend(teacher, seed))
        return made[0]

    try:
        with RequestCache(cache_path) as cache:
            results, usage = generate(requests, backend, cache, desc="quality: grade")
    finally:
        for b in made:
            b.close()
    grades = [parse_grade(r.text) if r.ok else None for r in results]
    missing = sum(g is None for g in grades)
    if missing:
        log.warning("quality: %d of %d answers of the teacher hold no grade 0-5 (left out)", missing, len(grades))
    return grades, usage.model_dump(mode="json")
