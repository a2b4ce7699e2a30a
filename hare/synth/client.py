"""The generation client: requests to a teacher model, answered once and kept in a cache.

One interface, two backends:

- ``HttpBackend``: any OpenAI-compatible server (vLLM, SGLang, ``transformers serve``, llama.cpp's
  server, a hosted API), chat or completions, over one or several endpoints at once. ``httpx``'s
  async client keeps ``concurrency`` requests in flight per endpoint; the workers of all endpoints
  draw from one queue, so a faster replica takes more of the work. Retries follow the policy of
  the OpenAI and AWS SDKs: 429, 5xx, timeouts and connection errors are retried with exponential
  backoff and full jitter (a ``Retry-After`` header is honoured); any other 4xx is a bad request
  that would fail again, so it is recorded as failed and skipped.
- ``LocalBackend``: a local Hugging Face model with ``transformers``, prompts sorted by length and
  generated in batches (left padding), so padding is small and the batch fills the cores.

A request with a JSON Schema (``Request.schema``) is sent to endpoints as OpenAI's
``response_format`` (vLLM, SGLang and llama.cpp's server decode under it; a server that ignores it
is caught by the caller's validation, one that refuses it is asked without it) and decoded locally
under the schema by a grammar engine (``hare.model.constrain``).

``generate`` answers a list of ``Request`` from the ``RequestCache`` first, sends only the rest,
writes each answer to the cache as it arrives, and shows done/total, tokens/s and the ETA.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, computed_field, field_serializer

from hare.core.progress import Progress
from hare.synth.cache import RequestCache

log = logging.getLogger("hare.synth.client")

ENGINES = ("inflight", "generate")  # LocalBackend's: hare.synth.engine, or batches of model.generate
RETRY_STATUS = {408, 409, 429}  # besides every 5xx: timeouts, conflicts and rate limits pass


@dataclass(frozen=True)
class Request:
    """One generation: chat ``messages`` or a completion ``prompt``, and its sampling parameters.

    ``tag`` is the caller's label (provenance); it is not sent and not part of the key."""

    model: str
    messages: tuple[tuple[str, str], ...] | None = None
    prompt: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # A JSON Schema (``hare.model.constrain.schema_text``) the answer must fit: sent as OpenAI's
    # ``response_format`` to endpoints, applied by the grammar engine locally.
    schema: str | None = None
    # OpenAI's penalties on tokens the answer already holds (its prompt's tokens are free): each
    # token's logit is lowered by ``frequency_penalty`` per time it was generated and by
    # ``presence_penalty`` once it was. Sent only when not 0, so the keys of other requests stay.
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    tag: str = field(default="", compare=False)

    @classmethod
    def chat(cls, model: str, messages: list[dict[str, str]] | list[tuple[str, str]], **kw) -> "Request":
        msgs = tuple((m["role"], m["content"]) if isinstance(m, dict) else (m[0], m[1]) for m in messages)
        return cls(model=model, messages=msgs, **kw)

    @property
    def kind(self) -> str:
        return "chat" if self.messages is not None else "completions"

    def body(self) -> dict[str, Any]:
        """The JSON body of the request (OpenAI API)."""
        out: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                               "top_p": self.top_p}
        if self.messages is not None:
            out["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        else:
            out["prompt"] = self.prompt
        if self.seed is not None:
            out["seed"] = self.seed
        if self.stop:
            out["stop"] = list(self.stop)
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.schema is not None:
            out["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": "answer", "schema": json.loads(self.schema),
                                                      "strict": True}}
        return out

    def key(self) -> str:
        """Hash of everything that decides the answer: what the cache is keyed by."""
        blob = json.dumps({"kind": self.kind, **self.body()}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Result:
    """The answer to one request (or why there is none)."""

    key: str
    ok: bool
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    seconds: float = 0.0
    error: str | None = None
    cached: bool = False

    def record(self) -> dict[str, Any]:
        return {"key": self.key, "text": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "attempts": self.attempts, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Result":
        return cls(key=rec["key"], ok=True, text=rec["text"], finish_reason=rec.get("finish_reason"),
                   prompt_tokens=rec.get("prompt_tokens", 0), completion_tokens=rec.get("completion_tokens", 0),
                   attempts=rec.get("attempts", 1), seconds=rec.get("seconds", 0.0), cached=True)


class Usage(BaseModel):
    """What a batch of generation cost and how it went: the counters ``generate`` keeps and the
    steps' stats hold (per template or task, and in all)."""

    requests: int = 0
    cached: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = {}

    def add(self, r: Result) -> None:
        self.requests += 1
        if r.cached:
            self.cached += 1
        else:
            self.sent += 1
            self.retries += r.attempts - 1
        if r.ok:
            self.ok += 1
            self.prompt_tokens += r.prompt_tokens
            self.completion_tokens += r.completion_tokens
        else:
            self.failed += 1
            reason = (r.error or "error").split(":")[0]
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def merge(self, other: "Usage") -> None:
        for k in ("requests", "cached", "sent", "ok", "failed", "retries", "prompt_tokens", "completion_tokens",
                  "seconds"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v

    # Written rounded, and the rate computed from the rounded time, so stats read back from
    # stats.json give the same numbers as the ones written.
    @field_serializer("seconds")
    def _round_seconds(self, v: float) -> float:
        return round(v, 2)

    @computed_field
    @property
    def completion_tokens_per_s(self) -> float:
        s = round(self.seconds, 2)
        return round(self.completion_tokens / s, 2) if s else 0.0


class Backend:
    """Answers requests; ``run`` calls ``done(request, result)`` for each as it finishes."""

    name = "backend"

    def run(self, requests: list[Request], done: Callable[[Request, Result], None]) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def close(self) -> None:
        """Free what the backend holds beyond one ``run`` (nothing, unless it says otherwise)."""


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)] (AWS's scheme)."""
    return rng.uniform(0, min(cap, base * 2 ** attempt))


class HttpBackend(Backend):
    """An OpenAI-compatible API at one or several base URLs (``http://host:port/v1``)."""

    name = "http"

    def __init__(self, endpoints: list[str], concurrency: int = 16, timeout: float = 600.0, max_retries: int = 6,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0, api_key: str | None = None, seed: int = 0):
        if not endpoints:
            raise ValueError("HttpBackend needs at least one endpoint URL")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.api_key = api_key
        self.rng = random.Random(seed)  # jitter only: never changes an answer
        self.refuses_schema: set[str] = set()  # endpoints that answered 400/422 to response_format

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "endpoints": self.endpoints, "concurrency": self.concurrency}

    def run(self, requests: list[Request], done: Callable[[Request, Result], None]) -> None:
        if requests:
            asyncio.run(self._run(requests, done))

    async def _run(self, requests: list[Request], done) -> None:
        from hare.synth._http import httpx

        queue: asyncio.Queue = asyncio.Queue()
        for r in requests:
            queue.put_nowait(r)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency * len(self.endpoints),
                              max_keepalive_connections=self.concurrency * len(self.endpoints))
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=min(30.0, self.timeout)),
                                     headers=headers, limits=limits, trust_env=False) as client:
            async def worker(endpoint: str) -> None:
                while True:
                    try:
                        req = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    done(req, await self._send(client, endpoint, req))

            await asyncio.gather(*(worker(e) for e in self.endpoints for _ in range(self.concurrency)))

    async def _send(self, client, endpoint: str, req: Request) -> Result:
        from hare.synth._http import httpx

        url = f"{endpoint}/{'chat/completions' if req.kind == 'chat' else 'completions'}"
        key = req.key()
        t0 = time.perf_counter()
        error = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                resp = await self._post(client, endpoint, url, req)
            except httpx.TimeoutException as e:
                error = f"timeout: {type(e).__name__}"
            except httpx.TransportError as e:
                error = f"connection: {type(e).__name__}: {e}"
            else:
                if resp.status_code == 200:
                    try:
                        return self._parse(key, req, resp.json(), attempt + 1, time.perf_counter() - t0)
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        # A 200 whose body is not an answer: the server is broken, not the request.
                        error = f"bad_response: {type(e).__name__}: {e}"
                elif resp.status_code >= 500 or resp.status_code in RETRY_STATUS:
                    error = f"http_{resp.status_code}: {resp.text[:200]}"
                    retry_after = _retry_after(resp.headers.get("retry-after"))
                else:
                    return Result(key, ok=False, attempts=attempt + 1, seconds=time.perf_counter() - t0,
                                  error=f"http_{resp.status_code}: {resp.text[:300]}")
            if attempt < self.max_retries:
                wait = backoff(attempt, self.backoff_base, self.backoff_cap, self.rng)
                await asyncio.sleep(min(self.backoff_cap, retry_after) if retry_after is not None else wait)
        log.warning("request %s failed after %d attempts: %s", key[:12], self.max_retries + 1, error)
        return Result(key, ok=False, attempts=self.max_retries + 1, seconds=time.perf_counter() - t0,
                      error=f"gave_up_{error}")

    async def _post(self, client, endpoint: str, url: str, req: Request):
        """POST the request; a server that refuses ``response_format`` (a 400 or 422 naming it) is
        asked again without it, from then on: its answers are then checked by the caller's
        validation alone, as for a server that ignores the field."""
        body = req.body()
        if endpoint in self.refuses_schema:
            body.pop("response_format", None)
        resp = await client.post(url, json=body)
        if "response_format" in body and resp.status_code in (400, 422) and "response_format" in resp.text:
            self.refuses_schema.add(endpoint)
            log.warning("%s refuses response_format (%s); its answers are validated without it", endpoint,
                        resp.text[:200])
            body.pop("response_format")
            resp = await client.post(url, json=body)
        return resp

    @staticmethod
    def _parse(key: str, req: Request, data: dict, attempts: int, seconds: float) -> Result:
        choice = data["choices"][0]
        text = choice["message"]["content"] if req.kind == "chat" else choice["text"]
        if not isinstance(text, str):
            raise TypeError(f"answer text is {type(text).__name__}")
        usage = data.get("usage") or {}
        return Result(key, ok=True, text=text, finish_reason=choice.get("finish_reason"),
                      prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0), attempts=attempts, seconds=seconds)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def request_seed(req: Request) -> int:
    """The seed of a request's sampling: its own ``seed``, or one drawn from its key."""
    if req.seed is not None:
        return req.seed % (1 << 63)
    return int(req.key()[:15], 16)


