import pytest
import torch
import torch.nn.functional as F

from hare.model.loss import linear_cross_entropy
from hare.model.model import NextTokenLoss, build_model, mistral_config


def reference(h, w, y):
    logits = (h @ w.T).float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def loss_and_grads(fn, h, w, y, scale=0.5):
    h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    loss = fn(h, w, y)
    (loss * scale).backward()  # a scaled loss, as under gradient accumulation
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk", [None, 1, 7, 64, 10_000])
def test_chunked_loss_and_gradients_match_full_logits(chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 50, 16, generator=g)
    w = torch.randn(97, 16, generator=g) * 0.3
    y = torch.randint(0, 97, (3, 50), generator=g)
    ref = loss_and_grads(reference, h, w, y)
    got = loss_and_grads(lambda a, b, c: linear_cross_entropy(a, b, c, chunk=chunk), h, w, y)
    for r, o in zip(ref, got):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-7)


def test_confident_predictions_keep_their_precision():
    """Large logits: the loss of near-certain and of hopeless targets is exact, as log_softmax's."""
    h = torch.tensor([[30.0, 0.0], [-30.0, 0.0]], dtype=torch.float32)
    w = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    ref = loss_and_grads(reference, h, w, y)
    got = loss_and_grads(linear_cross_entropy, h, w, y)
    for r, o in zip(ref, got):
        torch.testing.assert_close(o, r)


def test_bf16_autocast_matches_the_autocast_reference():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(40, 32, generator=g)
    w = torch.randn(64, 32, generator=g) * 0.2
    y = torch.randint(0, 64, (40,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = loss_and_grads(reference, h, w, y)
        got = loss_and_grads(lambda a, b, c: linear_cross_entropy(a, b, c, chunk=16), h, w, y)
    for r, o in zip(ref, got):
        assert o.dtype == r.dtype
        torch.testing.assert_close(o, r, rtol=2e-2, atol=2e-3)


def test_next_token_loss_chunked_equals_the_models_logits():
    config = mistral_config("tiny", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                     "num_attention_heads": 2, "num_key_value_heads": 1}, vocab_size=300)
    ids = torch.randint(0, 300, (2, 33), generator=torch.Generator().manual_seed(2))
    x, y = ids[:, :-1], ids[:, 1:]
    losses, grads = [], []
    for chunked in (False, True):
        model = build_model(config, seed=0)
        loss = NextTokenLoss(model, chunked=chunked)(x, y)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-6)
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7)
