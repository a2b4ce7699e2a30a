"""No file hare reads can run code, and every file hare writes appears under its final name only
when complete: checked on the loaders themselves and over the whole source tree."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT

SOURCES = sorted((ROOT / "hare").rglob("*.py"))


class _Payload:
    """Unpickling this object creates a file: the proof that a load ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_checkpoint_holding_code_is_refused_and_the_code_does_not_run(tmp_path):
    from hare.train.loop import read_checkpoint

    marker = tmp_path / "ran"
    path = tmp_path / "step-00000010.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="holds objects other than tensors"):
        read_checkpoint(path)
    assert not marker.exists()
    torch.save({"model": {"w": torch.zeros(2)}, "step": 10}, path)
    assert read_checkpoint(path)["step"] == 10


def test_a_quality_scorer_file_holding_objects_is_refused(tmp_path):
    from hare.filters.quality import QualityScorer

    marker = tmp_path / "ran"
    path = tmp_path / "quality_scorer.pkl"
    with open(path, "wb") as f:
        np.savez(f, coef=np.array([_Payload(marker)], dtype=object), intercept=np.zeros(1),
                 classes=np.arange(2), seed=np.array(0))
    with pytest.raises(ValueError, match="allow_pickle"):
        QualityScorer.load(path)
    assert not marker.exists()
    with open(path, "wb") as f:  # a plain pickle under that name is no NumPy archive either
        pickle.dump(_Payload(marker), f)
    with pytest.raises(Exception):
        QualityScorer.load(path)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_module_unpickles_or_loads_torch_files_with_code():
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree):
            f = call.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            assert not (owner in ("pickle", "dill", "cloudpickle", "joblib") and name.startswith("load")), where
            if owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in call.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where
            if owner == "np" and name == "load":
                kw = {k.arg: k.value for k in call.keywords}
                assert "allow_pickle" not in kw or kw["allow_pickle"].value is False, where
            # the builtins, called by name (a method such as model.eval() is not one)
            assert name not in ("eval", "exec") or not (isinstance(f, ast.Name) or owner == "builtins"), where


# Writes that do not go through hare.core.io's atomic helpers: allowed only into a temporary path
# (named tmp), or appending (logs, a lock file, the rewriter's cache, whose reader drops a cut line).


def test_every_file_is_written_through_a_temporary_name():
    for path in SOURCES:
        rel = str(path.relative_to(ROOT))
        if rel == "hare/core/io.py":
            continue
        for call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            f = call.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            target = ast.unparse(call.args[0]) if call.args else ""
            if isinstance(f, ast.Attribute) and name in ("write_text", "write_bytes"):
                target = ast.unparse(f.value)
            elif name == "open" and len(call.args) > 1 and isinstance(call.args[1], ast.Constant):
                mode = call.args[1].value
                if not any(c in mode for c in "wx"):
                    continue
            else:
                continue
            assert "tmp" in target, f"{rel}:{call.lineno}: {ast.unparse(call)} writes in place"
