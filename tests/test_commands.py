"""Every command is a module of hare.commands with the same three names (docs/adding-a-command.md),
listed once in hare.cli.COMMANDS; the steps' commands come from the step registry."""

from __future__ import annotations

import argparse
import importlib

from hare.cli import COMMANDS, commands
from hare.registry import STEPS


def test_every_command_module_has_help_arguments_and_run():
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"hare.commands.{module}")
        assert isinstance(mod.HELP, str) and mod.HELP, name
        assert callable(mod.add_arguments) and callable(mod.run), name
        mod.add_arguments(argparse.ArgumentParser(prog=f"hare {name}"))


def test_the_table_holds_run_every_step_and_every_command_once():
    names = list(commands())
    assert names[0] == "run" and len(names) == len(set(names))
    assert [s.name for s in STEPS] == [n for n in names if n in {s.name for s in STEPS}]
    assert set(COMMANDS) <= set(names)
