import re
import subprocess
import sys

import pytest

from hare.cli import build_parser, commands
from hare.pipeline import STEP_NAMES
from tests.conftest import ROOT

COMMANDS = commands()  # every command: run, one per step, and the others


def help_of(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "hare", *args, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_top_level_help_lists_every_command():
    text = help_of()
    for name in COMMANDS:
        assert name in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_subcommand_help_describes_every_option(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    text = help_of(command)
    for action in sub._actions:
        for opt in action.option_strings:
            assert opt in text
        if action.option_strings:
            assert action.help, f"{command} {action.option_strings} has no help"


def test_every_step_is_a_command():
    assert set(STEP_NAMES) <= set(COMMANDS)


def test_readme_lists_every_command_and_the_two_quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    for name in COMMANDS:
        assert f"hare {name}" in readme, name
    quick = readme.split("## Quickstart", 1)[1].split("##", 1)[0]
    assert re.findall(r"^make (\w+)", quick, re.M) == ["demo", "test"]


def test_ci_calls_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_schema_prints_every_section():
    out = subprocess.run([sys.executable, "-m", "hare", "schema"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    for key in ("sources:", "corpus:", "  clean:", "    min_words:", "decontam:", "train:", "  max_steps:"):
        assert key in out.stdout
