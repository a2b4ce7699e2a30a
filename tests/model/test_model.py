import pytest
import torch

from hare.model.model import build_model, count_params, flops_per_token, mistral_config
from hare.model.presets import PRESETS


def test_tiny_preset_is_1_to_5m_parameters():
    n = count_params(build_model(mistral_config("tiny")))
    assert 1e6 <= n <= 5e6


def test_hare_preset_is_the_papers_model():
    c = mistral_config("hare-1.1b")
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.vocab_size) == (2048, 22, 32, 8, 5632, 32000)
    assert c.rms_norm_eps == 1e-5 and c.rope_parameters["rope_theta"] == 1e4 and not c.tie_word_embeddings
    with torch.device("meta"):
        n = count_params(build_model(c))
    assert 1.09e9 < n < 1.13e9  # "about 1.1B"


@pytest.mark.parametrize("name", list(PRESETS))
def test_flops_estimate_matches_parameter_count(name):
    c = mistral_config(name)
    with torch.device("meta"):
        m = build_model(c)
    non_emb = count_params(m, non_embedding=True)
    norms = sum(p.numel() for n, p in m.named_parameters() if "norm" in n)
    assert flops_per_token(c, 0) == 6 * (non_emb - norms)


def test_overrides_apply_key_by_key_and_reject_unknown_keys():
    assert mistral_config("tiny", {"rope_theta": 5e5}).rope_parameters["rope_theta"] == 5e5
    c = mistral_config("tiny", {"num_hidden_layers": 1})
    assert c.num_hidden_layers == 1 and c.hidden_size == PRESETS["tiny"]["hidden_size"]
    with pytest.raises(ValueError, match="hidden_sise"):
        mistral_config("tiny", {"hidden_sise": 3})
    with pytest.raises(ValueError, match="unknown model preset"):
        mistral_config("huge")