class RowSampler:
    """A logits processor that samples each row of a batch from its own ``torch.Generator``:
    temperature, top-k and top-p as transformers applies them, then one multinomial draw per row; it
    leaves the drawn token as the only one allowed, so greedy decoding takes it. A row's tokens so
    depend on its own logits and seed alone, not on the rows beside it (transformers' sampling draws
    the whole batch from the global generator)."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, top_k: int | None, device: str):
        import torch
        from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                            TopPLogitsWarper)

        self.generators = [torch.Generator(device).manual_seed(s) for s in seeds]
        self.warpers: list = [TemperatureLogitsWarper(temperature)]
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids, scores):
        import torch

        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        picks = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, picks[:, None], 0.0)
        return out


class Penalties:
    """A logits processor for ``model.generate``: OpenAI's frequency and presence penalties on the
    tokens each row generated (its columns from ``start`` on, after the left-padded prompts)."""

    def __init__(self, start: int, frequency: float, presence: float):
        self.start, self.frequency, self.presence = start, frequency, presence

    def __call__(self, input_ids, scores):
        import torch

        counts = torch.zeros_like(scores)
        new = input_ids[:, self.start:]
        counts.scatter_add_(1, new, torch.ones_like(new, dtype=scores.dtype))
        return scores - (self.frequency * counts + self.presence * (counts > 0).to(scores.dtype))


class LocalBackend(Backend):
    """A local Hugging Face model folder (never downloaded), batched generation sorted by prompt length.

    Greedy requests (temperature 0) give what the model gives one at a time, up to float rounding
    in padded batches. A sampled request draws its tokens from a generator of its own, seeded by its
    ``seed`` (by its key when it has none), whatever batch it falls in: a re-run that sends only the
    requests a killed run did not finish, or sends them in batches of another size, samples the same
    texts (up to the same float rounding, which moves a draw only when it falls within a rounding
    error of a token's boundary)."""

    name = "local"

    def __init__(self, path: str | Path, batch_size: int = 8, device: str = "cpu", dtype: str = "float32",
                 threads: int = 0, engine: str = "inflight", speculate: int = 8):
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r}: one of {', '.join(ENGINES)}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = str(path)
        self.batch_size = batch_size
        self.threads = threads
        self.engine = engine
        self.speculate = speculate
        self.stats = None  # the in-flight engine's counts of the last run (hare.synth.engine.Stats)
        self.tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True,
                                                          dtype=getattr(torch, dtype)).to(device).eval()
        self.device = device

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": self.path, "batch_size": self.batch_size, "engine": self.engine,
                "speculate": self.speculate}

    def prompt_text(self, req: Request) -> str:
        if req.messages is None:
            return req.prompt or ""
        return self.tok.apply_chat_template([{"role": r, "content": c} for r, c in req.messages], tokenize=False,
                                            add_generation_prompt=True)

    def run(self, requests: list[Request], done: Callable[[Request, Result], None]) -> None:
        import torch

        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)  # for generation only: the process's setting comes back after
        try:
            (self._run_inflight if self.engine == "inflight" else self._run)(requests, done)
        finally:
            torch.set_num_threads(threads)

    def _run_inflight(self, requests: list[Request], done: Callable[[Request, Result], None]) -> None:
        """``hare.synth.engine``: up to ``batch_size`` requests in flight, each replaced as it ends."""
        from hare.synth.engine import Engine, Job

        engine = Engine(self.model, self.tok, rows=self.batch_size, speculate=self.speculate)
        self.stats = engine.stats
        groups: dict[tuple, list[Job]] = {}
        for r in requests:
            ids = self.tok(self.prompt_text(r), add_special_tokens=False).input_ids
            groups.setdefault((r.temperature, r.top_p), []).append(
                Job(ids=ids, max_tokens=r.max_tokens, stop=r.stop, schema=r.schema, seed=request_seed(r), tag=r,
                    frequency_penalty=r.frequency_penalty, presence_penalty=r.presence_penalty))

        def finished(a) -> None:
            r: Request = a.job.tag
            text = self.tok.decode(a.tokens, skip_special_tokens=True)
            for s in r.stop:
                text = text.split(s)[0]
            done(r, Result(r.key(), ok=True, text=text, finish_reason=a.finish_reason, prompt_tokens=len(a.job.ids),
                           completion_tokens=len(a.tokens), seconds=a.seconds))

        for (temperature, top_p), jobs in groups.items():
            engine.run(jobs, finished, temperature=temperature, top_p=top_p,
                       top_k=self.model.generation_config.top_k if temperature > 0 else None)

    def _run(self, requests: list[Request], done: Callable[[Request, Result], None]) -> None:
        """The ``generate`` engine: batches of ``batch_size`` requests, each decoded by ``model.generate``
        until its longest answer ends."""
        import torch

        texts = {id(r): self.prompt_text(r) for r in requests}
        lengths = {id(r): len(self.tok(texts[id(r)], add_special_tokens=False).input_ids) for r in requests}
        # Batches of equal sampling parameters, each sorted by prompt length (little padding).
        groups: dict[tuple, list[Request]] = {}
        for r in requests:
            groups.setdefault((r.max_tokens, r.temperature, r.top_p, r.stop, r.frequency_penalty,
                               r.presence_penalty), []).append(r)
        for (max_tokens, temperature, top_p, stop, frequency, presence), group in groups.items():
            group.sort(key=lambda r: lengths[id(r)])
            for lo in range(0, len(group), self.batch_size):
                batch = group[lo: lo + self.batch_size]
                t0 = time.perf_counter()
                enc = self.tok([texts[id(r)] for r in batch], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.device)
                kw: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self.tok.pad_token_id,
                                      "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
                processors: list = []
                if frequency or presence:  # on the logits first, as OpenAI and vLLM apply them
                    processors.append(Penalties(enc.input_ids.shape[1], frequency, presence))
                if any(r.schema is not None for r in batch):  # JSON Schemas first: sampling sees only what fits
                    from hare.model.constrain import SchemaMask

                    processors.append(SchemaMask(self.tok, [r.schema for r in batch], self.model.config.vocab_size))
                if temperature > 0:  # sampled row by row, each from its own generator (RowSampler)
                    processors.append(RowSampler([request_seed(r) for r in batch], temperature, top_p,
                                                 self.model.generation_config.top_k, self.device))
                if processors:
                    kw["logits_processor"] = processors
                if stop:
                    kw.update(stop_strings=list(stop), tokenizer=self.tok)
                with torch.inference_mode():
                    out = self.model.generate(**enc, **kw)
                new = out[:, enc.input_ids.shape[1]:]
                dt = (time.perf_counter() - t0) / len(batch)
                eos = {self.tok.eos_token_id, self.tok.pad_token_id}
                for r, row in zip(batch, new.tolist()):
                    n = next((i for i, t in enumerate(row) if t in eos), len(row))
                    text = self.tok.decode(row[:n], skip_special_tokens=True)
                    for s in stop:
                        text = text.split(s)[0]
                    done(r, Result(r.key(), ok=True, text=text, finish_reason="stop" if n < len(row) else "length",
                                   prompt_tokens=lengths[id(r)], completion_tokens=n, seconds=dt))


