"""Rewritten twins of benchmark items for the leakage audit: same meaning, different surface.

Two rewriters. ``DeterministicRewriter`` ships with hare and needs nothing: it reorders the options,
moves a question's context sentences around (the final, asking sentence stays last), rephrases the
asking words ("Where" -> "In what place", "Which of the following" -> "Which one of these"),
swaps common words for synonyms, turns "a" into "one" and changes how numbers and negations are
written, so that the question text itself changes, not only the order of the options (which the
audited question + answer text does not show). ``ParaphraseRewriter`` is the hook for a model: any
function from text to paraphrased text (a teacher model's generate) rewrites the question and a
free-text answer; ``ChatRewriter`` is one, asking any OpenAI-compatible endpoint (vLLM, llama.cpp's
server, a hosted API) and keeping every answer in a JSONL cache so each item is rewritten once.
The audit report says which was used, and leaves out of Δ the twins that came back unchanged.
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

from hare.core.evalsets import Item
from hare.core.io import cut_torn_tail, jsonl_records

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
    # words that recur in science, exam and everyday-scene questions
    "process": "procedure", "result": "outcome", "results": "outcomes", "type": "kind", "types": "kinds",
    "kind": "sort", "origin": "source", "production": "creation", "produce": "generate", "occur": "take place",
    "occurs": "takes place", "originate": "come from", "statement": "claim", "statements": "claims",
    "true": "accurate", "false": "untrue", "following": "listed", "person": "individual", "people": "individuals",
    "man": "guy", "woman": "lady", "men": "guys", "women": "ladies", "starts": "begins", "begins": "starts",
    "sitting": "seated", "standing": "upright", "holding": "gripping", "walks": "strolls", "walking": "strolling",
    "talking": "speaking", "talks": "speaks", "runs": "dashes", "running": "dashing", "pulling": "tugging",
    "putting": "placing", "puts": "places", "takes": "grabs", "looks": "glances", "looking": "glancing",
    "shown": "depicted", "seen": "observed", "different": "distinct", "same": "identical", "called": "named",
    "known": "recognized", "found": "located", "several": "a number of",
    "amount": "quantity", "area": "region", "energy": "power",
    "animal": "creature", "animals": "creatures", "rock": "stone",
    "rocks": "stones", "ability": "capacity", "role": "function", "effect": "impact", "effects": "impacts",
    "country": "nation", "countries": "nations", "law": "statute", "laws": "statutes", "method": "technique",
    "consider": "take", "considered": "regarded", "means": "signifies", "happened": "occurred",
    "real": "genuine", "actually": "in fact", "really": "truly", "bad": "harmful", "good": "beneficial",
}
# Asking words rephrased, first match only (question words keep their meaning; the text changes
# where memorised continuations start).
QUESTION_FORMS = [
    (re.compile(r"\bWhich of the following\b"), "Which one of these"),
    (re.compile(r"\bwhich of the following\b"), "which one of these"),
    (re.compile(r"\bWhere\b"), "In what place"), (re.compile(r"\bwhere\b"), "in what place"),
    (re.compile(r"\bWhen\b"), "At what time"), (re.compile(r"\bwhen\b"), "at the time"),
    (re.compile(r"\bWhy\b"), "For what reason"), (re.compile(r"\bHow many\b"), "What number of"),
    (re.compile(r"\bWho\b"), "Which person"), (re.compile(r"\bWhat is\b"), "What's"),
    (re.compile(r"\bWhat are\b"), "What're"), (re.compile(r"\bWhat happens\b"), "What occurs"),
    (re.compile(r"\bWhich\b"), "What"), (re.compile(r"\bIf you\b"), "Should you"),
]
NEGATIONS = [("does not", "doesn't"), ("do not", "don't"), ("is not", "isn't"), ("are not", "aren't"),
             ("cannot", "can't"), ("will not", "won't"), ("did not", "didn't"), ("was not", "wasn't"),
             ("it is", "it's"), ("It is", "It's"), ("there is", "there's"), ("There is", "There's")]
_ONE_RE = re.compile(r"\b([Aa]) (?!lot\b|few\b|little\b|bit\b|couple\b|number\b)(?=[a-z])")
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

    def text(self, text: str, rng: random.Random, question: bool = False) -> str:
        """``text`` rewritten; a ``question`` the rules leave unchanged also has its asking words,
        negations and "a" rephrased."""
        out = self._text(text, rng, self.synonym_rate, False)
        # Unchanged (a short question without synonyms or numbers): rephrase its asking words, then
        # also take every synonym, so that the twin differs from the item wherever it can.
        if out == text.strip() and question:
            out = self._text(text, rng, self.synonym_rate, True)
        if out == text.strip() and self.synonym_rate > 0:
            out = self._text(text, rng, 1.0, question)
        return out

    def _text(self, text: str, rng: random.Random, synonym_rate: float, question: bool) -> str:
        sentences = _SENT_RE.split(text.strip())
        if len(sentences) > 2:  # keep the asking sentence last, reorder the context before it
            head = sentences[:-1]
            rng.shuffle(head)
            sentences = head + sentences[-1:]
        text = " ".join(sentences)

        if question:
            for pattern, repl in QUESTION_FORMS:
                text, hits = pattern.subn(repl, text, count=1)
                if hits:
                    break
            for a, b in NEGATIONS:
                text = re.sub(rf"\b{a}\b", b, text) if a in text else re.sub(rf"\b{re.escape(b)}", a, text)
            text = _ONE_RE.sub(lambda m: "One " if m.group(1) == "A" else "one ", text)

        def syn(m: re.Match) -> str:
            w = m.group()
            new = SYNONYMS.get(w.lower())
            return _case_like(w, new) if new and rng.random() < synonym_rate else w

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
        return replace(item, question=self.text(item.question, rng, question=True), choices=choices, answer=answer,
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
        # A line cut short by an interrupted run is cut off (the next record would join it and be
        # lost): that item is asked for again.
        cut_torn_tail(self.cache_path)
        if self.cache_path.exists():
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
        return ParaphraseRewriter(self.text, f"{self.name}:{self.model}").rewrite(item)


class ParaphraseRewriter:
    """Twins from any paraphrasing function (text -> text): the hook through which a model rewrites
    the items (``ChatRewriter`` uses an endpoint; a teacher model's generate fits the same way). The
    question and a free-text answer are paraphrased; options are reordered, not paraphrased."""

    def __init__(self, paraphrase, name: str):
        self.paraphrase = paraphrase
        self.name = name

    def rewrite(self, item: Item) -> Item:
        rng = random.Random(f"{item.benchmark}:{item.split}:{item.id}")
        choices, answer = reorder_options(list(item.choices), item.answer, rng)
        if isinstance(answer, str):
            answer = self.paraphrase(answer)
        return replace(item, question=self.paraphrase(item.question), choices=choices, answer=answer,
                       meta={**item.meta, "rewriter": self.name})
