"""hare's evaluation backend scores every model family as lm-eval's ``HFLM`` does: heads with a bias
(Phi), Granite's ``logits_scaling``, Cohere's ``logit_scale`` and Gemma's soft-capping by its own
path; a head it does not reproduce (Falcon-H1's ``lm_head_multiplier``) by HFLM's, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hare.evals.backend import HareLM, LogitHead
from tests.evals.conftest import _tokenizer

COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
              max_position_embeddings=256)


def _configs(vocab: int) -> dict:
    import transformers as t

    common = {**COMMON, "vocab_size": vocab}
    return {
        "phi": (t.PhiConfig(**common), "bias"),
        "granite": (t.GraniteConfig(**common, logits_scaling=8.0), "scale 0.125"),
        "cohere": (t.CohereConfig(**common, logit_scale=0.25), "scale 0.25"),
        "gemma2": (t.Gemma2Config(**common, head_dim=16, final_logit_softcapping=0.5, sliding_window=64),
                   "soft-capping 0.5"),
        "gemma3": (t.Gemma3TextConfig(**common, head_dim=16, final_logit_softcapping=0.5, sliding_window=64),
                   "soft-capping 0.5"),
        "falcon_h1": (t.FalconH1Config(**common, lm_head_multiplier=3.0), None),
    }


@pytest.fixture(scope="module")
def families(tmp_path_factory, shared_data) -> dict[str, tuple[Path, str | None]]:
    """Tiny random models of each family, their heads made to matter: weights and bias of scale 1-2
    (a fresh model's are near zero, and a missing bias or scale would hardly show)."""
    import transformers

    root = tmp_path_factory.mktemp("families")
    tok = _tokenizer(root / "tok")
    out = {}
    for name, (config, head) in _configs(len(tok)).items():
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config)
        with torch.no_grad():
            lm_head = model.get_output_embeddings()
            lm_head.weight.normal_(0, 1.0)
            if lm_head.bias is not None:
                lm_head.bias.normal_(0, 2.0)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = (root / name, head)
    return out


def _requests(vocab: int) -> list:
    """Two questions whose choices share a context (continuations of one to four tokens), two lone
    windows, and three questions and a lone window behind one 80-token prefix (longer than Gemma's
    64-token sliding window), in lm-eval's request form."""
    g = torch.Generator().manual_seed(3)
    ids = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()  # noqa: E731
    reqs = []
    for ctx_len in (40, 23):
        ctx = ids(ctx_len)
        reqs += [((f"q{ctx_len}", str(n)), ctx, ids(n)) for n in (1, 2, 4)]
    reqs += [((None, None), ids(30), ids(5)), ((None, None), ids(12), ids(3))]
    shots = ids(80)
    for q, ctx in enumerate([shots + ids(9), shots + ids(20), shots]):
        reqs += [((f"s{q}", str(n)), ctx, ids(n)) for n in (1, 3)]
    reqs += [((None, None), shots + ids(5), ids(4))]
    return reqs


@pytest.mark.parametrize("family", ["phi", "granite", "cohere", "gemma2", "gemma3", "falcon_h1"])
def test_each_family_scores_as_hflm_scores_it(families, family):
    from lm_eval.models.huggingface import HFLM

    folder, head = families[family]
    common = {"pretrained": str(folder), "dtype": "float32", "device": "cpu", "batch_size": 4}
    hf = HFLM(**common)
    lm = HareLM(**common, max_batch_tokens=200)
    reqs = _requests(hf.tokenizer.vocab_size)
    want = hf._loglikelihood_tokens(reqs, disable_tqdm=True)
    got = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-4), family
    assert [g[1] for g in got] == [w[1] for w in want]
    if head is None:  # a head the backend does not know: HFLM's path ran, and it says so
        assert lm.path == "hflm" and "HFLM" in lm.describe() and "FalconH1ForCausalLM" in lm.describe()
    else:
        assert lm.path == "hare" and head in lm.describe(), lm.describe()


def test_a_head_the_backend_gets_wrong_falls_back_to_hflm(families, monkeypatch):
    """The probe compares the two paths: a head read wrongly (here a scale left out) never scores."""
    from lm_eval.models.huggingface import HFLM

    folder, _ = families["granite"]
    real = LogitHead.of

    def wrong(model):
        head = real(model)
        head.scale = None
        return head

    monkeypatch.setattr(LogitHead, "of", classmethod(lambda cls, model: wrong(model)))
    common = {"pretrained": str(folder), "dtype": "float32", "device": "cpu", "batch_size": 4}
    lm = HareLM(**common)
    assert lm.path == "hflm" and "differ" in lm.describe()
    reqs = _requests(lm.tokenizer.vocab_size)
    assert lm._loglikelihood_tokens(reqs, disable_tqdm=True) == HFLM(**common)._loglikelihood_tokens(
        reqs, disable_tqdm=True)


def test_the_backend_is_part_of_the_eval_fingerprint():
    from hare.core.config import config_dump
    from hare.evals.config import EvalConfig

    assert config_dump(EvalConfig(backend="hare")) != config_dump(EvalConfig(backend="vllm"))
