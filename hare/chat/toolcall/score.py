"""Scoring a function caller on held-out queries, per function, as the Octopus v2 paper's table.

For every expected function (and for the queries to refuse): the function accuracy (the right
function chosen, or a refusal where one is due), the exact match of the whole call (function and
arguments equal after JSON parsing), the BFCL AST check (``hare.chat.toolcall.check.ast_check``) and the
mean latency per call. The irrelevance rejection rate is the share of queries to refuse that got
no call (BFCL's irrelevance detection counts any answer that is not a call as a rejection).

Two baselines beside it, as in the paper's comparison: ``RetrievalBaseline`` picks the function
whose description is most similar to the query (TF-IDF, the paper's RAG retrieval step; it names
no arguments, so only its function accuracy and rejection are scored), and any caller built on the
base model prompted with the tool schemas (``PromptedCaller``).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from hare.chat.toolcall.check import Call, NoCall, Refusal, ast_check
from hare.chat.toolcall.data import Example
from hare.chat.toolcall.library import Library
from hare.core.progress import progress

REFUSE = "(refuse)"


@dataclass
class Scored:
    example: Example
    result: Call | Refusal | NoCall
    seconds: float

    @property
    def function_ok(self) -> bool:
        if self.example.function is None:
            return not isinstance(self.result, Call)
        return isinstance(self.result, Call) and self.result.name == self.example.function

    @property
    def exact(self) -> bool:
        if self.example.function is None:
            return not isinstance(self.result, Call)
        return isinstance(self.result, Call) and self.result.name == self.example.function and \
            self.result.arguments == self.example.arguments

    def record(self) -> dict:
        """The query, what was expected and what came back, as one JSON line (lm-eval's logged samples)."""
        r = self.result
        answer = ({"call": r.name, "arguments": r.arguments} if isinstance(r, Call) else
                  {"refusal": True} if isinstance(r, Refusal) else {"no_valid_call": r.reason, "text": r.text})
        return {"query": self.example.query, "family": self.example.family,
                "expected": {"call": self.example.function, "arguments": self.example.arguments}
                if self.example.function else {"refusal": True},
                "answer": answer, "function_ok": self.function_ok, "exact": self.exact,
                "seconds": round(self.seconds, 4)}


def score(caller: Callable[[str], object], examples: list[Example], library: Library,
          arguments: bool = True, samples: list | None = None) -> dict:
    """Run ``caller(query)`` (``(result, seconds)`` or a ``Decoded``) on ``examples``; the
    per-function table and the totals, with a progress bar (rate, ETA). ``samples``, when given,
    gets every query's ``Scored.record`` in the order of ``examples``."""
    rows: dict[str, list[Scored]] = defaultdict(list)
    for ex in progress(examples, f"scoring {type(caller).__name__}", total=len(examples), unit="query"):
        out = caller(ex.query)
        result, seconds = (out.result, out.seconds) if hasattr(out, "result") else out
        scored = Scored(ex, result, seconds)
        rows[ex.function or REFUSE].append(scored)
        if samples is not None:
            samples.append(scored.record())
    table = {}
    for name in [f.name for f in library.functions if f.name in rows] + ([REFUSE] if REFUSE in rows else []):
        s = rows[name]
        entry = {"queries": len(s), "function_accuracy": _mean(x.function_ok for x in s),
                 "latency_s": _mean(x.seconds for x in s)}
        if arguments:
            entry["exact_call"] = _mean(x.exact for x in s)
            entry["ast"] = _mean((not isinstance(x.result, Call)) if name == REFUSE else
                                 (isinstance(x.result, Call) and ast_check(x.result, name, x.example.arguments,
                                                                           library).ok) for x in s)
        entry["no_valid_call"] = sum(isinstance(x.result, NoCall) for x in s)
        table[name] = entry
    calls = [x for n, s in rows.items() if n != REFUSE for x in s]
    refuse = rows.get(REFUSE, [])
    every = calls + refuse
    total = {"queries": len(every), "function_accuracy": _mean(x.function_ok for x in every),
             "irrelevance": _mean(not isinstance(x.result, Call) for x in refuse) if refuse else None,
             "latency_s": _mean(x.seconds for x in every)}
    if arguments:
        total["exact_call"] = _mean(x.exact for x in calls)
        total["ast"] = _mean(isinstance(x.result, Call) and ast_check(x.result, x.example.function,
                                                                       x.example.arguments, library).ok
                             for x in calls)
    return {"functions": table, "overall": total}


def _mean(values) -> float:
    values = list(values)
    return round(sum(float(v) for v in values) / len(values), 4) if values else 0.0


class RetrievalBaseline:
    """The function whose name and description are most TF-IDF-similar to the query; a refusal
    when the best similarity is under a threshold fitted on the training queries."""

    def __init__(self, library: Library, train: list[Example]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.library = library
        docs = [f"{f.name.replace('_', ' ')} {f.description} " +
                " ".join(p.get("description", "") for p in f.properties.values()) for f in library.functions]
        self.vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)).fit(docs + [e.query for e in train])
        self.docs = self.vec.transform(docs)
        sims = [(self._best(e.query), e.function is None) for e in train]
        candidates = sorted({round(s, 4) for (s, _), _ in sims} | {0.0})
        self.threshold = max(candidates, key=lambda t: sum((s < t) == refuse for (s, _), refuse in sims))

    def _best(self, query: str) -> tuple[float, int]:
        sim = (self.vec.transform([query]) @ self.docs.T).toarray()[0]
        i = int(sim.argmax())
        return float(sim[i]), i

    def __call__(self, query: str) -> tuple[Call | Refusal, float]:
        t0 = time.perf_counter()
        s, i = self._best(query)
        res = Refusal() if s < self.threshold else Call(self.library.functions[i].name, {})
        return res, time.perf_counter() - t0


