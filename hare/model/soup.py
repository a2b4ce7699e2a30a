"""Model soups: the weighted average of fine-tuned models that share their start.

Wortsman et al. (2022, "Model soups") average the weights of models fine-tuned from one
pretrained model with different seeds or hyperparameters: the average stays in the same basin and
is often as good as the best of them, at the cost of one model at inference (mergekit calls it a
``linear`` merge). ``soup`` builds the *uniform* soup (or one with given weights) of Hugging Face
folders: same config, same tokenizer, same tool library (``tools.json``), same tensor names,
shapes and dtypes, or a ``DataError`` that names the first difference. It reads one tensor at a
time from every ingredient (safetensors, single or sharded), sums in float64 and writes the
result in the ingredients' dtype, beside a copy of the first ingredient's other files and
``soup.json`` (the ingredients, their weights and their weights files' SHA-256). The folder is
built aside and renamed into place: a killed run leaves nothing half-written, and the same
ingredients give the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from hare.core.io import DataError, sha256_file, write_json
from hare.core.progress import progress

SOUP_FILE = "soup.json"
# config.json keys that do not describe the network (where it was loaded from, which library saved it)
_CONFIG_NOTES = {"_name_or_path", "transformers_version", "architectures"}
# files that must be byte-identical across ingredients: what turns text into ids, and calls into tokens
_SAME_FILES = ("tokenizer.json", "tools.json")


def weights_files(folder: Path) -> dict[str, Path]:
    """Each tensor's name -> the safetensors file that holds it (``model.safetensors`` or the
    shards its index names)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise DataError(f"{folder}: no model.safetensors (nor a sharded index): not a saved model folder")
    with safe_open(single, framework="pt") as f:
        return {name: single for name in f.keys()}


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise DataError(f"{folder}: no config.json: not a saved model folder")
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k not in _CONFIG_NOTES}


def check_ingredients(models: Sequence[Path]) -> dict[str, Path]:
    """Raise ``DataError`` unless every folder holds the same network, tokenizer and tool library;
    returns the first folder's tensor map."""
    first = models[0]
    config = _config(first)
    names = weights_files(first)
    for other in models[1:]:
        theirs = _config(other)
        diff = sorted(k for k in set(config) | set(theirs) if config.get(k) != theirs.get(k))
        if diff:
            raise DataError(f"{other}: its config differs from {first}'s in {', '.join(diff[:5])}: "
                            "a soup averages models of one architecture")
        for name in _SAME_FILES:
            a, b = first / name, other / name
            if a.is_file() != b.is_file() or (a.is_file() and a.read_bytes() != b.read_bytes()):
                raise DataError(f"{other}: its {name} differs from {first}'s: a soup needs the same "
                                f"{'tokenizer' if name == 'tokenizer.json' else 'tool library'} in every model")
        their_names = weights_files(other)
        if set(their_names) != set(names):
            missing = sorted(set(names) ^ set(their_names))
            raise DataError(f"{other}: its tensors differ from {first}'s ({', '.join(missing[:3])} ...)")
    return names


def soup(models: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None) -> dict[str, Any]:
    """Write the weighted average of ``models`` (uniform without ``weights``) as a model folder
    ``out``; returns what ``soup.json`` records. ``out`` is replaced only if it is an earlier soup."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    models = [Path(m) for m in models]
    out = Path(out)
    if len(models) < 2:
        raise DataError(f"a soup needs two models or more, got {len(models)}")
    if len({m.resolve() for m in models}) < len(models):
        raise DataError("the same model is named twice: give weights to weigh it more")
    for m in models:
        if not m.is_dir():
            raise DataError(f"{m}: no such model folder")
    if weights is None:
        weights = [1.0 / len(models)] * len(models)
    if len(weights) != len(models) or any(not w > 0 for w in weights):
        raise DataError(f"{len(weights)} weights for {len(models)} models; each must be above 0")
    total = float(sum(weights))
    weights = [w / total for w in weights]
    if out.exists() and not (out / SOUP_FILE).is_file():
        raise DataError(f"{out} exists and is not a soup: give a new folder")
    if out.resolve() in {m.resolve() for m in models}:
        raise DataError(f"{out} is one of the ingredients")

    names = check_ingredients(models)
    maps = [names] + [weights_files(m) for m in models[1:]]
    handles: dict[Path, Any] = {}

    def tensor(i: int, name: str) -> torch.Tensor:
        path = maps[i][name]
        if path not in handles:
            handles[path] = safe_open(path, framework="pt")
        return handles[path].get_tensor(name)

    averaged: dict[str, torch.Tensor] = {}
    for name in progress(sorted(names), "soup", total=len(names), unit="tensor"):
        first = tensor(0, name)
        acc = first.to(torch.float64) * weights[0]
        for i in range(1, len(models)):
            t = tensor(i, name)
            if t.shape != first.shape or t.dtype != first.dtype:
                raise DataError(f"{models[i]}: {name} is {tuple(t.shape)} {t.dtype}, "
                                f"{models[0]} has {tuple(first.shape)} {first.dtype}")
            acc += t.to(torch.float64) * weights[i]
        if not first.is_floating_point() and any(not torch.equal(first, tensor(i, name))
                                                 for i in range(1, len(models))):
            raise DataError(f"{name} holds integers that differ between the models: they cannot be averaged")
        averaged[name] = acc.to(first.dtype) if first.is_floating_point() else first
    handles.clear()

    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for f in sorted(models[0].iterdir()):
        if f.is_file() and not f.name.startswith("model.safetensors") and f.name != SOUP_FILE \
                and not f.name.startswith("model-"):
            shutil.copy2(f, tmp / f.name)
    save_file(averaged, tmp / "model.safetensors", metadata={"format": "pt"})
    record = {
        "method": "linear (Wortsman et al. 2022, model soups)",
        "ingredients": [{"path": str(m), "weight": w,
                         "weights_sha256": [sha256_file(p) for p in sorted(set(weights_files(m).values()))]}
                        for m, w in zip(models, weights)],
        "tensors": len(averaged),
    }
    write_json(tmp / SOUP_FILE, record)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return record
