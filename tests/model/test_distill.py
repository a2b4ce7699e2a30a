"""Distillation losses: the chunked loss and its gradients equal a full-logit reference, and sparse
top-k KD with k = the vocabulary equals dense KD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hare.model.distill import dense_kl, linear_distill_loss, sparse_kl, top_k_logprobs

V, H, N = 50, 16, 37


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, H, generator=g, dtype=torch.float64).float()
    w = torch.randn(V, H, generator=g) * 0.5
    y = torch.randint(0, V, (N,), generator=g)
    teacher_logits = torch.randn(N, V, generator=g) * 2
    return h, w, y, teacher_logits


def reference(h, w, y, teacher_logits, alpha, T, k=None):
    """The loss from the full logits, autograd all the way."""
    z = h @ w.T
    ce = F.cross_entropy(z, y)
    lp_t = torch.log_softmax(teacher_logits / T, -1)
    if k is None:
        kl = (lp_t.exp() * (lp_t - torch.log_softmax(z / T, -1))).sum(1).mean()
    else:  # the top k of the teacher, the rest of both distributions one bucket
        idx = lp_t.topk(k, -1).indices
        ls = torch.log_softmax(z / T, -1)
        p = lp_t.gather(1, idx).exp()
        q_rest = 1 - ls.gather(1, idx).exp().sum(1)
        r = 1 - p.sum(1)
        kl = ((p * (lp_t.gather(1, idx) - ls.gather(1, idx))).sum(1) + r * (r.log() - q_rest.log())).mean()
    return (1 - alpha) * ce + alpha * T ** 2 * kl


@pytest.mark.parametrize("alpha,T,k", [(0.5, 1.0, None), (0.7, 2.0, None), (0.5, 2.0, 8), (1.0, 1.0, 5), (0.0, 1.0, 5)])
def test_chunked_loss_and_gradients_equal_the_full_logit_reference(data, alpha, T, k):
    h, w, y, tl = data
    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    ref = reference(h1, w1, y, tl, alpha, T, k)
    ref.backward()
    if k is None:
        teacher = ("dense", torch.log_softmax(tl / T, -1))
    else:
        teacher = ("sparse", *top_k_logprobs(tl, k, T))
    h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    got = linear_distill_loss(h2, w2, y, teacher, alpha, T, chunk=10)  # chunks of 10, 10, 10, 7
    got.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(h2.grad, h1.grad, atol=1e-6, rtol=1e-4)
    assert torch.allclose(w2.grad, w1.grad, atol=1e-6, rtol=1e-4)


def test_sparse_kd_with_k_the_vocabulary_is_dense_kd(data):
    h, w, y, tl = data
    lp = torch.log_softmax(tl / 2.0, -1)
    idx, vals = top_k_logprobs(tl, V, 2.0)
    z = (h @ w.T) / 2.0
    assert torch.allclose(sparse_kl(z, idx, vals), dense_kl(z, lp), atol=1e-6)
    zs, zd = z.clone().requires_grad_(), z.clone().requires_grad_()
    sparse_kl(zs, idx, vals).sum().backward()
    dense_kl(zd, lp).sum().backward()
    assert torch.isfinite(zs.grad).all() and torch.allclose(zs.grad, zd.grad, atol=1e-6)
    dense = linear_distill_loss(h, w, y, ("dense", lp), 0.5, 2.0)
    sparse = linear_distill_loss(h, w, y, ("sparse", idx, vals), 0.5, 2.0)
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-6)


def test_the_student_equal_to_the_teacher_has_no_kl(data):
    _, _, _, tl = data
    idx, vals = top_k_logprobs(tl, 7)
    assert sparse_kl(tl, idx, vals).abs().max() < 1e-5
    assert dense_kl(tl, torch.log_softmax(tl, -1)).abs().max() < 1e-5


def test_batched_shapes_and_a_bad_kind(data):
    h, w, y, tl = data
    idx, vals = top_k_logprobs(tl[:36], 4)
    out = linear_distill_loss(h[:36].reshape(4, 9, H), w, y[:36].reshape(4, 9),
                              ("sparse", idx.reshape(4, 9, 4), vals.reshape(4, 9, 4)))
    flat = linear_distill_loss(h[:36], w, y[:36], ("sparse", idx, vals))
    assert out.item() == pytest.approx(flat.item())
    with pytest.raises(ValueError, match="sparse or dense"):
        linear_distill_loss(h, w, y, ("topk", idx, vals))
