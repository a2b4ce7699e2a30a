"""A recipe cannot make the runner delete anything outside its own run folder: run names are plain
folder names, ``out_dir`` has no '..', and a folder no hare step wrote is never emptied."""

from __future__ import annotations

import shutil

import pytest
import yaml

from hare.cli import main
from hare.recipe import RecipeError, load_recipe
from tests.conftest import shared_or_skip


def _recipe(tmp_path, **top) -> str:
    shutil.copy(shared_or_skip("gsm8k", "test.jsonl"), tmp_path / "g.jsonl")
    r = {"name": "r", "sources": [{"name": "g", "kind": "jsonl", "path": "g.jsonl", "text_field": "question"}],
         "corpus": {"dedup": "exact"}, "execution": {"workers": 1}, **top}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    return str(path)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../../etc", "/tmp/x", "a\\b", ""])
def test_run_names_that_leave_the_out_dir_are_refused(tmp_path, name):
    with pytest.raises(RecipeError, match="name"):
        load_recipe(_recipe(tmp_path, name=name))


@pytest.mark.parametrize("out_dir", ["../runs", "runs/../../x", "/", "~"])
def test_out_dir_with_dot_dot_or_root_is_refused(tmp_path, out_dir, capsys):
    with pytest.raises(RecipeError, match="out_dir"):
        load_recipe(_recipe(tmp_path, out_dir=out_dir))
    assert main(["corpus", _recipe(tmp_path), "--out-dir", out_dir]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_a_folder_no_step_wrote_is_never_deleted(tmp_path, capsys):
    step = tmp_path / "runs" / "r" / "corpus"
    step.mkdir(parents=True)
    (step / "precious.txt").write_text("not hare's")
    assert main(["corpus", _recipe(tmp_path), "--out-dir", str(tmp_path / "runs")]) == 2
    assert "refusing to delete it" in capsys.readouterr().err
    assert (step / "precious.txt").read_text() == "not hare's"
    (step / "precious.txt").unlink()  # an empty folder is fine
    assert main(["corpus", _recipe(tmp_path), "--out-dir", str(tmp_path / "runs")]) == 0
    assert (step / "manifest.json").exists()
