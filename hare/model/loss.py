"""Next-token loss straight from the final hidden states, without the full logits.

``linear_cross_entropy(h, w, y)`` is ``F.cross_entropy((h @ w.T).float(), y)`` computed a chunk of
tokens at a time: each chunk's logits become its softmax in place, and the gradients of ``h`` and
``w`` are taken from it there and then, so the (tokens x vocabulary) logits and their gradient never
exist whole: the loss takes one buffer of a chunk's logits, where ``F.cross_entropy`` on the full
logits takes four full-size ones (the logits, their log-softmax, the zeroed gradient of
``nll_loss`` and the gradient of the logits; 32 MB each for 2,048 tokens x 4,096 words, 4 GB each
for a GPU micro-batch of 16 x 2,048 tokens at a 32,000-word vocabulary). Each chunk's softmax is
taken with one exponential per logit, in place. The idea of Liger Kernel's
``FusedLinearCrossEntropy`` and of litgpt's chunked cross-entropy, in plain PyTorch.
"""

from __future__ import annotations

import torch

# Logits per chunk on a CPU: 2**23 float32 values (32 MB; 2,048 tokens at a 4,096-word vocabulary,
# 262 at 32,000): it bounds the loss's memory at any vocabulary and batch. Smaller chunks measured
# slower (tiny preset, a step of 2 x 2,048 tokens: 5 % at 256 tokens a chunk, 12 % at 64).
CPU_CHUNK_ELEMENTS = 2 ** 23


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ w.T`` against ``y``; the gradients are computed in the forward pass."""

    @staticmethod
    def forward(ctx, h, w, y, compute_dtype, chunk):
        n = h.shape[0]
        hc, wc = h.to(compute_dtype), w.to(compute_dtype)
        grad_h = torch.empty(h.shape, dtype=h.dtype, device=h.device) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if ctx.needs_input_grad[1] else None
        losses = torch.empty(n, dtype=torch.float32, device=h.device)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            t = y[s:e, None]
            logits = (hc[s:e] @ wc.T).float()
            target = logits.gather(1, t)
            top = logits.amax(1, keepdim=True)
            p = logits.sub_(top).exp_()  # max-shifted, as log_softmax; one exp per logit (log_softmax, then exp: two)
            z = p.sum(1, keepdim=True)
            losses[s:e] = (z.log() + top - target).squeeze(1)  # log-sum-exp minus the target's logit
            if grad_h is None and grad_w is None:
                continue
            p.mul_(z.reciprocal_())
            p.scatter_(1, t, p.gather(1, t) - 1)  # d(loss_i)/d(logits_i) = softmax_i - onehot(y_i)
            g = p.to(compute_dtype)
            if grad_h is not None and grad_h.dtype == compute_dtype:
                torch.mm(g, wc, out=grad_h[s:e])
            elif grad_h is not None:
                grad_h[s:e] = g @ wc
            if grad_w is not None:
                if compute_dtype == torch.float32:
                    grad_w.addmm_(g.T, hc[s:e])
                else:
                    grad_w += (g.T @ hc[s:e]).float()
        ctx.n = n
        ctx.save_for_backward(grad_h, grad_w)
        ctx.w_dtype = w.dtype
        return losses.mean()

    @staticmethod
    def backward(ctx, grad_out):
        return (*scaled_grads(ctx, grad_out), None, None, None)


def default_chunk(h: torch.Tensor, w: torch.Tensor) -> int:
    """Tokens per chunk: ``CPU_CHUNK_ELEMENTS`` logits on a CPU; on a GPU as Liger Kernel chooses it,
    a chunk's logits about the size of all the hidden states (vocabulary / hidden size chunks)."""
    (v, d), n = w.shape, h.numel() // h.shape[-1]
    return max(1, CPU_CHUNK_ELEMENTS // v if h.device.type == "cpu" else -(-n // -(-v // d)))


def scaled_grads(ctx, grad_out):
    """The backward of a loss whose gradients the forward pass took (``grad_h``, ``grad_w`` saved,
    for the mean over ``ctx.n`` tokens): those gradients times ``grad_out``."""
    grad_h, grad_w = ctx.saved_tensors
    scale = grad_out / ctx.n
    gh = grad_h * scale.to(grad_h.dtype) if grad_h is not None else None
    gw = (grad_w * scale).to(ctx.w_dtype) if grad_w is not None else None
    return gh, gw


def linear_cross_entropy(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``F.cross_entropy((h @ w.T).float(), y)`` (mean over tokens) for ``h`` (..., H), ``w`` (V, H), ``y`` (...).

    Every position has a target (no ignore index). Under autocast the products run in its dtype, as
    the model's LM head would, and the softmax in float32. ``chunk``: tokens per chunk; by default
    ``CPU_CHUNK_ELEMENTS`` logits on a CPU, and on a GPU as Liger Kernel chooses it, a chunk's logits
    about the size of all the hidden states (vocabulary / hidden size chunks).
    """
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    chunk = chunk or default_chunk(h, w)
    with torch.autocast(device, enabled=False):
        return LinearCrossEntropy.apply(h.reshape(-1, h.shape[-1]), w, y.reshape(-1), dtype, chunk)


@torch.no_grad()
def linear_log_probs(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, chunk: int | None = None,
                     softcap: float | None = None, bias: torch.Tensor | None = None,
                     scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``log_softmax(h @ w.T)`` at the targets ``y`` and whether each target is the argmax, for ``h``
    (N, H), ``w`` (V, H), ``y`` (N), a chunk of rows at a time (float32 softmax), so that the (N x V)
    logits never exist whole. What some models' heads add, in the order their forwards apply it:
    ``bias`` (V) (Phi's head), ``scale`` (Cohere's ``logit_scale``; Granite's ``1 / logits_scaling``)
    and ``softcap`` (Gemma's final-logit soft-capping, ``c * tanh(logits / c)``)."""
    chunk = chunk or default_chunk(h, w)
    lp = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
    greedy = torch.empty(h.shape[0], dtype=torch.bool, device=h.device)
    for s in range(0, h.shape[0], chunk):
        logits = h[s:s + chunk] @ w.T if bias is None else torch.addmm(bias, h[s:s + chunk], w.T)
        logits = logits.float()
        if scale is not None and scale != 1:
            logits = logits * scale
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        t = y[s:s + chunk, None]
        # log_softmax, not logit - logsumexp: the latter drifts by ~1e-5 a token from the model's own
        # log-softmax (2e-3 over a 300-token window of SmolLM2)
        lp[s:s + chunk] = logits.log_softmax(1).gather(1, t).squeeze(1)
        greedy[s:s + chunk] = logits.argmax(1) == y[s:s + chunk]
    return lp, greedy


class LogitHead:
    """The LM head as the model's forward applies it: ``scale * (h @ weight.T + bias)``, then
    soft-capped. ``of`` reads it from a model; None when the head is not a linear layer."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale: float | None, softcap: float | None):
        self.weight, self.bias, self.scale, self.softcap = weight, bias, scale, softcap

    @classmethod
    def of(cls, model) -> "LogitHead | None":
        head = model.get_output_embeddings()
        if not isinstance(head, torch.nn.Linear):
            return None
        cfg = model.config.get_text_config(decoder=True)
        scale = 1.0
        if getattr(cfg, "logits_scaling", None):  # Granite: logits / logits_scaling
            scale /= float(cfg.logits_scaling)
        logit_scale = getattr(model, "logit_scale", getattr(cfg, "logit_scale", None))  # Cohere: logits * logit_scale
        if isinstance(logit_scale, (int, float)) and not isinstance(logit_scale, bool):
            scale *= float(logit_scale)
        return cls(head.weight, head.bias, scale if scale != 1.0 else None,
                   getattr(cfg, "final_logit_softcapping", None))

    def describe(self) -> str:
        parts = []
        if self.bias is not None:
            parts.append("bias")
        if self.scale is not None:
            parts.append(f"scale {self.scale:g}")
        if self.softcap:
            parts.append(f"soft-capping {self.softcap:g}")
        return "linear head" + (f" with {', '.join(parts)}" if parts else "")

    def log_probs(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return linear_log_probs(h, self.weight, y, softcap=self.softcap, bias=self.bias, scale=self.scale)
