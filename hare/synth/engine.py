"""The local teacher's generation engine: in-flight batching over a slot KV cache.

``model.generate`` decodes a batch until its longest answer ends: rows that finished keep their
place (and their share of every matrix product) while the cache grows by concatenation, a copy of
all of it at every step. Neither its continuous batching (``generate_batch``, paged attention, the
slower one on CPU) nor a static cache removes finished rows from a batch, so this engine runs its
own decode loop over the model's forward calls, kept small:

- ``SlotCache`` holds each layer's keys and values in one preallocated buffer of rows x columns;
  a step writes one column in place. The rows in flight are the first ``n`` rows (a finished row
  is replaced by the last one, one row's copy), and a row's prompt is right-aligned to the
  current column (left padding), so every row writes its next token to the same column.
- When rows finish, waiting requests are prefilled together (a normal forward with left padding)
  and their keys and values copied into the free rows: up to ``rows`` requests are always in
  flight, and no row waits for the longest answer of its batch.
- Each row carries its own sampling generator and grammar matcher, so a row's tokens depend on its
  own prompt and seed, not on the rows beside it.

Greedy answers are the model's own argmax at each step: the same tokens as ``model.generate`` one
request at a time, up to the float rounding of batching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class SlotLayer(CacheLayerMixin):
    """One layer's keys and values: ``[rows, heads, capacity, head_dim]`` buffers written in place."""

    is_compileable = False

    def __init__(self, cache: "SlotCache"):
        super().__init__()
        self.cache = cache

    def lazy_initialization(self, key_states, value_states) -> None:
        c = self.cache
        shape = (c.rows, key_states.shape[1], c.capacity, key_states.shape[3])
        self.keys = key_states.new_zeros(shape)
        self.values = value_states.new_zeros(shape)
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        """Write a step's keys and values at the current column of the rows in flight; return the
        columns so far of those rows (a view: nothing is copied)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        c = self.cache
        n, end = key_states.shape[0], c.end
        self.keys[:n, :, end: end + key_states.shape[2]] = key_states
        self.values[:n, :, end: end + value_states.shape[2]] = value_states
        stop = end + key_states.shape[2]
        return self.keys[:n, :, :stop], self.values[:n, :, :stop]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cache.end + query_length, 0

    def get_seq_length(self) -> int:
        return self.cache.end

    def get_max_length(self) -> int:
        return self.cache.capacity


class SlotCache(Cache):
    """The KV cache of the rows in flight: ``rows`` slots, columns ``[0, end)`` in use."""

    def __init__(self, layers: int, rows: int, capacity: int):
        self.rows, self.capacity, self.end = rows, capacity, 0
        super().__init__(layers=[SlotLayer(self) for _ in range(layers)])

    def place(self, row: int, keys: list, values: list, width: int) -> None:
        """Copy a prefilled row's last ``width`` columns to row ``row``, ending at column ``end``."""
        for layer, k, v in zip(self.layers, keys, values):
            if not layer.is_initialized:
                layer.lazy_initialization(k[None], v[None])
            layer.keys[row, :, self.end - width: self.end] = k[:, -width:]
            layer.values[row, :, self.end - width: self.end] = v[:, -width:]

    def move(self, src: int, dst: int) -> None:
        """Copy row ``src``'s columns in use to row ``dst``."""
        for layer in self.layers:
            if layer.is_initialized:
                layer.keys[dst, :, :self.end] = layer.keys[src, :, :self.end]
                layer.values[dst, :, :self.end] = layer.values[src, :, :self.end]

    def shift(self, delta: int, n: int) -> None:
        """Move the columns in use of the first ``n`` rows by ``delta`` (left when negative), growing
        the buffers when they would not fit; ``end`` moves with them."""
        need = self.end + delta + 1
        if need > self.capacity:
            self.capacity = max(need, self.capacity + self.capacity // 2)
        lo = max(0, -delta)
        for layer in self.layers:
            if not layer.is_initialized:
                continue
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = old if old.shape[2] >= self.capacity else old.new_zeros(
                    (old.shape[0], old.shape[1], self.capacity, old.shape[3]))
                block = old[:n, :, lo: self.end].clone() if new is old else old[:n, :, lo: self.end]
                new[:n, :, lo + delta: self.end + delta] = block
                setattr(layer, name, new)
        self.end += delta


@dataclass
class Job:
    """One request to the engine: prompt token ids and how to decode it."""

    ids: list[int]
    max_tokens: int
    stop: tuple[str, ...] = ()
    schema: str | None = None
    seed: int = 0
    tag: Any = None


@dataclass
class _Row:
    job: Job
    start: int  # first column of the row's prompt in the cache
    tokens: list[int] = field(default_factory=list)
    generator: Any = None
    matcher: Any = None
    t0: float = 0.0
    finish: str | None = None


@dataclass
class Answer:
    """What the engine gives back for a job: the completion's token ids (without the end token)."""

    job: Job
    tokens: list[int]
    finish_reason: str
    seconds: float


class Engine:
    """Generates for many jobs with up to ``rows`` in flight (see the module docstring).

    ``temperature`` 0 is greedy; otherwise each row samples from its own ``torch.Generator``
    seeded by its job's ``seed``, after temperature, top-k and top-p as transformers applies them.
    ``refill``: prefill waiting jobs once at least this many rows are free (default: an eighth of
    ``rows``), so prompts are prefilled several at a time."""

    def __init__(self, model, tok, rows: int = 64, refill: int | None = None):
        self.model, self.tok = model, tok
        self.rows = max(1, rows)
        self.refill = refill or max(1, self.rows // 8)
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tok.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.device = next(model.parameters()).device
        self.grammars = None

    def run(self, jobs: list[Job], done: Callable[[Answer], None], temperature: float = 0.0, top_p: float = 1.0,
            top_k: int | None = None) -> None:
        """Generate every job, calling ``done`` for each as it finishes."""
        if not jobs:
            return
        warpers: list = []
        if temperature > 0:
            from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                                TopPLogitsWarper)

            warpers.append(TemperatureLogitsWarper(temperature))
            if top_k:
                warpers.append(TopKLogitsWarper(top_k))
            if top_p < 1.0:
                warpers.append(TopPLogitsWarper(top_p))
        if any(j.schema is not None for j in jobs) and self.grammars is None:
            from hare.model.constrain import Grammars

            self.grammars = Grammars(self.tok, self.model.config.vocab_size)
        waiting = sorted(jobs, key=lambda j: len(j.ids))[::-1]  # popped from the end: shortest prompts first
        longest = max(len(j.ids) for j in jobs) + max(j.max_tokens for j in jobs)
        cache = SlotCache(self.model.config.num_hidden_layers, min(self.rows, len(jobs)), longest + 64)
        live: list[_Row] = []
        with torch.inference_mode():
            while waiting or live:
                free = cache.rows - len(live)
                if waiting and (free >= min(self.refill, len(waiting)) or not live):
                    batch = [waiting.pop() for _ in range(min(free, len(waiting)))]
                    self._admit(batch, cache, live, warpers, temperature)
                    self._retire(cache, live, done)
                    if not live:
                        continue
                self._step(cache, live, warpers, temperature)
                self._retire(cache, live, done)

    def _admit(self, batch: list[Job], cache: SlotCache, live: list[_Row], warpers, temperature: float) -> None:
        """Prefill ``batch`` (left padding) and put its rows after the rows in flight."""
        width = max(len(j.ids) for j in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, j in enumerate(batch):
            ids[i, width - len(j.ids):] = torch.tensor(j.ids, dtype=torch.long)
            mask[i, width - len(j.ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        from transformers import DynamicCache

        pre = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), cache=pre, use_cache=True, logits_to_keep=1)
        if width > cache.end:  # the new prompts need more columns than the rows in flight have
            delta = width - cache.end
            cache.shift(delta, len(live))
            for r in live:
                r.start += delta
        elif not live:
            cache.end = width
        n = len(live)
        t0 = time.perf_counter()
        for i, j in enumerate(batch):
            cache.place(n + i, [layer.keys[i] for layer in pre.layers], [layer.values[i] for layer in pre.layers],
                        len(j.ids))
            row = _Row(job=j, start=cache.end - len(j.ids), t0=t0)
            if temperature > 0:
                row.generator = torch.Generator(self.device).manual_seed(j.seed)
            if j.schema is not None:
                row.matcher = self.grammars.matcher(j.schema)
            live.append(row)
        self._pick(out.logits[:, -1, :], live[n:], warpers, temperature)

    def _step(self, cache: SlotCache, live: list[_Row], warpers, temperature: float) -> None:
        """One decode step of the rows in flight."""
        n = len(live)
        ids = torch.tensor([[r.tokens[-1]] for r in live], dtype=torch.long, device=self.device)
        positions = torch.tensor([[cache.end - r.start] for r in live], dtype=torch.long, device=self.device)
        if cache.end + 1 > cache.capacity:
            cache.shift(0, n)
        starts = torch.tensor([r.start for r in live], device=self.device)
        attend = (torch.arange(cache.end + 1, device=self.device)[None, :] >= starts[:, None])[:, None, None, :]
        out = self.model(input_ids=ids, attention_mask=attend, position_ids=positions, cache=cache, use_cache=True)
        cache.end += 1
        self._pick(out.logits[:, -1, :], live, warpers, temperature)

    def _pick(self, scores, rows: list[_Row], warpers, temperature: float) -> None:
        """Each row's next token from its logits: grammar mask, then greedy or its own draw."""
        scores = scores.float()
        if self.grammars is not None and any(r.matcher is not None for r in rows):
            scores = self.grammars.mask(scores, [r.matcher for r in rows])
        if temperature > 0:
            for warp in warpers:
                scores = warp(None, scores)
            probs = torch.softmax(scores, dim=-1)
            picks = [int(torch.multinomial(probs[i], 1, generator=r.generator)) for i, r in enumerate(rows)]
        else:
            picks = scores.argmax(dim=-1).tolist()
        for r, t in zip(rows, picks):
            if t in self.eos:
                r.finish = "stop"
                continue
            r.tokens.append(t)
            if r.matcher is not None:
                r.matcher.consume_token(t)
            if r.job.stop and self._stopped(r):
                r.finish = "stop"
            elif len(r.tokens) >= r.job.max_tokens:
                r.finish = "length"

    def _stopped(self, r: _Row) -> bool:
        text = self.tok.decode(r.tokens, skip_special_tokens=True)
        return any(s in text for s in r.job.stop)

    def _retire(self, cache: SlotCache, live: list[_Row], done: Callable[[Answer], None]) -> None:
        """Hand back the finished rows; the last rows in flight take their places."""
        i = 0
        while i < len(live):
            r = live[i]
            if r.finish is None:
                i += 1
                continue
            done(Answer(r.job, r.tokens, r.finish, time.perf_counter() - r.t0))
            last = len(live) - 1
            if i != last:
                cache.move(last, i)
                live[i] = live[last]
            live.pop()
        if live:  # drop the columns no row attends any more
            first = min(r.start for r in live)
            if first >= max(32, cache.end // 4):
                cache.shift(-first, len(live))
                for r in live:
                    r.start -= first
