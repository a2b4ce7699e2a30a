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
built aside and renamed into place (``atomic_dir``): a killed run leaves nothing half-written,
and the same ingredients give the same bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from hare.core.io import DataError, atomic_dir, sha256_file, write_json
from hare.core.progress import progress

SOUP_FILE = "soup.json"
# config.json keys that do not describe the network (where it was loaded from, which library saved it)
_CONFIG_NOTES = {"_name_or_path", "transformers_version", "architectures"}
# files that must be byte-identical across ingredients: what turns text into ids, and calls into tokens
_SAME_FILES = ("tokenizer.json", "tools.json")


INDEX = "model.safetensors.index.json"


def _json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a JSON {type(obj).__name__}, not an object")
    return obj


def _open(path: Path):
    """``safe_open(path)``, its errors (which do not name the file) as a ``DataError`` that does."""
    from safetensors import safe_open

    if not path.is_file():
        raise DataError(f"{path}: no such weights file")
    try:
        return safe_open(path, framework="pt")
    except Exception as e:
        raise DataError(f"{path}: not a readable safetensors file ({e})") from None


def weights_files(folder: Path) -> dict[str, Path]:
    """Each tensor's name -> the safetensors file that holds it (``model.safetensors`` or the
    shards its index names)."""
    index = folder / INDEX
    if index.is_file():
        weight_map = _json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise DataError(f"{index}: no \"weight_map\" object (tensor name -> shard file)")
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise DataError(f"{folder}: no model.safetensors (nor a sharded index): not a saved model folder")
    with _open(single) as f:
        return {name: single for name in f.keys()}


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise DataError(f"{folder}: no config.json: not a saved model folder")
    return {k: v for k, v in _json(path).items() if k not in _CONFIG_NOTES}


def check_ingredients(models: Sequence[Path]) -> list[dict[str, Path]]:
    """Raise ``DataError`` unless every folder holds the same network, tokenizer and tool library;
    returns each folder's tensor map (``weights_files``)."""
    first = models[0]
    config = _config(first)
    maps = [weights_files(first)]
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
        maps.append(weights_files(other))
        if set(maps[-1]) != set(maps[0]):
            missing = sorted(set(maps[0]) ^ set(maps[-1]))
            raise DataError(f"{other}: its tensors differ from {first}'s ({', '.join(missing[:3])} ...)")
    return maps


def soup(models: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None,
         replace: bool = False) -> dict[str, Any]:
    """Write the weighted average of ``models`` (uniform without ``weights``) as a model folder
    ``out``; returns what ``soup.json`` records. ``out`` is replaced only if it is an earlier soup, or
    with ``replace`` (the caller owns the folder: ``hare sft``'s soup replaces its own export)."""
    import torch
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
    weights = [w / float(sum(weights)) for w in weights]
    if out.exists() and not replace and not (out / SOUP_FILE).is_file():
        raise DataError(f"{out} exists and is not a soup: give a new folder")
    if out.resolve() in {m.resolve() for m in models}:
        raise DataError(f"{out} is one of the ingredients")

    maps = check_ingredients(models)
    files = {p: _open(p) for m in maps for p in set(m.values())}
    averaged: dict[str, torch.Tensor] = {}
    for name in progress(sorted(maps[0]), "soup", total=len(maps[0]), unit="tensor"):
        first, *rest = [files[m[name]].get_tensor(name) for m in maps]
        for model, t in zip(models[1:], rest):
            if t.shape != first.shape or t.dtype != first.dtype:
                raise DataError(f"{model}: {name} is {tuple(t.shape)} {t.dtype}, "
                                f"{models[0]} has {tuple(first.shape)} {first.dtype}")
        if first.is_floating_point():
            averaged[name] = sum(t.to(torch.float64) * w for t, w in zip([first, *rest], weights)).to(first.dtype)
        elif any(not torch.equal(first, t) for t in rest):
            raise DataError(f"{name} holds integers that differ between the models: they cannot be averaged")
        else:
            averaged[name] = first
    files.clear()

    record = {
        "method": "linear (Wortsman et al. 2022, model soups)",
        "ingredients": [{"path": str(m), "weight": w,
                         "weights_sha256": [sha256_file(p) for p in sorted(set(files_of.values()))]}
                        for m, w, files_of in zip(models, weights, maps)],
        "tensors": len(averaged),
    }
    weights_names = {p.name for p in maps[0].values()} | {INDEX, SOUP_FILE}
    with atomic_dir(out) as tmp:
        for f in sorted(models[0].iterdir()):
            if f.is_file() and f.name not in weights_names:
                shutil.copy2(f, tmp / f.name)
        save_file(averaged, tmp / "model.safetensors", metadata={"format": "pt"})
        write_json(tmp / SOUP_FILE, record)
    return record
