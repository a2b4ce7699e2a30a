"""The ``hare`` command line: one table maps every command to its function.

``hare run [RECIPE]`` runs every step; ``hare <step> [RECIPE]`` runs one step (and, first, any
upstream step whose outputs are missing or stale). With no recipe, the embedded demo recipe runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from typing import Callable

from hare.progress import setup_console
from hare.recipe import Recipe, RecipeError, load_recipe

log = logging.getLogger("hare")


def _pipeline_command(steps: list[str] | None) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        from hare.pipeline import Pipeline
        from hare.report.html import publish

        recipe = load_recipe(args.recipe)
        if args.out_dir:
            recipe.out_dir = args.out_dir
        force = list(args.force or [])
        if steps and getattr(args, "redo", False):
            force += steps
        status = Pipeline(recipe).run(targets=steps, force=force)
        publish(recipe.run_dir)
        report = recipe.run_dir / "report.html"
        print(f"{recipe.name}: " + ", ".join(f"{k} {v}" for k, v in status.items()))
        if report.exists() and (steps is None or "report" in steps):
            print(f"report: {report}")
        return 0

    return cmd


def cmd_validate(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    import yaml

    print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# {args.recipe or 'demo recipe'}: valid", file=sys.stderr)
    return 0


def _type_name(ann) -> str:
    import typing

    if typing.get_origin(ann) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(ann))
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def schema_lines(model: type = Recipe, prefix: str = "") -> list[str]:
    """Every recipe key with its type, default and description, nested sections indented."""
    from pydantic import BaseModel

    lines = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        sub = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)),
                   None)
        default = "" if f.is_required() else (" = " + repr(f.get_default(call_default_factory=True))
                                              if sub is None else "")
        tname = _type_name(ann)
        lines.append(f"{prefix}{name}: {tname if sub is None else ('[' + sub.__name__ + ']' if ann is not sub else sub.__name__)}"
                     f"{default}")
        if f.description:
            lines += [prefix + "    " + l for l in textwrap.wrap(f.description, 96)]
        if sub is not None:
            lines += schema_lines(sub, prefix + "  ")
    return lines


def cmd_schema(args: argparse.Namespace) -> int:
    print("\n".join(schema_lines()))
    return 0


def _step_help() -> dict[str, str]:
    from hare.pipeline import STEPS

    return {s.name: s.help for s in STEPS}



# name -> (function, one-line help). The single list of commands; README and tests read it.
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (_pipeline_command(None), "run every step of a recipe: corpus -> decontam -> mix -> tokenize -> "
                                     "train -> eval -> report (unchanged steps are reused)"),
    **{step: (_pipeline_command([step]), help_) for step, help_ in _step_help().items()},
    "validate": (cmd_validate, "check a recipe and print it with every default filled in"),
    "schema": (cmd_schema, "print every recipe key with its type, default and meaning"),
}


def build_parser() -> argparse.ArgumentParser:
    from hare import __version__
    from hare.pipeline import STEP_NAMES

    p = argparse.ArgumentParser(
        prog="hare",
        description="Train strong small language models on concise, diverse, quality-consistent, "
                    "decontaminated data (the HARE method). Run with no command to run the demo recipe.",
    )
    p.add_argument("--version", action="version", version=f"hare {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == "schema":
            continue
        sp.add_argument("recipe", nargs="?", default=None,
                        help="recipe YAML file (default: the embedded demo recipe, which needs no files)")
        if name == "validate":
            continue
        sp.add_argument("--out-dir", default=None, help="folder holding the runs (overrides the recipe's out_dir)")
        sp.add_argument("--force", action="append", choices=STEP_NAMES, metavar="STEP",
                        help=f"redo STEP and every step after it even if unchanged; repeatable; one of: "
                             f"{', '.join(STEP_NAMES)}")
        if name != "run":
            sp.add_argument("--redo", action="store_true", help=f"redo the {name} step even if it is unchanged")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_console(logging.DEBUG if args.verbose else logging.INFO)
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    func = COMMANDS[args.command][0]
    try:
        return func(args)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
