"""Model soups: the weighted mean of real saved models, written atomically, refused on mismatches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hare.core.io import DataError, sha256_file
from hare.model.model import build_model, mistral_config
from hare.model.soup import soup

SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "max_position_embeddings": 64}


def saved(folder: Path, seed: int, **shape) -> Path:
    """A tiny Mistral initialised with ``seed``, saved with a tokenizer file and a tool library."""
    build_model(mistral_config("tiny", {**SHAPE, **shape}, vocab_size=96), seed=seed).save_pretrained(folder)
    (folder / "tokenizer.json").write_text('{"model": "the same for all"}', encoding="utf-8")
    (folder / "tools.json").write_text('{"functions": []}', encoding="utf-8")
    return folder


@pytest.fixture
def three(tmp_path) -> list[Path]:
    return [saved(tmp_path / f"m{s}", seed=s) for s in range(3)]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def test_the_uniform_soup_is_the_mean_and_loads(three, tmp_path):
    from transformers import AutoModelForCausalLM

    record = soup(three, tmp_path / "soup")
    out, parts = weights(tmp_path / "soup"), [weights(m) for m in three]
    assert set(out) == set(parts[0]) and record["tensors"] == len(out)
    for name, t in out.items():
        mean = sum(p[name].double() for p in parts) / 3
        assert t.dtype == parts[0][name].dtype
        torch.testing.assert_close(t.double(), mean, rtol=0, atol=1e-7)
    assert not torch.equal(out["model.embed_tokens.weight"], parts[0]["model.embed_tokens.weight"])
    # the ingredients and their files are recorded, and the soup is a model transformers loads
    ingredients = json.loads((tmp_path / "soup" / "soup.json").read_text())["ingredients"]
    assert [i["weights_sha256"] for i in ingredients] == [[sha256_file(m / "model.safetensors")] for m in three]
    assert [i["weight"] for i in ingredients] == pytest.approx([1 / 3] * 3)
    assert (tmp_path / "soup" / "tools.json").read_text() == '{"functions": []}'
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "soup", local_files_only=True)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 96)


def test_weights_are_normalised_and_the_same_ingredients_give_the_same_bytes(three, tmp_path):
    soup(three[:2], tmp_path / "a", weights=[3, 1])
    a, b = weights(three[0]), weights(three[1])
    for name, t in weights(tmp_path / "a").items():
        torch.testing.assert_close(t.double(), 0.75 * a[name].double() + 0.25 * b[name].double(), rtol=0, atol=1e-7)
    soup(three[:2], tmp_path / "b", weights=[0.75, 0.25])
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_a_soup_of_copies_is_the_model_bit_for_bit(three, tmp_path):
    shutil.copytree(three[0], tmp_path / "copy")
    soup([three[0], tmp_path / "copy"], tmp_path / "soup")
    same = weights(three[0])
    assert all(torch.equal(t, same[name]) for name, t in weights(tmp_path / "soup").items())


@pytest.mark.parametrize("break_it, message", [
    (lambda m: shutil.rmtree(m) or saved(m, seed=1, intermediate_size=48), "config differs"),
    (lambda m: (m / "tools.json").write_text('{"functions": [1]}'), "tools.json differs"),
    (lambda m: (m / "tokenizer.json").write_text("{}"), "tokenizer.json differs"),
    (lambda m: (m / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda m: (m / "model.safetensors").write_bytes(b"\x10\x00not safetensors"), "not a readable safetensors file"),
    (lambda m: (m / "config.json").write_text('{"model_type": "mistral",\n  oops}'), r"config.json: line 2: not JSON"),
])
def test_models_that_do_not_match_are_refused(three, tmp_path, break_it, message):
    break_it(three[1])
    with pytest.raises(DataError, match=message):
        soup(three, tmp_path / "soup")
    assert not (tmp_path / "soup").exists() and not (tmp_path / ".soup.tmp").exists()


def test_bad_requests_are_refused_and_lose_nothing(three, tmp_path):
    before = sha256_file(three[2] / "model.safetensors")
    with pytest.raises(DataError, match="two models or more"):
        soup(three[:1], tmp_path / "soup")
    with pytest.raises(DataError, match="named twice"):
        soup([three[0], three[0]], tmp_path / "soup")
    with pytest.raises(DataError, match="2 weights for 3 models"):
        soup(three, tmp_path / "soup", weights=[1, 1])
    with pytest.raises(DataError, match="is not a soup"):  # a model folder is never overwritten
        soup(three[:2], three[2])
    assert sha256_file(three[2] / "model.safetensors") == before and not (three[2] / "soup.json").exists()
    soup(three[:2], tmp_path / "soup")
    soup(three[1:], tmp_path / "soup")  # an earlier soup is replaced
    assert [i["path"] for i in json.loads((tmp_path / "soup" / "soup.json").read_text())["ingredients"]] \
        == [str(m) for m in three[1:]]
    plain = tmp_path / "export"  # replace=True: the caller owns the folder (hare sft --soup's own export)
    shutil.copytree(three[0], plain)
    soup(three[1:], plain, replace=True)
    assert (plain / "soup.json").is_file()


def test_the_command(three, tmp_path, capsys):
    from hare.cli import main

    assert main(["soup", str(tmp_path / "soup"), *map(str, three[:2]), "--weights", "1,1"]) == 0
    assert "written: " in capsys.readouterr().out
    assert (tmp_path / "soup" / "model.safetensors").is_file()
    assert main(["soup", str(tmp_path / "other"), str(three[0])]) == 1
    assert "two models or more" in capsys.readouterr().err
