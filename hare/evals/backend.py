"""hare's language model for lm-evaluation-harness: lm-eval's Hugging Face model with a log-likelihood
that scales to real vocabularies and long few-shot prompts.

``HareLM`` is lm-eval's ``HFLM`` (its tokenization of context and continuation, its BOS/EOS
handling, truncation, rolling windows and generation are kept as they are) with
``_loglikelihood_tokens`` replaced, so every result is the one ``HFLM`` gives (per-request
log-likelihoods within float32 rounding; ``tests/evals/test_backend.py`` compares them). Three
changes make it scale:

- **log-probabilities only where they are read**: the model's final hidden states go through the
  LM head a chunk of continuation positions at a time (``hare.model.loss.linear_log_probs``);
  ``HFLM`` takes the log-softmax of the full logits of every position of the batch (16 prompts of
  1,500 tokens at a 49,152-word vocabulary: 4.7 GB a copy);
- **one shared context per item**: the requests whose context tokens are the same (the answer
  choices of one question) are grouped; the context runs once and its key/value cache scores every
  choice in one batch. ``HFLM`` shares a context only when every choice is one token (MMLU's
  letters) and runs ARC's 25-shot prompt again for each of its four choices;
- **one shared prefix per run of contexts**: the contexts are sorted by their tokens, and runs of
  neighbours that share a prefix of ``min_shared_prefix`` tokens or more (MMLU's five dev-set shots,
  the same for every question of a subject) are found from the tokens alone (``shared_prefixes``);
  the prefix runs once and its key/value cache, expanded along the batch, scores the rest of each
  context (vLLM's automatic prefix caching, across requests);
- **batches sized by tokens**: contexts are taken longest first while a batch holds at most
  ``max_batch_tokens`` tokens (rows x padded length, the cached context of each choice counted), so
  memory is bounded at any ``--batch-size``. ``max_batch_tokens=None`` picks it from the free memory.

The batch size given to ``HFLM`` only sizes generation (GSM8K), where transformers computes the
logits of the last position only.

The log-probabilities come from the decoder's hidden states and the LM head, with what the model's
own forward adds to the head (``LogitHead``: a bias, Granite's ``logits_scaling``, Cohere's
``logit_scale``, Gemma's soft-capping). Before any request, the backend scores a few probe requests
both ways, its own and ``HFLM``'s; a model whose head or cache it does not reproduce (another
family's extra step on the logits, a recurrent cache) is scored by ``HFLM``'s path, and
``HareLM.path`` says which ran and why.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np
import torch
from lm_eval.models.huggingface import HFLM

from hare.core.progress import Progress
from hare.model.loss import LogitHead

log = logging.getLogger("hare.evals")

BACKENDS = ("hare", "hf", "vllm")
DEFAULT_MAX_BATCH_TOKENS = 8192  # the 4 choices of a 25-shot ARC item in one pass; SmolLM2-135M peaks at 1.9 GB
AUTO_MEMORY_FRACTION = 0.25  # share of the free memory an automatic token budget may use
AUTO_MAX_BATCH_TOKENS = 65536
MIN_SHARED_PREFIX = 32  # shorter shared prefixes (a task's description) are not worth a pass of their own


def common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if differ.size else n


def shared_prefixes(contexts, min_length: int) -> list[tuple[int, list[tuple[int, ...]]]]:
    """The distinct token tuples ``contexts`` split into runs that share a prefix: ``(prefix length,
    contexts)``, the prefix at least ``min_length`` tokens and shorter than each of its contexts (so
    that each has a token after it), then ``(0, the rest)`` where the rest is not empty.

    Sorted contexts that share a prefix are neighbours, and a run's prefix is the shortest prefix its
    neighbours share. A neighbour joins the run while that saves tokens: with ``n`` contexts and a
    prefix of ``L`` tokens, one sharing ``l`` tokens joins when ``n * l >= (n - 1) * L`` (the prefix
    shrinks to ``l`` for all of them), else it starts a run of its own."""
    keys = sorted(contexts)
    runs: list[tuple[int, list[tuple[int, ...]]]] = []
    rest: list[tuple[int, ...]] = []
    run, length = keys[:1], 0

    def close() -> None:
        if len(run) > 1:
            runs.append((length, run))
        else:
            rest.extend(run)

    for prev, key in zip(keys, keys[1:]):
        shared = min(common_prefix(prev, key), len(prev) - 1, len(key) - 1)
        if shared >= min_length and len(run) * shared >= (len(run) - 1) * length:
            run.append(key)
            length = shared if len(run) == 2 else min(length, shared)
        else:
            close()
            run, length = [key], 0
    if run:
        close()
    return runs + ([(0, rest)] if rest else [])


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors on ``device`` (CUDA: the allocator's view; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def bytes_per_token(config, max_length: int, dtype_bytes: int = 4) -> int:
    """Memory one token of a batch needs at most: its key/value cache in every layer, the widest
    activations of a layer, and one row of attention scores per head (CPU attention materialises them)."""
    c = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    cache = 2 * c.num_hidden_layers * kv_heads * head_dim
    acts = 4 * c.hidden_size + 3 * getattr(c, "intermediate_size", 4 * c.hidden_size)
    return dtype_bytes * (cache + acts + heads * max_length)


def auto_max_batch_tokens(config, max_length: int, device: torch.device) -> int:
    """A token budget that takes ``AUTO_MEMORY_FRACTION`` of the free memory."""
    budget = int(AUTO_MEMORY_FRACTION * available_memory(device)) // bytes_per_token(config, max_length)
    return max(max_length + 1, min(budget, AUTO_MAX_BATCH_TOKENS))


class HareLM(HFLM):
    """``HFLM`` with bounded-memory, shared-context log-likelihoods (see the module docstring).

    ``max_batch_tokens``: the most tokens one forward pass holds (``None``: from the free memory); a
    batch holds one context, or one continuation with its context, at least.
    ``min_shared_prefix``: the fewest tokens a prefix shared across contexts needs to run once for all.
    Every other argument is ``HFLM``'s.
    """

    def __init__(self, *args, max_batch_tokens: int | None = None, min_shared_prefix: int = MIN_SHARED_PREFIX,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.min_shared_prefix = min_shared_prefix
        self.max_batch_tokens = max_batch_tokens or auto_max_batch_tokens(self.model.config, self.max_length,
                                                                          self.device)
        self.head = LogitHead.of(self.model)
        self.decoder = getattr(self.model, self.model.base_model_prefix, None)
        cfg = self.model.config.get_text_config(decoder=True)
        # A sliding window masks by cache position: contexts of different lengths padded into one
        # batch would shift the window, so such a model batches contexts of one length only.
        window = getattr(cfg, "sliding_window", None)
        self.same_length_batches = bool(window) and window < self.max_length
        problem = self._probe()
        #: which log-likelihood path runs: "hare" or "hflm", and why (``describe``)
        self.path = "hflm" if problem else "hare"
        self.path_reason = problem or (self.head.describe() if self.head else "")
        if problem:
            log.warning("hare backend: %s; its log-likelihoods come from lm-eval's HFLM path (the same results, "
                        "without shared contexts and bounded memory)", problem)
        else:
            log.info("hare backend: %s, at most %d tokens a batch", self.path_reason, self.max_batch_tokens)

    def describe(self) -> str:
        """Which path scored the log-likelihoods, for the results."""
        if self.path == "hare":
            return f"hare ({self.path_reason})"
        return f"hare, with lm-eval's HFLM log-likelihoods ({self.path_reason})"

    def _probe(self) -> str | None:
        """Why this backend's own path would not give ``HFLM``'s log-likelihoods for this model (None:
        it does): probe requests, a shared context with two continuations, a lone window sharing a
        prefix with it and one sharing none, scored both ways."""
        arch = type(self.model).__name__
        if self.head is None:
            return f"{arch}'s output layer is not a linear head"
        if self.decoder is None:
            return f"{arch} has no decoder at '{self.model.base_model_prefix}'"
        vocab = self.head.weight.shape[0]
        ids = [(7 + 13 * i) % vocab for i in range(16)]
        reqs = [((None, None), ids[:8], ids[8:11]), ((None, None), ids[:8], ids[11:13]),
                ((None, None), ids[:6] + ids[12:14], ids[8:10]), ((None, None), ids[2:6], ids[6:8])]
        try:
            mine = self._hare_loglikelihoods(reqs, disable_tqdm=True, min_prefix=4)
        except Exception as e:  # noqa: BLE001 - a model this path cannot run is scored by HFLM's
            return f"{arch} cannot run hare's scoring path ({type(e).__name__}: {e})"[:300]
        ref = super()._loglikelihood_tokens(reqs, disable_tqdm=True)
        tol = 1e-3 if self.head.weight.dtype == torch.float32 else 5e-2
        worst = max(abs(a[0] - b[0]) / max(1.0, abs(b[0])) for a, b in zip(mine, ref))
        if not worst <= tol:
            return (f"{arch}'s forward does more to its logits than hare's {self.head.describe()} "
                    f"(probe log-likelihoods differ by {worst:.2g})")
        return None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """(log-likelihood, is_greedy) of each ``((context, continuation), context_enc, continuation_enc)``,
        as ``HFLM._loglikelihood_tokens`` computes them, in the order given."""
        if self.path == "hflm":
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        return self._hare_loglikelihoods(requests, disable_tqdm)

    def _hare_loglikelihoods(self, requests, disable_tqdm: bool = False, min_prefix: int | None = None):
        """``_loglikelihood_tokens`` by this backend's own path (module docstring); ``min_prefix``: the
        fewest tokens a shared prefix needs (default ``min_shared_prefix``)."""
        # The tokens a continuation sees: HFLM's input window (context + continuation, last
        # max_length + 1 tokens, last one dropped), the continuation's own tokens taken off.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, ctx, cont) in enumerate(requests):
            assert ctx and cont and len(cont) <= self.max_length
            seq = (ctx + cont)[-(self.max_length + 1):]
            groups.setdefault(tuple(seq[:-len(cont)]), []).append(i)
        # A group of one request (a rolling window, a question asked once) has nothing to share: its
        # first pass takes the whole window, as HFLM's does.
        first = {p: (p + tuple(requests[g[0]][2][:-1]) if len(g) == 1 else p) for p, g in groups.items()}
        res: list[tuple[float, bool] | None] = [None] * len(requests)
        bar = Progress(total=len(requests), desc="lm-eval: loglikelihood requests", unit="request",
                       disable=disable_tqdm or self.rank != 0)
        for skip, keys in shared_prefixes(groups, self.min_shared_prefix if min_prefix is None else min_prefix):
            # the run's shared prefix, once: its cache is where every context of the run starts
            prefix = self._prefix_cache(keys[0][:skip]) if skip else None
            # longest first: padding stays small, and a budget too small shows at once
            batch: list[tuple[int, ...]] = []
            for key in sorted(keys, key=lambda p: (-len(first[p]), first[p])):
                n = len(first[key])
                if batch and ((len(batch) + 1) * len(first[batch[0]]) > self.max_batch_tokens
                              or (self.same_length_batches and n != len(first[batch[0]]))):
                    self._score_batch(batch, first, groups, requests, res, bar, skip, prefix)
                    batch = []
                batch.append(key)
            if batch:
                self._score_batch(batch, first, groups, requests, res, bar, skip, prefix)
        bar.close()
        return res

    @torch.no_grad()
    def _prefix_cache(self, prefix: tuple[int, ...]):
        """The key/value cache of one pass over ``prefix`` (a batch of one row)."""
        return self.decoder(input_ids=torch.tensor([prefix], device=self.device), use_cache=True).cache

    def _expand(self, cache, rows: int):
        """``cache`` (one row) as ``rows`` rows, ``cache`` itself kept: the layers' tensors are
        expanded views, which the next pass's concatenation copies once."""
        own = copy.copy(cache)
        own.layers = [copy.copy(layer) for layer in cache.layers]
        for layer in own.layers:
            if layer.is_initialized:
                layer.keys = layer.keys.expand(rows, *layer.keys.shape[1:])
                layer.values = layer.values.expand(rows, *layer.values.shape[1:])
        return own

    @torch.no_grad()
    def _score_batch(self, prefixes, first, groups, requests, res, bar, skip: int = 0, past=None) -> None:
        """Score every request of the groups ``prefixes``: one pass over their ``first`` inputs (the
        shared contexts; a lone request's whole window), then the shared contexts' continuations
        from the key/value cache. ``past``: the cache of the ``skip`` tokens every input starts with
        (the pass takes the tokens after them)."""
        dev = self.device
        lens = [len(p) for p in prefixes]
        width = len(first[prefixes[0]])
        ids = torch.zeros(len(prefixes), width - skip, dtype=torch.long)
        for r, p in enumerate(prefixes):
            ids[r, :len(first[p]) - skip] = torch.tensor(first[p][skip:])
        shared = [g for g, p in enumerate(prefixes) if len(groups[p]) > 1]
        # right padding needs no mask: a causal model's real positions never see the padding after them
        if past is None:
            out = self.decoder(input_ids=ids.to(dev), use_cache=bool(shared))
        else:  # every row starts at position ``skip``, after the shared prefix
            out = self.decoder(input_ids=ids.to(dev), cache=self._expand(past, len(prefixes)), use_cache=True)
        cache, hidden = out.cache, out.last_hidden_state
        del out

        rows = [(g, i) for g, p in enumerate(prefixes) for i in groups[p]]
        # the hidden states that predict each continuation: from the first pass (a shared context's
        # last position predicts its continuations' first tokens; a lone window, all its tokens) ...
        states: dict[int, list[torch.Tensor]] = {}
        for g, i in rows:
            n = len(requests[i][2]) if len(groups[prefixes[g]]) == 1 else 1
            at = lens[g] - 1 - skip  # the context's last position in this pass
            states[i] = [hidden[g, at:at + n].clone()]  # cloned: the batch's states are freed
        del hidden
        # ... and for the shared contexts' continuations of two tokens or more, from the cache
        multi = [(g, i) for g, i in rows if len(groups[prefixes[g]]) > 1 and len(requests[i][2]) > 1]
        start = 0
        while start < len(multi):
            span, end = len(requests[multi[start][1]][2]) - 1, start + 1  # a batch holds one row at least
            while end < len(multi):
                t = max(span, len(requests[multi[end][1]][2]) - 1)
                if (end - start + 1) * (width + t) > self.max_batch_tokens:
                    break
                span, end = t, end + 1
            self._score_continuations(multi[start:end], span, lens, width, cache, requests, states)
            start = end
        del cache

        h, y, spans = [], [], []
        for _, i in rows:
            cont = requests[i][2]
            h.extend(states[i])
            y.extend(cont)
            spans.append((i, len(cont)))
        lp, greedy = self.head.log_probs(torch.cat(h), torch.tensor(y, device=dev))
        pos = 0
        for i, n in spans:
            answer = (float(lp[pos:pos + n].sum()), bool(greedy[pos:pos + n].all()))
            pos += n
            res[i] = answer
            key = requests[i][0]
            if key is not None:  # rolling windows have no key; loglikelihood_rolling caches their sum
                self.cache_hook.add_partial("loglikelihood", key, answer)
        bar.update(len(rows))

    def _score_continuations(self, chunk, span, lens, width, cache, requests, states) -> None:
        """Hidden states of continuation tokens 1.. for the requests ``chunk`` ((group, request)), each
        row seeing its group's cached context; ``span``: the longest continuation minus one."""
        dev = self.device
        n = len(chunk)
        ids = torch.zeros(n, span, dtype=torch.long)
        for r, (_, i) in enumerate(chunk):
            cont = requests[i][2][:-1]
            ids[r, :len(cont)] = torch.tensor(cont)
        groups = torch.tensor([g for g, _ in chunk], device=dev)
        own = copy.copy(cache)  # the rows' cache: the layers' tensors selected, the groups' cache kept
        own.layers = [copy.copy(layer) for layer in cache.layers]
        own.batch_select_indices(groups)
        row_lens = torch.tensor([lens[g] for g, _ in chunk], device=dev)
        kwargs = {}
        # a shorter input's cached row ends in padding: it is masked, and positions count from its end
        if any(lens[g] != width for g, _ in chunk):
            mask = torch.ones(n, width + span, dtype=torch.long, device=dev)
            mask[:, :width] = (torch.arange(width, device=dev)[None] < row_lens[:, None]).long()
            kwargs = {"attention_mask": mask,
                      "position_ids": row_lens[:, None] + torch.arange(span, device=dev)[None]}
        hidden = self.decoder(input_ids=ids.to(dev), cache=own, use_cache=True, **kwargs).last_hidden_state
        for r, (_, i) in enumerate(chunk):
            states[i].append(hidden[r, :len(requests[i][2]) - 1])


