"""The package's layers, read from every module's imports (with ``ast``, functions included):

- a stage package (``STAGES``) imports no other stage package and no orchestrator;
- the shared layer (``SHARED``: files, documents, the step contract, config markers, the model)
  imports no stage package and no orchestrator;
- the orchestrators (``TOP``: the recipe that composes the stages' configs, the step registry, the
  runner, the study, the commands and the command line) may import anything.
A new package must be placed in one of the three sets, or this test fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hare

PACKAGE = Path(hare.__file__).parent
STAGES = {"corpus", "train", "evals", "report", "chat", "synth"}
SHARED = {"core", "model", "filters"}
TOP = {"recipe", "registry", "pipeline", "study", "commands", "cli", "__main__", "__init__"}


def module_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The hare modules (or packages) a module's code imports, relative imports resolved."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)  # "from hare import registry"
    return {m for m in out if m == "hare" or m.startswith("hare.")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Why a module's imports break the layering (empty when they do not)."""
    own = layer_of(module)
    problems = []
    for target in sorted(imported(ast.parse(source), module, is_package)):
        other = layer_of(target)
        if other not in STAGES | SHARED | TOP:
            continue  # a name imported from a package (from hare.core import dist), checked as hare.core
        if own in STAGES and ((other in STAGES and other != own) or other in TOP):
            problems.append(f"{module} (stage {own}) imports {target}")
        if own in SHARED and (other in STAGES or other in TOP):
            problems.append(f"{module} (shared layer) imports {target}")
    return problems


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    unplaced = {layer_of(module_of(p)) for p in MODULES} - (STAGES | SHARED | TOP)
    assert not unplaced, f"place these in STAGES, SHARED or TOP: {sorted(unplaced)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_stage_imports_another_stage_and_the_shared_layer_imports_none(path):
    source = path.read_text(encoding="utf-8")
    assert violations(source, module_of(path), path.name == "__init__.py") == []


def test_the_check_catches_what_it_must():
    assert violations("from hare.train.loop import train", "hare.corpus.steps")
    assert violations("def f():\n    import hare.evals.tasks\n", "hare.corpus.mix")
    assert violations("from ..evals import tasks", "hare.corpus.steps")
    assert violations("from hare.pipeline import Pipeline", "hare.report.html")
    assert violations("from hare.corpus.read import read_source", "hare.core.io")
    assert violations("from hare.corpus.clean import Cleaner", "hare.filters.minhash")
    assert violations("from hare import registry", "hare.model.model")
    assert violations("from hare.recipe import Recipe", "hare.corpus.mix")  # stages own their configs
    assert violations("from hare.corpus.config import CleanConfig", "hare.core.io")
    assert not violations("from hare.core.io import read_json\nfrom . import passes", "hare.corpus.steps")
    assert not violations("from hare.corpus.steps import CORPUS", "hare.registry")
