"""The sft step: off unless the recipe enables it; on, it fine-tunes the train step's model; LoRA."""

from __future__ import annotations

import pytest
import yaml

from hare.chat.sft import sft
from hare.chat.steps import SFT
from hare.core.io import read_json
from hare.core.step import StepContext
from hare.chat.config import SftConfig
from hare.recipe import Recipe, RecipeError, load_recipe


@pytest.fixture(scope="module")
def small_chat(tmp_path_factory, dolly):
    path = tmp_path_factory.mktemp("chat") / "dolly-100.jsonl"
    path.write_text("\n".join(dolly.read_text(encoding="utf-8").splitlines()[:100]) + "\n", encoding="utf-8")
    return path


def recipe(**sft_section) -> Recipe:
    return Recipe.model_validate({"name": "r", "sources": [{"name": "d", "kind": "jsonl", "path": "x.jsonl"}],
                                  "sft": sft_section})


def context(r: Recipe, tmp_path, tiny_base) -> StepContext:
    train = tmp_path / "train"
    train.mkdir()
    (train / "model").symlink_to(tiny_base, target_is_directory=True)
    out = tmp_path / "sft"
    out.mkdir()
    return StepContext(r, "sft", out, {"train": train})


def test_sft_step_is_off_by_default(tmp_path, tiny_base):
    ctx = context(recipe(), tmp_path, tiny_base)
    assert SFT(ctx)["step"] == 0
    assert read_json(ctx.out / "stats.json")["enabled"] is False
    from hare.report.html import render_report

    assert "Off (sft.enabled: false)" in render_report(tmp_path, "r", [(SFT, ctx.out)])
    assert SFT.inputs(SFT.view(ctx._recipe)) == {}
    assert not (ctx.out / "model").exists()


def test_sft_step_fine_tunes_the_trained_model(tmp_path, tiny_base, small_chat):
    r = recipe(enabled=True, data=[str(small_chat)], max_steps=2, batch_size=2, max_length=256, threads=1, device="cpu",
               eval_every=2, log_every=1)
    ctx = context(r, tmp_path, tiny_base)
    SFT(ctx)
    stats = read_json(ctx.out / "stats.json")
    assert stats["enabled"] and stats["step"] == 2 and stats["records"] == 100
    assert stats["conversations"] + stats["heldout"] == 100 and stats["eval_loss"] > 0
    assert (ctx.out / "model" / "model.safetensors").exists()
    from hare.report.html import render_report

    html = render_report(tmp_path, "r", [(SFT, ctx.out)])
    assert "Chat fine-tuning" in html and "held-out loss" in html and "<svg" in html
    # the data file is part of the step's fingerprint
    assert SFT.inputs(SFT.view(r))["data"][0]["path"] == str(small_chat)


def test_recipe_checks_the_sft_data(tmp_path):
    path = tmp_path / "r.yaml"
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
    path.write_text(yaml.safe_dump({"name": "r", "sources": [{"name": "d", "kind": "jsonl", "path": "x.jsonl"}],
                                    "sft": {"enabled": True, "data": ["chats.jsonl"]}}))
    with pytest.raises(RecipeError, match=r"sft.data\[0\]: .*chats.jsonl does not exist"):
        load_recipe(path)
    (tmp_path / "chats.jsonl").write_text("")
    assert load_recipe(path).sft.data == [str(tmp_path / "chats.jsonl")]  # relative to the recipe


def test_lora_trains_adapters_and_exports_merged_weights(tmp_path, tiny_base, small_chat):
    from safetensors.torch import load_file

    cfg = SftConfig(max_steps=2, batch_size=2, max_length=256, threads=1, device="cpu", eval_fraction=0,
                    lr=1e-2, lora={"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    res = sft(tiny_base, [small_chat], cfg, tmp_path / "lora", seed=0)
    assert res["step"] == 2
    merged = load_file(str(tmp_path / "lora" / "model" / "model.safetensors"))
    base = load_file(str(tiny_base / "model.safetensors"))
    assert not any("lora" in k for k in merged)  # plain weights
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not (merged[q] == base[q]).all()  # the adapters were merged in
    k = "model.layers.0.self_attn.k_proj.weight"
    assert (merged[k] == base[k]).all()  # modules without adapters are untouched


def test_sft_step_soup_reports_its_runs(tmp_path, tiny_base, small_chat):
    r = recipe(enabled=True, data=[str(small_chat)], max_steps=2, batch_size=2, max_length=256, threads=1,
               device="cpu", eval_every=2, log_every=1, soup=2)
    ctx = context(r, tmp_path, tiny_base)
    SFT(ctx)
    stats = read_json(ctx.out / "stats.json")
    assert [run["seed"] for run in stats["runs"]] == [r.seed, r.seed + 1] and stats["eval_loss"] > 0
    assert (ctx.out / "model" / "soup.json").is_file()
    from hare.report.html import render_report

    html = render_report(tmp_path, "r", [(SFT, ctx.out)])
    assert "uniform soup of 2 fine-tunings" in html and html.count(f"<td>{r.seed + 1}</td>") == 1
    assert "seed " + str(r.seed + 1) in html  # the loss plot's legend: one line per run
