from pathlib import Path

import pytest

from hare.cli import main
from hare.recipe import DEFAULT_RECIPE, Recipe, RecipeError, load_recipe
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    r = load_recipe(path, check_paths=False)
    assert isinstance(r, Recipe) and r.sources


def test_demo_is_embedded_in_the_package():
    assert DEFAULT_RECIPE.exists()
    r = load_recipe(None)
    assert r.name == "demo" and r.sources[0].kind == "pydoc"


def test_paper_recipe_has_the_paper_model_and_weights():
    r = load_recipe(ROOT / "recipes" / "hare-1.1b.yaml", check_paths=False)
    assert r.model.preset == "hare-1.1b" and r.pack.seq_len == 2048
    assert r.train.batch_tokens == 2 ** 21  # 2M tokens
    assert round(sum(s.weight for s in r.sources), 2) == 46.5  # D1's share of the final mix (%)
    assert r.decontam.threshold == 0.5


def test_misspelled_key_names_the_key_path_and_suggests(tmp_path):
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: pydoc}]\ntrain:\n  max_stpes: 3\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "train.max_stpes: unknown key" in msg and "did you mean 'max_steps'" in msg
    assert "micro_batch_size" in msg  # lists what is allowed
    assert str(p) in msg


def test_nested_list_key_and_wrong_type(tmp_path):
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: pydoc, wieght: 2}]\ntrain: {lr: fast}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "sources[0].wieght: unknown key (did you mean 'weight'?)" in msg
    assert "train.lr" in msg and "'fast'" in msg


def test_stage_weights_must_name_data_parts(tmp_path):
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: pydoc}]\n"
                        "train: {stages: [{name: s1, tokens: 100, weights: {d2: 1}}]}\n")
    with pytest.raises(RecipeError, match=r"names no data part: \['d2'\]; parts: \['d1'\]"):
        load_recipe(p)


def test_unknown_model_override_fails_before_work(tmp_path):
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: pydoc}]\nmodel: {overrides: {num_layerz: 2}}\n")
    with pytest.raises(RecipeError, match="num_layerz"):
        load_recipe(p)


def test_missing_input_path_is_named(tmp_path):
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: jsonl, path: nowhere/data.jsonl}]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert str(tmp_path / "nowhere" / "data.jsonl") in str(e.value) and "sources[0].path" in str(e.value)


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text('{"text": "x"}\n')
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: jsonl, path: d/a.jsonl}]\n")
    assert load_recipe(p).sources[0].path == str(tmp_path / "d" / "a.jsonl")


def test_cli_exits_nonzero_with_the_message(tmp_path, capsys):
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: pydoc}]\ncorpus: {dedupe: exact}\n")
    assert main(["run", str(p), "--out-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "corpus.dedupe: unknown key" in err and "did you mean 'dedup'" in err
    assert not (tmp_path / "runs").exists()  # failed before any work


def test_hf_source_name_is_not_a_missing_path(tmp_path):
    p = write(tmp_path, "name: x\nsources: [{name: a, kind: hf, path: allenai/c4, config_name: en, split: train}]\n")
    r = load_recipe(p)
    assert r.sources[0].path == "allenai/c4" and not r.sources[0].allow_hub


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "two words"])
def test_a_source_name_that_is_not_a_plain_word_is_refused(tmp_path, name):
    """Source names name files (the study writes its raw input as <name>.jsonl): '../' would leave the folder."""
    p = write(tmp_path, f"name: x\nsources: [{{name: '{name}', kind: pydoc}}]\n")
    with pytest.raises(RecipeError, match=r"sources\[0\]\.name: .*a source name is letters, digits"):
        load_recipe(p)
