"""``hare run [RECIPE]`` and ``hare <step> [RECIPE]``: the pipeline's commands, one per step of
``hare.registry.STEPS``. A step command first brings any stale upstream step up to date; ``--redo``
forces the step itself, ``--force STEP`` a step and everything after it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from hare.recipe import Recipe, RecipeError, load_recipe


def steps() -> list:
    from hare.registry import STEPS

    return STEPS


def help_of(step: str | None) -> str:
    if step is None:
        return "run every step of a recipe: " + " -> ".join(s.name for s in steps()) + " (unchanged steps are reused)"
    return next(s.help for s in steps() if s.name == step)


def add_arguments(sp: argparse.ArgumentParser, step: str | None = None) -> None:
    """The arguments of ``hare run`` (``step`` None) and of a step's command."""
    step_names = [s.name for s in steps()]
    sp.add_argument("recipe", nargs="?", default=None,
                    help="recipe YAML file (default: the embedded demo recipe, which needs no files)")
    sp.add_argument("--out-dir", default=None, help="folder holding the runs (overrides the recipe's out_dir)")
    sp.add_argument("--force", action="append", choices=step_names, metavar="STEP",
                    help=f"redo STEP and every step after it even if unchanged; repeatable; one of: "
                         f"{', '.join(step_names)}")
    if step is not None:
        sp.add_argument("--redo", action="store_true", help=f"redo the {step} step even if it is unchanged")


def command(targets: list[str] | None) -> Callable[[argparse.Namespace], int]:
    """The function of ``hare run`` (``targets`` None) or of the commands that run ``targets``."""
    def run(args: argparse.Namespace) -> int:
        from hare.pipeline import Pipeline
        from hare.report.html import publish

        recipe = load_recipe(args.recipe)
        if args.out_dir:
            set_out_dir(recipe, args.out_dir)
        force = list(args.force or [])
        if targets and getattr(args, "redo", False):
            force += targets
        status = Pipeline(recipe).run(targets=targets, force=force)
        publish(recipe.run_dir)
        report = recipe.run_dir / "report.html"
        print(f"{recipe.name}: " + ", ".join(f"{k} {v}" for k, v in status.items()))
        if report.exists() and (targets is None or "report" in targets):
            print(f"report: {report}")
        return 0

    return run


def set_out_dir(recipe: Recipe, out_dir: str) -> None:
    """``--out-dir``: checked like the recipe's own ``out_dir``."""
    from pydantic import ValidationError

    try:
        recipe.out_dir = out_dir
    except ValidationError as e:
        raise RecipeError(f"--out-dir {out_dir}: {e.errors()[0]['msg']}") from None


def run_of_model(model: Path) -> Path | None:
    """The run folder of a model exported by a hare run (``runs/<name>/train/model``), else None."""
    return model.parent.parent if model.name == "model" and model.parent.name == "train" else None
