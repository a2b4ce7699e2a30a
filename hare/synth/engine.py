"""The local teacher's generation engine: in-flight batching over a slot KV cache, with shared prompt
prefixes and prompt-lookup speculation.

``model.generate`` decodes a batch until its longest answer ends: rows that finished keep their
place (and their share of every matrix product) while the cache grows by concatenation, a copy of
all of it at every step. Neither its continuous batching (``generate_batch``, paged attention, the
slower one on CPU) nor a static cache removes finished rows from a batch, so this engine runs its
own decode loop over the model's forward calls, kept small. Its parts are the ones vLLM and SGLang
use, at the scale of one CPU process:

- **Slots.** ``SlotCache`` holds each layer's keys and values in one preallocated buffer of
  rows x columns. Each row starts at column 0 and has its own length; a forward writes each row's
  new columns at that row's length (a scatter) and attends through a per-row mask, so rows of any
  length decode together. The rows in flight are the first ``n`` (a finished row is replaced by the
  last one, one row's copy).
- **In-flight batching.** When rows finish, waiting requests are admitted: prefilled in groups of
  similar length (at most ``prefill_tokens`` tokens a forward, little padding) straight into free
  rows. Up to ``rows`` requests are always in flight and no row waits for the longest answer of its
  batch.
- **Shared prefixes** (vLLM's automatic prefix caching, at the granularity of 16-token blocks). A
  prompt that begins like one already in the cache (the chat template's system turn, a template's
  instructions, the same prompt with another seed) copies that row's keys and values for the common
  prefix and prefills only the rest.
- **Prompt-lookup speculation** (Saxena 2023, transformers' ``prompt_lookup_num_tokens``, vLLM's
  n-gram proposer). A row proposes the tokens that followed the latest earlier occurrence of its
  last 3 (or 2) tokens in its prompt and answer; one forward scores them all, and the row keeps the
  proposals it picks itself (greedy, sampled, under a grammar: see ``_verify``) plus its next
  token. Synthetic-data answers copy much of their passage (extractive answers, cloze sentences,
  rephrases), so a step often yields several tokens for one pass over the cache. A step speculates
  only when its proposals are worth the wider forward (see ``_width``).
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

BLOCK = 16  # tokens per block of a shared prefix
FIXED, ROW = 16.0, 1.0  # a forward's cost beside its tokens', in tokens: reading the weights; a row's cache
ATTENTION = "hare_slots"


def slot_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                   **kwargs):
    """SDPA over the slot cache with grouped-query heads kept grouped: the query heads that share a
    key/value head become extra query rows of that head (``[rows, kv_heads, group x width, dim]``),
    so each head's cached keys and values are read once per forward, not once per query head.
    transformers' own SDPA path repeats every key and value head for a query of more than one token
    under a mask (a copy of the whole cache per layer, measured 8x slower for 64 rows of 5 query
    tokens), and SDPA's ``enable_gqa`` reads the cache once per query head (2.55 ms against 1.64 ms
    for 32 rows of one token over 450 columns)."""
    rows, heads, width, dim = query.shape
    kv = key.shape[1]
    group = heads // kv
    if group > 1:
        query = query.reshape(rows, kv, group * width, dim)
        if attention_mask is not None and width > 1:
            attention_mask = attention_mask[:, :, None].expand(-1, -1, group, -1, -1).reshape(
                rows, 1, group * width, attention_mask.shape[-1])
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           scale=scaling)
    return out.reshape(rows, heads, width, dim).transpose(1, 2).contiguous(), None


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
        """Write the forward's new columns of its rows (row ``i`` from its own offset on); return
        those rows' columns ``[0, span)`` (a view: nothing is copied)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        c = self.cache
        if key_states.shape[2] == 1:
            self.keys[c.slots, :, c.cols[:, 0]] = key_states[:, :, 0]
            self.values[c.slots, :, c.cols[:, 0]] = value_states[:, :, 0]
        else:
            self.keys[c.slots[:, None], :, c.cols] = key_states.transpose(1, 2)
            self.values[c.slots[:, None], :, c.cols] = value_states.transpose(1, 2)
        return self.keys[c.lo: c.hi, :, :c.span], self.values[c.lo: c.hi, :, :c.span]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cache.span, 0

    def get_seq_length(self) -> int:
        return self.cache.span

    def get_max_length(self) -> int:
        return self.cache.capacity


