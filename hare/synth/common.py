"""What the D2 and D3 steps share: the teacher a step talks to, its cache, its request seeds."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

from hare.core.execution import ExecutionConfig
from hare.core.step import file_inputs
from hare.synth.cache import RequestCache
from hare.synth.client import Backend, Request, Result, Usage, generate
from hare.synth.prompts import PACKAGED
from hare.synth.teacher import make_backend, teacher_folder, teacher_model


class Teacher:
    """The teacher of a recipe's ``synth`` section as a step uses it: requests in its API
    (``request``), a session per step that answers them from the step's request cache first
    (``session``), and its tokenizer's count of a text (``count_tokens``).

    ``cache_dir`` holds one request cache per step (``<run>/synth-cache`` by default, outside the
    step folders, so answers outlive a change of a step's fingerprint); ``seed`` is the recipe's;
    ``execution`` (``hare.core.execution.ExecutionConfig``) says where the requests are sent from."""

    def __init__(self, syn, seed: int, cache_dir: str | Path, execution: ExecutionConfig | None = None):
        self.syn, self.seed, self.cache_dir = syn, seed, Path(cache_dir).expanduser()
        self.execution = execution or ExecutionConfig()
        self.model = teacher_model(syn.teacher)

    @classmethod
    def for_run(cls, syn, seed: int, run_dir: Path, execution=None) -> "Teacher":
        return cls(syn, seed, syn.cache_dir or run_dir / "synth-cache", execution)

    def request(self, prompt: str, max_tokens: int, temperature: float, top_p: float, seed: int,
                history: tuple[tuple[str, str], ...] = (), schema: str | None = None,
                **penalties: float) -> Request:
        """One request in the teacher's API (chat, or completions with the prompt as written);
        ``schema``: the JSON Schema text its answer is decoded under (``hare.model.constrain``);
        ``penalties``: ``frequency_penalty`` and ``presence_penalty`` (``Request``)."""
        if self.syn.teacher.api == "completions":
            text = "\n\n".join(c for _, c in history + (("user", prompt),))
            return Request(model=self.model, prompt=text, max_tokens=max_tokens, temperature=temperature,
                           top_p=top_p, seed=seed, schema=schema, **penalties)
        return Request.chat(self.model, list(history) + [("user", prompt)], max_tokens=max_tokens,
                            temperature=temperature, top_p=top_p, seed=seed, schema=schema, **penalties)

    def backend(self) -> Backend:
        """The teacher's backend, sent from this process (``execution.executor: local``) or from Ray actors."""
        x = self.execution
        if x.executor == "ray":
            from hare.synth.ray_backend import RayBackend

            return RayBackend(self.syn.teacher, self.seed, actors=x.teacher_actors, address=x.ray_address)
        return make_backend(self.syn.teacher, self.seed)

    @contextlib.contextmanager
    def session(self, name: str) -> Iterator["Session"]:
        """The step ``name``'s session: its request cache (synced and closed after) and a backend made
        on first use (a fully cached run loads no model and starts no Ray), closed when done."""
        made: list[Backend] = []

        def get() -> Backend:
            if not made:
                made.append(self.backend())
            return made[0]

        try:
            with RequestCache(self.cache_dir / f"{name}.jsonl") as cache:
                yield Session(cache, get)
        finally:
            for b in made:
                b.close()

    def token_counter(self) -> Callable[[str], int]:
        """Counts tokens with the teacher's tokenizer when it is a local folder; for endpoints, an
        estimate (words and punctuation marks, which a BPE tokenizer of English text meets or exceeds
        slightly)."""
        t = self.syn.teacher
        folder = None if t.endpoints else teacher_folder(t)
        if folder:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            return lambda text: len(tok(text, add_special_tokens=False).input_ids)
        pattern = re.compile(r"\w+|[^\w\s]")
        return lambda text: len(pattern.findall(text))


class Session:
    """A step's teacher while the step runs: its request cache and backend, and the usage of every
    ``generate`` it made, in all and per family of prompts (a template, a task)."""

    def __init__(self, cache: RequestCache, backend: Callable[[], Backend]):
        self.cache = cache
        self.backend = backend
        self.total = Usage()
        self.families: dict[str, Usage] = defaultdict(Usage)

    def generate(self, requests: list[Request], families: list[str], desc: str) -> list[Result]:
        """The answers to ``requests`` (``generate``), tallied under each request's family."""
        results, usage = generate(requests, self.backend, self.cache, desc=desc)
        self.total.merge(usage)
        for family, res in zip(families, results):
            self.families[family].add(res)
        return results

    def by_family(self) -> dict[str, Usage]:
        return dict(sorted(self.families.items()))


def synth_inputs(config) -> dict[str, Any]:
    """Fingerprints of the template folders and of a local teacher's weights."""
    syn = config.synth
    if not syn.enabled:
        return {}
    t = syn.teacher
    return file_inputs(templates=str(PACKAGED), user_templates=syn.templates_dir,
                       teacher=t.local if not t.endpoints else None)


def sub_seed(*parts: Any) -> int:
    """A request's sampling seed from its position (recipe seed, topic, index...): stable across runs."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)
