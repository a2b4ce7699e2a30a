"""What the D2 and D3 steps share: the teacher a step talks to, its cache, its request seeds."""

from __future__ import annotations

import contextlib
import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

from hare.core.step import StepContext, file_inputs
from hare.synth.cache import RequestCache
from hare.synth.client import Backend, Request, Result, Usage, generate
from hare.synth.prompts import PACKAGED
from hare.synth.teacher import make_backend, teacher_folder, teacher_model


def cache_for(ctx: StepContext, name: str) -> RequestCache:
    """The step's request cache: ``synth.cache_dir`` (default ``<run>/synth-cache``), outside the step's
    folder, so answers outlive a change of the step's fingerprint."""
    folder = Path(ctx.config.synth.cache_dir).expanduser() if ctx.config.synth.cache_dir else \
        ctx.run_dir / "synth-cache"
    return RequestCache(folder / f"{name}.jsonl")


def make_step_backend(ctx: StepContext) -> Backend:
    """The teacher's backend, sent from this process (``synth.executor: local``) or from Ray actors."""
    syn = ctx.config.synth
    if syn.executor == "ray":
        from hare.synth.executor import RayBackend

        return RayBackend(syn.teacher, ctx.config.seed, actors=syn.ray_actors, address=syn.ray_address)
    return make_backend(syn.teacher, ctx.config.seed)


@contextlib.contextmanager
def backend_factory(ctx: StepContext) -> Iterator[Callable[[], Backend]]:
    """A function that makes the step's backend on first use (a fully cached run loads no model and
    starts no Ray) and hands the same one to every later ``generate``; closed when the step is done."""
    made: list[Backend] = []

    def get() -> Backend:
        if not made:
            made.append(make_step_backend(ctx))
        return made[0]

    try:
        yield get
    finally:
        for b in made:
            b.close()


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


@contextlib.contextmanager
def teacher_session(ctx: StepContext, name: str) -> Iterator[Session]:
    """The step's session with its teacher; the cache is synced and closed, and the backend (a Ray
    instance it started, say) closed, when the step is done with it."""
    with cache_for(ctx, name) as cache, backend_factory(ctx) as backend:
        yield Session(cache, backend)


def model_name(ctx: StepContext) -> str:
    return teacher_model(ctx.config.synth.teacher)


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


def chat(ctx: StepContext, prompt: str, max_tokens: int, temperature: float, top_p: float, seed: int,
         history: tuple[tuple[str, str], ...] = ()) -> Request:
    """One request in the teacher's API (chat, or completions with the prompt as written)."""
    model = model_name(ctx)
    if ctx.config.synth.teacher.api == "completions":
        text = "\n\n".join(c for _, c in history + (("user", prompt),))
        return Request(model=model, prompt=text, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                       seed=seed)
    return Request.chat(model, list(history) + [("user", prompt)], max_tokens=max_tokens, temperature=temperature,
                        top_p=top_p, seed=seed)


def token_counter(ctx: StepContext):
    """Counts tokens with the teacher's tokenizer when it is a local folder; for endpoints, an estimate
    (words and punctuation marks, which a BPE tokenizer of English text meets or exceeds slightly)."""
    import re

    t = ctx.config.synth.teacher
    folder = None if t.endpoints else teacher_folder(t)
    if folder:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return lambda text: len(tok(text, add_special_tokens=False).input_ids)
    pattern = re.compile(r"\w+|[^\w\s]")
    return lambda text: len(pattern.findall(text))
