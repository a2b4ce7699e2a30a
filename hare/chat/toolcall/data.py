"""Training and evaluation queries for a function library, from templates and slot values.

A query file (``<library>.queries.json`` beside the library) holds, per function, *families* of
paraphrases: templates with ``{slot}`` placeholders that say the same request in one way
("Wake me up at {time}", "Wake me at {time}"), and the arguments the request stands for
(``{"time": "{time}"}``). A slot value is a plain string, or ``{"say": "7 am", "value": "07:00"}``
when what the user says differs from the argument. ``refuse`` holds families of queries that no
function serves, or that lack what a function needs ("Set an alarm"); their answer is the refusal
token. A refusal family marked ``"paraphrase": false`` is not sent for teacher paraphrases
(``hare.commands.tools_paraphrase``). ``vague`` maps a slot to words that leave it unsaid
(``"contact": ["someone"]``): ``build_examples(ablate=True)`` turns training calls into refusals
by saying a required argument's slot that way ("Phone {contact}" -> "Phone someone").

``build_examples`` fills every template with seeded slot values and splits by *family*: the
held-out split gets whole families (one per function and some refusal families), so it measures
whether the model generalises to wordings it never saw, not whether it memorised them.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hare.chat.toolcall.library import Library, LibraryError

SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Example:
    query: str
    function: str | None  # None: the query is to be refused
    arguments: dict[str, Any]
    family: str  # "<function>/<index>" or "refuse/<index>"
    split: str  # "train" or "test"

    def record(self) -> dict:
        return asdict(self)


def queries_path(library: Library) -> Path:
    return Path(library.path).with_suffix(".queries.json")


def _say_value(v: Any) -> tuple[str, Any]:
    return (v["say"], v["value"]) if isinstance(v, dict) else (str(v), v)


def _fill(template: str, args: dict[str, str], slots: dict[str, list], rng: random.Random,
          where: str) -> tuple[str, dict]:
    names = SLOT.findall(template) + [n for a in args.values() for n in SLOT.findall(str(a))]
    chosen: dict[str, tuple[str, Any]] = {}
    for n in dict.fromkeys(names):
        if n not in slots:
            raise LibraryError(f"{where}: no slot values for {{{n}}}")
        chosen[n] = _say_value(rng.choice(slots[n]))
    query = SLOT.sub(lambda m: chosen[m.group(1)][0], template)
    out = {}
    for param, ref in args.items():
        m = SLOT.fullmatch(str(ref))
        out[param] = chosen[m.group(1)][1] if m else SLOT.sub(lambda m: str(chosen[m.group(1)][1]), str(ref))
    return query, out


def load_queries(library: Library, queries: str | Path | None = None) -> dict:
    """The query file (``queries``, or the one beside the library) as a dict; a family's
    ``"paraphrase"`` flag, where set, must be true or false, and each slot's ``vague`` words a list of
    strings."""
    path = Path(queries) if queries is not None else queries_path(library)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise LibraryError(f"{path}: no query file for the library {library.path}") from e
    except json.JSONDecodeError as e:
        raise LibraryError(f"{path}: not a JSON file: {e}") from e
    groups = [(name, f.get("families", [])) for name, f in spec.get("functions", {}).items()]
    for name, families in groups + [("refuse", spec.get("refuse", {}).get("families", []))]:
        for i, fam in enumerate(families):
            if not isinstance(fam.get("paraphrase", True), bool):
                raise LibraryError(f"{path}: {name} family {i}: \"paraphrase\" must be true or false, "
                                   f"not {fam['paraphrase']!r}")
    for slot, words in spec.get("vague", {}).items():
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
            raise LibraryError(f"{path}: vague words of {{{slot}}} must be a list of strings, not {words!r}")
    return spec


def build_examples(library: Library, queries: str | Path | None = None, per_template: int = 6, seed: int = 0,
                   heldout_families: int = 1, heldout_refuse: int = 4,
                   paraphrases: dict[str, list[str]] | None = None,
                   keep_refusal_share: bool = False, ablate: bool = False) -> list[Example]:
    """Every query of the library's query file; ``heldout_families`` families per function and
    ``heldout_refuse`` refusal families (chosen by the seed) form the test split.

    ``paraphrases`` (family label -> more templates, ``hare.commands.tools_paraphrase``) extend
    training families: their queries come after all the others, filled from a random stream of
    their own, so the query file's queries and the split are the same with or without them; their
    family is ``<label>+p``. A paraphrase of a held-out family is an error.

    ``keep_refusal_share``: when paraphrases add more calls than refusals, training refusals are
    repeated (in a seeded order, family ``<label>+r``) until they are the same share of the training
    queries as without paraphrases, the way a data mixture keeps its weights as one source grows
    (a model trained on 13 % refusals instead of 17.5 % called set_volume for "Transfer 50 dollars
    to Bob"). Off by default: with the packaged teacher's paraphrases it did not help (91.3 % function
    accuracy with and without it, docs/tool-calling.md).

    ``ablate``: every template of a training family whose slot fills a required argument of the
    function and has ``vague`` words in the query file gives one more training query, that slot said
    vaguely, answered with the refusal token (family ``<label>/<i>-a``): a minimal pair that teaches
    what the call needs ("Phone Bob" calls, "Phone someone" does not), the way When2Call (Ross et al.,
    2025) builds its missing-argument cases by removing a required value. Only training families are
    ablated, so no held-out wording reaches training; the other queries are the same with or without."""
    path = Path(queries) if queries is not None else queries_path(library)
    spec = load_queries(library, queries)
    slots = spec.get("slots", {})
    rng = random.Random(f"hare-tools-{seed}")
    out: list[Example] = []
    unknown = sorted(set(spec.get("functions", {})) - set(library.by_name))
    if unknown:
        raise LibraryError(f"{path}: queries for functions the library does not have: {unknown}")
    groups: list[tuple[str | None, str, list[dict], dict]] = []
    for name, f in spec.get("functions", {}).items():
        groups.append((name, name, f["families"], f.get("arguments", {})))
    groups.append((None, "refuse", spec.get("refuse", {}).get("families", []), {}))
    extra: list[tuple[str | None, str, int, dict, list[str]]] = []
    for function, label, families, default_args in groups:
        if not families:
            continue
        order = list(range(len(families)))
        rng.shuffle(order)
        held = set(order[:heldout_refuse if function is None else heldout_families])
        if len(held) >= len(families):
            raise LibraryError(f"{path}: {label} has {len(families)} families; at least one must stay for training")
        for i, fam in enumerate(families):
            args = fam.get("arguments", default_args)
            for t, template in enumerate(fam["templates"]):
                seen = set()
                for _ in range(per_template if SLOT.search(template) else 1):
                    query, values = _fill(template, args, slots, rng, f"{path}: {label} family {i} template {t}")
                    if query in seen:
                        continue
                    seen.add(query)
                    out.append(Example(query, function, values if function else {}, f"{label}/{i}",
                                       "test" if i in held else "train"))
        for i in held:
            if f"{label}/{i}" in (paraphrases or {}):
                raise LibraryError(f"{path}: paraphrases of the held-out family {label}/{i}: they would leak "
                                   "its wordings into training")
        for i, fam in enumerate(families):
            more = (paraphrases or {}).get(f"{label}/{i}")
            if more:
                extra.append((function, label, i, fam.get("arguments", default_args), more))
    known = {f"{label}/{i}" for _, label, families, _ in groups for i in range(len(families))}
    unknown = sorted(set(paraphrases or {}) - known)
    if unknown:
        raise LibraryError(f"{path}: paraphrases of families the query file does not have: {unknown}")
    prng = random.Random(f"hare-tools-{seed}-paraphrases")
    base = [e for e in out if e.split == "train"]
    for function, label, i, args, templates in extra:
        seen = set()
        for t, template in enumerate(templates):
            for _ in range(per_template if SLOT.search(template) else 1):
                query, values = _fill(template, args, slots, prng, f"paraphrases of {label}/{i}, template {t}")
                if query not in seen:
                    seen.add(query)
                    out.append(Example(query, function, values if function else {}, f"{label}/{i}+p", "train"))
    if ablate:
        out += _ablations(library, spec, groups, out, seed, path)
    if keep_refusal_share and extra:
        refusals = [e for e in base if e.function is None]
        train = sum(e.split == "train" for e in out)
        have = sum(e.function is None and e.split == "train" for e in out)
        # the fewest repeats r with (have + r) / (train + r) >= share of the query file's refusals
        share = len(refusals) / len(base) if base else 0.0
        need = max(0, -(-(share * train - have) // (1 - share))) if refusals and share < 1 else 0
        order = list(refusals)
        random.Random(f"hare-tools-{seed}-refusals").shuffle(order)
        for k in range(int(need)):
            e = order[k % len(order)]
            out.append(Example(e.query, None, {}, f"{e.family}+r", "train"))
    return out


def _ablations(library: Library, spec: dict, groups: list, examples: list[Example], seed: int,
               path: Path) -> list[Example]:
    """``build_examples(ablate=True)``'s refusals: one per template of a training family that names a
    slot with ``vague`` words filling a required argument."""
    vague, slots = spec.get("vague", {}), spec.get("slots", {})
    train = {e.family for e in examples if e.split == "train"}
    rng = random.Random(f"hare-tools-{seed}-ablate")
    out: list[Example] = []
    for function, label, families, default_args in groups:
        if function is None:
            continue
        required = set(library.by_name[function].required)
        for i, fam in enumerate(families):
            if f"{label}/{i}" not in train:
                continue
            refs = [SLOT.fullmatch(str(ref)) for p, ref in fam.get("arguments", default_args).items() if p in required]
            needed = {m.group(1) for m in refs if m and m.group(1) in vague}
            for t, template in enumerate(fam["templates"]):
                names = [n for n in dict.fromkeys(SLOT.findall(template)) if n in needed]
                if not names:
                    continue
                gone = rng.choice(names)
                said = SLOT.sub(lambda m: rng.choice(vague[gone]) if m.group(1) == gone else m.group(0), template)
                query, _ = _fill(said, {}, slots, rng, f"{path}: {label} family {i} template {t}")
                out.append(Example(query, None, {}, f"{label}/{i}-a", "train"))
    return out


def chat_record(example: Example, library: Library, system: str | None = None) -> dict:
    """An example as a chat record (OpenAI ``messages``) whose answer is the functional-token call."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [{"role": "user", "content": example.query},
             {"role": "assistant", "content": library.target(example.function, example.arguments)}]
    return {"messages": msgs, "family": example.family}


def load_labelled(path: str | Path, library: Library) -> list[Example]:
    """Hand-labelled queries (``{"queries": [{"query", "function", "arguments"}]}``, ``function``
    null for a refusal) as test examples of family ``unseen``; a function the library lacks or
    arguments that break its schema are an error."""
    from hare.chat.toolcall.check import schema_problem

    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["queries"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise LibraryError(f"{path}: not a file of labelled queries ({{\"queries\": [...]}}): {e}") from e
    out = []
    for i, r in enumerate(rows):
        fn, args = r.get("function"), r.get("arguments") or {}
        if fn is not None:
            if fn not in library.by_name:
                raise LibraryError(f"{path}: query {i}: the library has no function {fn!r}")
            problem = schema_problem(args, library.by_name[fn].parameters)
            if problem:
                raise LibraryError(f"{path}: query {i}: {problem}")
        out.append(Example(str(r["query"]), fn, args if fn else {}, "unseen", "test"))
    return out
