"""Knowledge distillation losses: the teacher's next-token distribution as a training signal.

For a position with target ``y``, student logits ``z`` and the teacher's distribution ``p`` at
temperature ``T`` (Hinton et al. 2015; the loss of Gemma 2's and MiniLM's small models)::

    loss = (1 - alpha) * CE(z, y) + alpha * T^2 * KL(p || softmax(z / T))

The teacher's distribution comes in one of two forms:

- **dense**: its full log-probabilities (an online teacher forward, the GPU path);
- **sparse**: its ``k`` most likely tokens and their log-probabilities, computed once and stored
  beside the packed tokens (a CPU cannot run the teacher beside every step, and a study trains many
  students on the same tokens). The mass outside the top ``k``, ``r = 1 - sum(p_topk)``, is one
  bucket, matched against the student's mass outside the same tokens:
  ``KL = sum_topk p_i (log p_i - log q_i) + r (log r - log q_rest)``. With ``k`` the whole
  vocabulary, ``r = 0`` and this is the dense KL exactly.

``linear_distill_loss`` computes it from the student's final hidden states a chunk of tokens at a
time, as ``hare.model.loss.linear_cross_entropy`` does cross-entropy: the (tokens x vocabulary)
logits never exist whole, and each chunk's gradients are taken there and then.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hare.model.loss import default_chunk, scaled_grads

_MASKED = -1e30  # a finite "minus infinity": log-sum-exp of a row masked whole stays finite, so do its gradients


def sparse_kl(student_logits: torch.Tensor, idx: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """Per row, KL(teacher || student) with the teacher given by its top-k token ids ``idx`` (N, k)
    and log-probabilities ``teacher_logp`` (N, k), the rest of its mass one bucket; the student by
    its logits (N, V), already divided by the temperature. Float32."""
    ls = torch.log_softmax(student_logits.float(), dim=-1)
    lp = teacher_logp.float()
    p = lp.exp()
    top = (p * (lp - ls.gather(1, idx))).sum(1)
    rest = (1 - p.sum(1)).clamp_min(0)
    # below 1e-6 the rest is float32 rounding of a top k that holds (nearly) all the mass
    has_rest = (rest > 1e-6) & (idx.shape[1] < ls.shape[1])
    log_q_rest = torch.logsumexp(ls.scatter(1, idx, _MASKED), dim=1)
    log_rest = torch.where(has_rest, rest, torch.ones_like(rest)).log()
    return top + torch.where(has_rest, rest * (log_rest - log_q_rest), torch.zeros_like(rest))


def dense_kl(student_logits: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """Per row, KL(teacher || student) with the teacher's full log-probabilities (N, V)."""
    ls = torch.log_softmax(student_logits.float(), dim=-1)
    lp = teacher_logp.float()
    return (lp.exp() * (lp - ls)).sum(1)


def distill_terms(z: torch.Tensor, y: torch.Tensor, teacher: tuple, alpha: float, temperature: float) -> torch.Tensor:
    """The summed loss of rows ``z`` (N, V): ``(1 - alpha) * CE + alpha * T^2 * KL``; ``teacher`` is
    ``("sparse", idx, logp)`` or ``("dense", logp)``."""
    z = z.float()
    loss = z.new_zeros(())
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(z, y, reduction="sum")
    if alpha > 0:
        zt = z / temperature
        kl = sparse_kl(zt, teacher[1], teacher[2]) if teacher[0] == "sparse" else dense_kl(zt, teacher[1])
        loss = loss + alpha * temperature ** 2 * kl.sum()
    return loss


class _LinearDistill(torch.autograd.Function):
    """Mean distillation loss of ``h @ w.T``; each chunk's gradients are taken in the forward pass."""

    @staticmethod
    def forward(ctx, h, w, y, teacher_a, teacher_b, kind, alpha, temperature, compute_dtype, chunk):
        n = h.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            teacher = (kind, teacher_a[s:e]) if kind == "dense" else (kind, teacher_a[s:e], teacher_b[s:e])
            with torch.enable_grad():
                hc = h[s:e].detach().requires_grad_(need_h)
                wc = w.detach().requires_grad_(need_w)
                z = hc.to(compute_dtype) @ wc.to(compute_dtype).T
                loss = distill_terms(z, y[s:e], teacher, alpha, temperature)
                wanted = [t for t, need in ((hc, need_h), (wc, need_w)) if need]
                grads = torch.autograd.grad(loss, wanted) if wanted else ()
            total += loss.detach()
            it = iter(grads)
            if need_h:
                grad_h[s:e] = next(it)
            if need_w:
                grad_w += next(it).float()
        ctx.n = n
        ctx.w_dtype = w.dtype
        ctx.save_for_backward(grad_h, grad_w)
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        return (*scaled_grads(ctx, grad_out), None, None, None, None, None, None, None, None)


def linear_distill_loss(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, teacher: tuple, alpha: float = 0.5,
                        temperature: float = 1.0, chunk: int | None = None) -> torch.Tensor:
    """``(1 - alpha) * CE + alpha * T^2 * KL`` (means over tokens) of the student logits ``h @ w.T``,
    ``h`` (..., H), ``w`` (V, H), ``y`` (...), against ``teacher``: ``("sparse", idx (..., k), logp
    (..., k))`` or ``("dense", logp (..., V))``, computed ``chunk`` tokens at a time (default: as
    ``linear_cross_entropy``)."""
    if teacher[0] not in ("sparse", "dense"):
        raise ValueError(f"teacher kind {teacher[0]!r}: sparse or dense")
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    n = h.numel() // h.shape[-1]
    chunk = chunk or default_chunk(h, w)
    a = teacher[1].reshape(n, -1)
    b = teacher[2].reshape(n, -1) if teacher[0] == "sparse" else a
    with torch.autocast(device, enabled=False):
        return _LinearDistill.apply(h.reshape(n, -1), w, y.reshape(-1), a, b, teacher[0], float(alpha),
                                    float(temperature), dtype, chunk)


@torch.no_grad()
def top_k_logprobs(logits: torch.Tensor, k: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's ``k`` most likely tokens per row of ``logits`` (N, V) at ``temperature``: their
    ids (int64) and log-probabilities (float32), most likely first."""
    lp = torch.log_softmax(logits.float() / temperature, dim=-1)
    vals, idx = lp.topk(min(k, lp.shape[-1]), dim=-1)
    return idx, vals
