"""Rewritten twins of benchmark items for the leakage audit: same meaning, different surface.

Two rewriters. ``DeterministicRewriter`` ships with hare and needs nothing: it reorders the options,
moves a question's context sentences around (the final, asking sentence stays last), swaps common
words for synonyms and changes how numbers are written. ``ChatRewriter`` asks any
OpenAI-compatible endpoint (vLLM, llama.cpp's server, a hosted API) to paraphrase, and keeps every
answer in a JSONL cache so each item is rewritten once. The audit report says which was used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import urllib.request
from dataclasses import replace
from pathlib import Path

from hare.core.benchmarks import Item
from hare.core.io import jsonl_records

log = logging.getLogger("hare.evals.rewrite")

SYNONYMS = {
    "big": "large", "large": "big", "small": "little", "little": "small", "quick": "fast", "fast": "quick",
    "begin": "start", "start": "begin", "buy": "purchase", "purchase": "buy", "show": "demonstrate",
    "shows": "demonstrates", "help": "assist", "helps": "assists", "use": "employ", "uses": "employs",
    "used": "employed", "make": "produce", "makes": "produces", "made": "produced", "answer": "response",
    "choose": "select", "chooses": "selects", "each": "every", "every": "each",
    "often": "frequently", "usually": "typically", "happen": "occur", "happens": "occurs", "get": "obtain",
    "gets": "obtains", "needs": "requires", "need": "require", "explain": "account for", "most": "the majority of",
    "describe": "characterize", "describes": "characterizes", "example": "instance", "important": "significant",
    "cause": "lead to", "causes": "leads to", "increase": "rise", "decrease": "drop", "total": "overall",
    "child": "kid", "children": "kids", "car": "automobile", "house": "home", "student": "pupil",
    "students": "pupils", "teacher": "instructor", "shop": "store", "store": "shop", "scientist": "researcher",
    "scientists": "researchers", "study": "investigate", "studied": "investigated", "likely": "probably",
    "best": "most accurately", "correct": "right", "possible": "feasible", "because": "since", "about": "around",
    "also": "too", "however": "nevertheless", "therefore": "thus", "then": "afterwards", "gives": "hands",
    "give": "hand", "bought": "purchased", "sold": "sold off", "earns": "makes", "earn": "make",
}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD_RE = re.compile(r"\b[A-Za-z]+\b")
_NUM_RE = re.compile(r"(?<![\d.,$])\b(\d{1,2}|\d{4,})\b(?![\d.,]\d)")


def reorder_options(choices: list[str], answer, rng: random.Random) -> tuple[list[str], object]:
    """Shuffle the options and follow the right one to its new index."""
    if len(choices) < 2 or not isinstance(answer, int):
        return choices, answer
    order = list(range(len(choices)))
    rng.shuffle(order)
    return [choices[i] for i in order], order.index(answer)


def _case_like(word: str, new: str) -> str:
    return new[0].upper() + new[1:] if word[0].isupper() else new


class DeterministicRewriter:
    """Rule-based rewrites, fixed by the seed and the item id (the same twin on every run)."""

    name = "deterministic"

    def __init__(self, seed: int = 0, synonym_rate: float = 0.7):
        self.seed = seed
        self.synonym_rate = synonym_rate

    def text(self, text: str, rng: random.Random) -> str:
        sentences = _SENT_RE.split(text.strip())
        if len(sentences) > 2:  # keep the asking sentence last, reorder the context before it
            head = sentences[:-1]
            rng.shuffle(head)
            sentences = head + sentences[-1:]
        text = " ".join(sentences)

        def syn(m: re.Match) -> str:
            w = m.group()
            new = SYNONYMS.get(w.lower())
            return _case_like(w, new) if new and rng.random() < self.synonym_rate else w

        def num(m: re.Match) -> str:
            v = int(m.group())
            if v <= 20 and len(m.group()) <= 2:
                return NUMBER_WORDS[v]
            return f"{v:,}" if v >= 1000 else m.group()

        return _NUM_RE.sub(num, _WORD_RE.sub(syn, text))

    def rewrite(self, item: Item) -> Item:
        rng = random.Random(f"{self.seed}:{item.benchmark}:{item.split}:{item.id}")
        choices, answer = reorder_options([self.text(c, rng) for c in item.choices], item.answer, rng)
        if isinstance(answer, str):
            answer = self.text(answer, rng)
        return replace(item, question=self.text(item.question, rng), choices=choices, answer=answer,
                       meta={**item.meta, "rewriter": self.name})


PROMPT = ("Paraphrase the following text. Keep its meaning, every fact and every number exactly, but change "
          "the wording and the sentence order where you can. Reply with the paraphrase only.")


class ChatRewriter:
    """Paraphrases through an OpenAI-compatible ``/chat/completions`` endpoint, cached on disk."""

    name = "chat"

    def __init__(self, base_url: str, model: str, cache: str | Path, api_key: str | None = None,
                 timeout: float = 120.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.cache_path = Path(cache)
        self.cache: dict[str, str] = {}
        if self.cache_path.exists():
            # A line cut short by an interrupted run is left out: that item is asked for again.
            for _, rec in jsonl_records(self.cache_path, on_error=lambda e: None):
                if isinstance(rec.get("key"), str) and isinstance(rec.get("text"), str):
                    self.cache[rec["key"]] = rec["text"]
        self.requests = 0

    def _key(self, text: str) -> str:
        return hashlib.sha256(json.dumps([self.model, PROMPT, text]).encode()).hexdigest()

    def text(self, text: str) -> str:
        if not text.strip():
            return text
        key = self._key(text)
        if key in self.cache:
            return self.cache[key]
        body = json.dumps({"model": self.model, "temperature": 0.0,
                           "messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": text}]})
        req = urllib.request.Request(self.url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})})
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                out = json.loads(resp.read())["choices"][0]["message"]["content"].strip()
        except Exception as e:  # noqa: BLE001 - the endpoint's failure is reported with its address
            raise RuntimeError(f"rewriting through {self.url} failed: {e}") from e
        self.cache[key] = out
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.cache_path, "a", encoding="utf-8") as f:  # append-only: an interrupted audit keeps its work
            f.write(json.dumps({"key": key, "model": self.model, "source": text, "text": out}) + "\n")
        return out

    def rewrite(self, item: Item) -> Item:
        rng = random.Random(f"{item.benchmark}:{item.split}:{item.id}")
        choices, answer = reorder_options(list(item.choices), item.answer, rng)  # options: reordered, not paraphrased
        if isinstance(answer, str):
            answer = self.text(answer)
        return replace(item, question=self.text(item.question), choices=choices, answer=answer,
                       meta={**item.meta, "rewriter": f"{self.name}:{self.model}"})