def check_backend(backend: str) -> None:
    """Raise ``ValueError`` saying what is missing when ``backend`` cannot run here."""
    import importlib.util

    if backend not in BACKENDS:
        raise ValueError(f"unknown evaluation backend '{backend}'; known: {', '.join(BACKENDS)}")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("the vllm backend needs vLLM and a GPU: pip install 'lm_eval[vllm]' "
                         "(or run on CPU with --backend hare)")


def lm_eval_model(backend: str, model_dir: Path, *, batch_size: int | str, device: str, max_length: int | None,
                  max_batch_tokens: int | None = None):
    """The lm-eval model of ``backend`` on the model folder ``model_dir``: an ``LM`` instance, or, for
    vLLM, the (name, arguments) pair that ``lm_eval.simple_evaluate`` loads."""
    check_backend(backend)
    if backend == "vllm":
        args = {"pretrained": str(model_dir), "dtype": "auto", "gpu_memory_utilization": 0.8}
        if max_length:
            args["max_model_len"] = max_length
        return "vllm", args, batch_size  # "auto": vLLM schedules the batches itself
    kwargs = {"pretrained": str(model_dir), "dtype": "float32" if device == "cpu" else "auto",
              "trust_remote_code": False}
    if max_length:
        kwargs["max_length"] = max_length
    if backend == "hf":
        return "hf", kwargs, batch_size
    if batch_size == "auto":  # generation batches from the same budget: rows of a full context
        lm = HareLM(**kwargs, device=device, batch_size=1, max_batch_tokens=max_batch_tokens)
        lm.batch_size_per_gpu = max(1, lm.max_batch_tokens // lm.max_length)
        return lm, None, lm.batch_size_per_gpu
    lm = HareLM(**kwargs, device=device, batch_size=batch_size,
                max_batch_tokens=max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS)
    return lm, None, batch_size