class PromptedCaller:
    """The base model prompted with the tool schemas (no functional tokens): it is asked for one
    JSON object ``{"name": ..., "arguments": {...}}``, or ``{"name": null}`` when no tool fits."""

    def __init__(self, model, tokenizer, library: Library, max_new_tokens: int = 96):
        self.model, self.tokenizer, self.library = model.eval(), tokenizer, library
        self.max_new_tokens = max_new_tokens
        tools = json.dumps(library.tools(), ensure_ascii=False)
        self.system = ("You are a phone assistant that calls functions. Available functions (JSON schemas): "
                       f"{tools}\nAnswer with one JSON object and nothing else: "
                       '{"name": "<function name>", "arguments": {...}}, or {"name": null} when no function '
                       "fits the request or it lacks required information.")

    def __call__(self, query: str) -> tuple[Call | Refusal | NoCall, float]:
        import torch

        from hare.chat.toolcall.check import schema_problem
        from hare.chat.toolcall.decode import prompt_ids

        t0 = time.perf_counter()
        ids = torch.tensor([prompt_ids(self.tokenizer, query, self.system)])
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return _read_json_call(text, self.library, schema_problem), time.perf_counter() - t0


def _read_json_call(text: str, library: Library, schema_problem) -> Call | Refusal | NoCall:
    m = re.search(r"\{.*\}", text, re.S)
    if m is None:
        return NoCall("no JSON object", text)
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError as e:
        return NoCall(f"not JSON: {e.msg}", text)
    if not isinstance(obj, dict):
        return NoCall("not a JSON object", text)
    name = obj.get("name")
    if name is None:
        return Refusal()
    if name not in library.by_name:
        return NoCall(f"unknown function {name!r}", text)
    args = obj.get("arguments", {})
    if not isinstance(args, dict):
        return NoCall("arguments are not an object", text)
    problem = schema_problem(args, library.by_name[name].parameters)
    return NoCall(problem, text) if problem else Call(name, args)


def markdown(results: dict[str, dict]) -> str:
    """One table per function and method, as the paper's comparison: ``results`` is method -> score()."""
    methods = list(results)
    names = list(next(iter(results.values()))["functions"])
    head = ["function", "queries"] + [f"{m}: function acc" for m in methods] + \
        [f"{m}: exact call" for m in methods if "exact_call" in results[m]["overall"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names + ["overall"]:
        rows = {m: (results[m]["overall"] if n == "overall" else results[m]["functions"].get(n, {})) for m in methods}
        cells = [f"**{n}**" if n == "overall" else n, str(next(iter(rows.values())).get("queries", ""))]
        cells += [f"{rows[m].get('function_accuracy', 0):.1%}" for m in methods]
        cells += [f"{rows[m].get('exact_call', 0):.1%}" for m in methods if "exact_call" in results[m]["overall"]]
        lines.append("| " + " | ".join(cells) + " |")
    irr = ", ".join(f"{m} {results[m]['overall']['irrelevance']:.1%}" for m in methods
                    if results[m]["overall"].get("irrelevance") is not None)
    lat = ", ".join(f"{m} {results[m]['overall']['latency_s'] * 1000:.0f} ms" for m in methods)
    return "\n".join(lines) + f"\n\nIrrelevance rejection: {irr}. Latency per call: {lat}.\n"
