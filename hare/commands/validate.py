"""``hare validate [RECIPE]``: check a recipe and print it with every default filled in."""

from __future__ import annotations

import argparse
import sys

from hare.recipe import load_recipe

HELP = "check a recipe and print it with every default filled in"


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("recipe", nargs="?", default=None,
                    help="recipe YAML file (default: the embedded demo recipe, which needs no files)")


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    import yaml

    print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# {args.recipe or 'demo recipe'}: valid", file=sys.stderr)
    return 0