class SlotCache(Cache):
    """The KV cache of the rows in flight: ``rows`` slots of ``capacity`` columns, each row from
    column 0. ``begin`` prepares a forward over a contiguous range of rows."""

    def __init__(self, layers: int, rows: int, capacity: int, device="cpu"):
        self.rows, self.capacity, self.device = rows, capacity, device
        self.lo = self.hi = self.span = 0
        self.slots = self.cols = None
        super().__init__(layers=[SlotLayer(self) for _ in range(layers)])

    def begin(self, lo: int, offsets: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next forward: rows ``lo, lo+1, ...``, row ``i`` writing ``width`` columns from
        ``offsets[i]``. Returns the position ids ``[rows, width]`` and the attention mask
        ``[rows, 1, width, span]`` (a query sees its row's columns up to its own)."""
        need = max(offsets) + width
        if need > self.capacity:
            self.grow(max(need, self.capacity + self.capacity // 2))
        self.lo, self.hi, self.span = lo, lo + len(offsets), need
        self.slots = torch.arange(lo, self.hi, device=self.device)
        self.cols = torch.tensor(offsets, device=self.device)[:, None] + torch.arange(width, device=self.device)
        mask = torch.arange(need, device=self.device)[None, None, :] <= self.cols[:, :, None]
        return self.cols, mask[:, None]

    def grow(self, capacity: int) -> None:
        """More columns for every row (a copy of the buffers)."""
        for layer in self.layers:
            if layer.is_initialized:
                for name in ("keys", "values"):
                    old = getattr(layer, name)
                    new = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
                    new[:, :, :old.shape[2]] = old
                    setattr(layer, name, new)
        self.capacity = capacity

    def copy(self, src: int, dst: int, width: int) -> None:
        """Row ``dst``'s columns ``[0, width)`` become row ``src``'s."""
        if src == dst or width <= 0:
            return
        for layer in self.layers:
            if layer.is_initialized:
                layer.keys[dst, :, :width] = layer.keys[src, :, :width]
                layer.values[dst, :, :width] = layer.values[src, :, :width]


@dataclass
class Job:
    """One request to the engine: prompt token ids and how to decode it."""

    ids: list[int]
    max_tokens: int
    stop: tuple[str, ...] = ()
    schema: str | None = None
    seed: int = 0
    tag: Any = None
    frequency_penalty: float = 0.0  # OpenAI's penalties on the tokens the answer holds (``_penalize``)
    presence_penalty: float = 0.0


@dataclass
class _Row:
    job: Job
    length: int = 0  # columns of the cache that hold this row's keys and values
    last: int | None = None  # the latest token, not yet in the cache
    tokens: list[int] = field(default_factory=list)
    generator: Any = None
    matcher: Any = None
    t0: float = 0.0
    finish: str | None = None
    counts: dict[int, int] | None = None  # token -> times generated, for rows with penalties
    seen: dict = field(default_factory=dict)  # n-gram -> where its latest earlier occurrence ends
    context: list[int] = field(default_factory=list)  # prompt and answer so far

    def extend(self, token: int) -> None:
        """Append a token to the context and index the n-grams that end before it."""
        ctx = self.context
        ctx.append(token)
        end = len(ctx) - 1
        for n in (2, 3):
            if end >= n:
                self.seen[tuple(ctx[end - n: end])] = end


@dataclass
class Answer:
    """What the engine gives back for a job: the completion's token ids (without the end token)."""

    job: Job
    tokens: list[int]
    finish_reason: str
    seconds: float


@dataclass
class Stats:
    """What an engine run did: forwards, tokens prefilled and reused, proposals made and kept."""

    prefill_forwards: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    steps: int = 0
    proposed: int = 0
    accepted: int = 0


class Engine:
    """Generates for many jobs with up to ``rows`` in flight (see the module docstring).

    ``temperature`` 0 is greedy; otherwise each row samples from its own ``torch.Generator``
    seeded by its job's ``seed``, after temperature, top-k and top-p as transformers applies them.
    ``refill``: admit waiting jobs once at least this many rows are free (default: an eighth of
    ``rows``), so prompts are prefilled several at a time; ``prefill_tokens``: the most tokens
    (padding included) of one prefill forward; ``speculate``: the most proposed tokens a row checks
    in one step (0: none); ``share_prefixes``: reuse the cached keys and values of common
    prompt prefixes."""

    def __init__(self, model, tok, rows: int = 64, refill: int | None = None, prefill_tokens: int = 2048,
                 speculate: int = 8, share_prefixes: bool = True):
        self.model, self.tok = model, tok
        self.rows = max(1, rows)
        self.refill = refill or max(1, self.rows // 8)
        self.prefill_tokens = prefill_tokens
        self.speculate = speculate
        self.share_prefixes = share_prefixes
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tok.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.device = next(model.parameters()).device
        self.decoder, self.head = model.get_decoder(), model.get_output_embeddings()
        self.grammars = None
        self.stats = Stats()

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
        longest = max(len(j.ids) for j in jobs) + max(j.max_tokens for j in jobs) + self.speculate + 1
        cache = SlotCache(self.model.config.num_hidden_layers, min(self.rows, len(jobs)), longest + 64, self.device)
        live: list[_Row] = []
        with torch.inference_mode(), _attention(self.model):
            while waiting or live:
                free = cache.rows - len(live)
                if waiting and (free >= min(self.refill, len(waiting)) or not live):
                    self._admit([waiting.pop() for _ in range(min(free, len(waiting)))], cache, live, warpers,
                                temperature)
                    self._retire(cache, live, done)
                    if not live:
                        continue
                self._step(cache, live, warpers, temperature)
                self._retire(cache, live, done)

    def _forward(self, cache: SlotCache, lo: int, offsets: list[int], ids: list[list[int]],
                 keep: list[list[int]]) -> torch.Tensor:
        """One forward of rows ``lo, lo+1, ...``: row ``i`` feeds ``ids[i]`` (right-padded) from column
        ``offsets[i]``; returns the logits of the positions in ``keep[i]``, row after row."""
        width = max(len(x) for x in ids)
        positions, mask = cache.begin(lo, offsets, width)
        inputs = torch.tensor([x + [self.pad] * (width - len(x)) for x in ids], dtype=torch.long, device=self.device)
        hidden = self.decoder(input_ids=inputs, attention_mask=mask, position_ids=positions, cache=cache,
                              use_cache=True).last_hidden_state
        rows = torch.tensor([i for i, k in enumerate(keep) for _ in k], device=self.device)
        cols = torch.tensor([c for k in keep for c in k], device=self.device)
        return self.head(hidden[rows, cols]).float()

    def _admit(self, batch: list[Job], cache: SlotCache, live: list[_Row], warpers, temperature: float) -> None:
        """Prefill ``batch`` into the rows after the rows in flight: jobs of similar length together,
        each from the longest cached prefix it shares with a row already in the cache."""
        blocks: dict[int, int] = {}  # chained hash of a prompt's first k blocks -> a row holding them
        for i, r in enumerate(live):
            self._index(blocks, r.job.ids, i)
        t0 = time.perf_counter()
        pending = list(batch)  # sorted by prompt length, shortest first
        while pending:
            group: list[tuple[Job, int]] = []
            width = tokens = 0  # the group's widest rest of a prompt, and its rests in all
            for j in pending:
                reuse, donor = self._prefix(blocks, live, j.ids)
                rest = len(j.ids) - reuse
                area = max(width, rest) * (len(group) + 1)  # tokens of the forward, padding included
                if group and (area > self.prefill_tokens or area > 1.25 * (tokens + rest)):
                    break
                width, tokens = max(width, rest), tokens + rest
                group.append((j, reuse))
                if reuse:
                    cache.copy(donor, len(live) + len(group) - 1, reuse)
            pending = pending[len(group):]
            n = len(live)
            logits = self._forward(cache, n, [p for _, p in group], [j.ids[p:] for j, p in group],
                                   [[len(j.ids) - p - 1] for j, p in group])
            self.stats.prefill_forwards += 1
            for j, p in group:
                self.stats.prompt_tokens += len(j.ids)
                self.stats.reused_tokens += p
                row = _Row(job=j, length=len(j.ids), t0=t0)
                if self.speculate:  # the n-grams proposals are looked up in
                    for t in j.ids:
                        row.extend(t)
                if temperature > 0:
                    row.generator = torch.Generator(self.device).manual_seed(j.seed)
                if j.schema is not None:
                    row.matcher = self.grammars.matcher(j.schema)
                if j.frequency_penalty or j.presence_penalty:
                    row.counts = {}
                self._index(blocks, j.ids, len(live))
                live.append(row)
            self._pick(logits, live[n:], warpers, temperature)

    def _index(self, blocks: dict, ids: list[int], row: int) -> None:
        if not self.share_prefixes:
            return
        h = 0
        for k in range(BLOCK, len(ids) + 1, BLOCK):
            h = hash((h, tuple(ids[k - BLOCK: k])))
            blocks[h] = row

    def _prefix(self, blocks: dict, live: list[_Row], ids: list[int]) -> tuple[int, int]:
        """The longest prefix of ``ids`` (in whole blocks, then token by token) held by a row in the
        cache, and that row; at least one token is left to prefill."""
        if not self.share_prefixes:
            return 0, -1
        h, donor, k = 0, -1, 0
        while k + BLOCK <= len(ids):
            nxt = hash((h, tuple(ids[k: k + BLOCK])))
            if nxt not in blocks:
                break
            h, donor, k = nxt, blocks[nxt], k + BLOCK
        if donor < 0:
            return 0, -1
        other = live[donor].job.ids
        while k < min(len(ids), len(other)) and ids[k] == other[k]:
            k += 1
        return min(k, len(ids) - 1), donor

    def _draft(self, r: _Row) -> list[int]:
        """Prompt lookup: the tokens that followed the latest earlier occurrence of the row's last
        3 (else 2) tokens, up to ``speculate`` and the tokens left to the row."""
        ctx = r.context
        room = min(self.speculate, r.job.max_tokens - len(r.tokens) - 1)
        if room <= 0:
            return []
        for n in (3, 2):
            at = r.seen.get(tuple(ctx[-n:])) if len(ctx) > n else None
            if at is not None:
                return ctx[at: at + room]
        return []

    def _width(self, n: int, drafts: list[list[int]]) -> int:
        """How many proposed tokens a row may check this step: the width with the most expected tokens
        per unit of work. A forward of ``n`` rows, each ``w`` tokens wider, costs about
        ``FIXED + n * (ROW + 1 + w)`` token-units (on CPU: reading the weights once, each row's cache,
        each position's compute); a proposal is kept ``keep`` of the time (the run's rate so far,
        from 0.5)."""
        s = self.stats
        keep = (s.accepted + 4) / (s.proposed + 8)
        best, width = n / (FIXED + n * (ROW + 1)), 0
        for w in range(1, max(len(d) for d in drafts) + 1):
            value = (n + keep * sum(min(len(d), w) for d in drafts)) / (FIXED + n * (ROW + 1 + w))
            if value > best:
                best, width = value, w
        return width

    def _step(self, cache: SlotCache, live: list[_Row], warpers, temperature: float) -> None:
        """One decode step of the rows in flight; rows with proposals check them in the same forward."""
        drafts = [self._draft(r) for r in live] if self.speculate else [[] for _ in live]
        width = self._width(len(live), drafts) if any(drafts) else 0
        drafts = [d[:width] for d in drafts]
        logits = self._forward(cache, 0, [r.length for r in live], [[r.last] + d for r, d in zip(live, drafts)],
                               [list(range(1 + len(d))) for d in drafts])
        self.stats.steps += 1
        starts, at = [], 0
        for d in drafts:
            starts.append(at)
            at += 1 + len(d)
        plain = [i for i, d in enumerate(drafts) if not d]
        for i in plain:
            live[i].length += 1
        if plain:  # rows without proposals: one token each, picked together
            rows = logits if not width else logits[torch.tensor([starts[i] for i in plain], device=logits.device)]
            self._pick(rows, [live[i] for i in plain], warpers, temperature)
        for i, d in enumerate(drafts):
            if d:
                self._verify(live[i], logits[starts[i]: starts[i] + 1 + len(d)], d, warpers, temperature)

    def _verify(self, r: _Row, scores: torch.Tensor, draft: list[int], warpers, temperature: float) -> None:
        """Keep the proposed tokens the row draws itself, then the first token it draws otherwise.

        Position ``j`` of ``scores`` scores the token after the first ``j`` proposals, under the
        grammar state those proposals lead to. At each position the row picks its token exactly as
        without proposals (greedy: the argmax; sampled: one draw from its own generator), and the
        proposals stop at the first that differs. So an answer is the same with or without
        speculation, whatever rows run beside it, and a proposal is kept with the probability the
        model gives it (the acceptance rate of speculative sampling, Leviathan et al. 2023)."""
        r.length += 1  # the row's last token enters the cache
        kept = 0
        for j in range(len(draft) + 1):
            s = scores[j: j + 1]
            if r.counts:  # the counts hold the proposals kept so far, as they would without proposals
                s = self._penalize(s, [r])
            if r.matcher is not None:
                s = self.grammars.mask(s, [r.matcher])
            if temperature > 0:
                for warp in warpers:
                    s = warp(None, s)
                t = int(torch.multinomial(torch.softmax(s, dim=-1)[0], 1, generator=r.generator))
            else:
                t = int(s[0].argmax())
            self._emit(r, t)
            if r.finish is not None or j == len(draft) or t != draft[j]:
                break
            kept += 1
            r.length += 1  # a kept proposal's keys and values are already in the cache
        self.stats.proposed += len(draft)
        self.stats.accepted += kept

    def _pick(self, scores, rows: list[_Row], warpers, temperature: float) -> None:
        """Each row's next token from its logits: penalties, grammar mask, then greedy or its own draw."""
        if any(r.counts for r in rows):
            scores = self._penalize(scores, rows)
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
            self._emit(r, t)

    def _penalize(self, scores: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """OpenAI's penalties (vLLM's too): row ``i``'s logit of each token it generated ``c`` times
        lowered by ``c * frequency_penalty + presence_penalty``."""
        scores = scores.clone()
        for i, r in enumerate(rows):
            if r.counts:
                ids = torch.tensor(list(r.counts), device=scores.device)
                c = torch.tensor(list(r.counts.values()), dtype=scores.dtype, device=scores.device)
                scores[i, ids] -= r.job.frequency_penalty * c + r.job.presence_penalty
        return scores

    def _emit(self, r: _Row, t: int) -> None:
        """Give row ``r`` its next token ``t``; note why it ends, if it does."""
        if t in self.eos:
            r.finish = "stop"
            return
        r.tokens.append(t)
        r.last = t
        if r.counts is not None:
            r.counts[t] = r.counts.get(t, 0) + 1
        if self.speculate:
            r.extend(t)
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
                cache.copy(last, i, live[last].length)
                live[i] = live[last]
            live.pop()


class _attention:
    """Run the model's attention through ``slot_attention`` for the engine's forwards, and put its
    own back after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        from transformers import AttentionInterface

        AttentionInterface.register(ATTENTION, slot_attention)
        self.before = self.model.config._attn_implementation
        self.model.set_attn_implementation(ATTENTION)

    def __exit__(self, *exc):
        self.model.set_attn_implementation(self.before)
        return False