def generate(requests: Iterable[Request], backend: Backend | Callable[[], Backend], cache: RequestCache,
             desc: str = "generate") -> tuple[list[Result], Usage]:
    """The answers to ``requests`` in order: cached ones read back, the others sent (each written to
    the cache as it arrives). Duplicate requests are sent once. ``backend`` may be a function that
    makes one: it is called only when a request is missing from the cache (a re-run whose every
    answer is cached loads no model and opens no connection)."""
    requests = list(requests)
    usage = Usage()
    results: dict[str, Result] = {}
    pending: dict[str, Request] = {}
    for r in requests:
        k = r.key()
        hit = cache.get(k)
        if hit is not None:
            results[k] = Result.from_record(hit)
        elif k not in pending:
            pending[k] = r
    bar = Progress(total=len(pending), desc=desc, unit="req")
    t0 = time.perf_counter()
    tokens = 0

    def done(req: Request, res: Result) -> None:
        nonlocal tokens
        if res.ok:
            cache.put(res.record())
            tokens += res.completion_tokens
        results[res.key] = res
        dt = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{tokens / dt:.1f} tok/s", refresh=False)
        bar.update(1)

    try:
        if pending:
            if not isinstance(backend, Backend):
                backend = backend()
            log.info("%s: %d requests, %d answered from the cache, %d to send (%s)", desc, len(requests),
                     len(requests) - len(pending), len(pending), json.dumps(backend.describe()))
            backend.run(list(pending.values()), done)
    finally:
        bar.close()
        cache.sync()
    usage.seconds = time.perf_counter() - t0
    ordered = []
    seen: set[str] = set()
    for r in requests:
        res = results[r.key()]
        if res.key in seen and not res.cached:
            res = Result(**{**res.__dict__, "cached": True})  # a duplicate of a request sent once
        seen.add(res.key)
        usage.add(res)
        ordered.append(res)
    return ordered, usage


def open_cache(folder: str | Path, name: str = "requests.jsonl") -> RequestCache:
    return RequestCache(Path(folder) / name)
