"""Study arms are recipe overlays (data only): the built-in ones in hare/study/arms.yaml, and arms of
your own from a YAML file of the same shape (docs/adding-a-study-arm.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hare.recipe import load_recipe
from hare.study.arms import deep_merge, load_arms
from hare.study.run import DATA_SECTIONS, StudyConfig, arm_recipe

DATA = {"sources": {"pydoc": {"path": "/data/pydoc.jsonl"}}, "heldout_path": "/data/heldout.jsonl"}


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    base = {"corpus": {"dedup": "exact", "clean": {"enabled": True, "min_words": 50}}, "mix": {"max_chars": 9}}
    assert deep_merge(base, {"corpus": {"clean": {"enabled": False}}, "mix": {"max_chars": None}}) == \
        {"corpus": {"dedup": "exact", "clean": {"enabled": False, "min_words": 50}}, "mix": {"max_chars": None}}
    assert base["corpus"]["clean"]["enabled"] is True  # not changed in place


def test_an_arm_of_your_own_is_a_file_and_changes_only_data(tmp_path):
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump({
        "no-minhash": {"description": "hare with exact deduplication only", "overlay": {"corpus": {"dedup": "exact"}}},
        "raw": {"description": "as read, but cleaned", "overlay": {"corpus": {"dedup": "none"}}},
    }))
    arms = load_arms(path)
    assert list(arms)[:5] == ["raw", "clean", "hare", "hare-d2", "hare-d2-d3"] and "no-minhash" in arms
    assert arms["raw"].description == "as read, but cleaned"  # a built-in name is replaced
    recipe = load_recipe(None)
    cfg = StudyConfig(steps=4)
    mine = arm_recipe(recipe, "no-minhash", arms["no-minhash"], cfg, tmp_path, DATA, Path("/tok"))
    hare = arm_recipe(recipe, "hare", arms["hare"], cfg, tmp_path, DATA, Path("/tok"))
    assert mine.corpus.dedup == "exact" and hare.corpus.dedup == recipe.corpus.dedup == "minhash"
    a, b = mine.model_dump(mode="json"), hare.model_dump(mode="json")
    assert {k for k in a if a[k] != b[k]} == {"name", "corpus"}

    path.write_text(yaml.safe_dump({"bigger": {"description": "x", "overlay": {"train": {"max_steps": 9}}}}))
    with pytest.raises(ValueError, match=r"arm bigger: an arm changes data only \(sources, corpus"):
        arm_recipe(recipe, "bigger", load_arms(path)["bigger"], cfg, tmp_path, DATA, Path("/tok"))
    path.write_text(yaml.safe_dump({"bad": {"description": "x", "overlay": {}, "synthetic": ["d4"]}}))
    with pytest.raises(ValueError, match="arm bad"):
        load_arms(path)


def test_the_built_in_arms_overlay_data_sections_only():
    for name, arm in load_arms().items():
        assert set(arm.overlay) <= set(DATA_SECTIONS), name
        assert arm.description


def test_the_ablation_arms_take_out_one_principle_each(tmp_path):
    """`hare study --ablations`: the hare arm with one overlay each, differing from it in one section."""
    from hare.recipe import Recipe

    r = load_recipe(None).model_dump(mode="json")
    r["corpus"]["quality"].update(enabled=True, reference_sources=["pydoc"])  # the demo keeps no band of its own
    recipe = Recipe.model_validate(r)
    cfg = StudyConfig(steps=4, ablations=True)
    arms = load_arms(ablations=True)
    ablations = [n for n in arms if n.startswith("hare-no-")]
    assert ablations == ["hare-no-clean", "hare-no-dedup", "hare-no-quality", "hare-no-topics", "hare-no-concision",
                         "hare-no-decontam"]
    assert not set(ablations) & set(load_arms())  # not trained unless asked for
    hare = arm_recipe(recipe, "hare", arms["hare"], cfg, tmp_path, DATA, Path("/tok")).model_dump(mode="json")
    changed = {}
    for name in ablations:
        r = arm_recipe(recipe, name, arms[name], cfg, tmp_path, DATA, Path("/tok")).model_dump(mode="json")
        changed[name] = {k for k in r if r[k] != hare[k]} - {"name"}
    assert changed == {"hare-no-clean": {"corpus"}, "hare-no-dedup": {"corpus"}, "hare-no-quality": {"corpus"},
                       "hare-no-topics": {"mix"}, "hare-no-concision": {"mix"}, "hare-no-decontam": {"decontam"}}
