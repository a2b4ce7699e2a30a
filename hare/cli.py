"""The ``hare`` command line: the table of commands and the error handling.

``hare run [RECIPE]`` runs every step; ``hare <step> [RECIPE]`` runs one step (and, first, any
upstream step whose outputs are missing or stale). With no recipe, the embedded demo recipe runs.
Every other command is a module of ``hare.commands`` (``add_arguments``, ``run``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hare.commands import pipeline
from hare.core.progress import setup_console
from hare.recipe import RecipeError

log = logging.getLogger("hare")

# The commands besides the steps': name -> module of hare.commands. The single list of commands;
# the docs and tests read it (with the steps', ``commands()``).
COMMANDS: dict[str, str] = {
    "eval": "eval",
    "sft": "sft",
    "serve": "serve",
    "chat": "chat",
    "validate": "validate",
    "audit": "audit",
    "schema": "schema",
    "tools-data": "tools_data",
    "eval-tools": "eval_tools",
    "soup": "soup",
    "study": "study",
}


def commands() -> dict[str, str]:
    """Every command and its one-line help: ``run``, one per step, then ``COMMANDS``."""
    out = {"run": pipeline.help_of(None)}
    out.update({s.name: s.help for s in pipeline.steps()})
    out.update({name: _module(name).HELP for name in COMMANDS})
    return out


def _module(name: str):
    return importlib.import_module(f"hare.commands.{COMMANDS[name]}")


def _function(name: str):
    """The function that runs command ``name``."""
    if name in COMMANDS:
        return _module(name).run
    return pipeline.command(None if name == "run" else [name])


def build_parser() -> argparse.ArgumentParser:
    from hare import __version__

    p = argparse.ArgumentParser(
        prog="hare",
        description="Train strong small language models on concise, diverse, quality-consistent, "
                    "decontaminated data (the HARE method). Run with no command to run the demo recipe.",
    )
    p.add_argument("--version", action="version", version=f"hare {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error (accepted anywhere on the command line)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    steps = {s.name for s in pipeline.steps()}
    for name, help_ in commands().items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name in COMMANDS:
            _module(name).add_arguments(sp)
        else:
            pipeline.add_arguments(sp, name if name in steps else None)
    return p


# Exit statuses: 2 for a command that cannot run as asked (usage: arguments, recipe), 1 for input
# data that cannot be used or a step that failed, 130 when interrupted.
EXIT_USAGE, EXIT_DATA = 2, 1


def _error_line(e: BaseException) -> str:
    """One line for an error: its message, or its type and message for an unexpected one."""
    from hare.core.io import DataError, RecordError

    msg = " ".join(str(e).split()) if not isinstance(e, RecipeError) else str(e)
    if isinstance(e, (DataError, RecordError, RecipeError, OSError)) and msg:
        return msg
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("serve", "chat"):
        import signal

        # Interactive commands stop on Ctrl-C even when started from a shell's background job,
        # which starts its children with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line (before or after the command).
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_console(logging.DEBUG if args.verbose else logging.INFO)
    if args.command is None:
        args = parser.parse_args(["run", *argv])
    func = _function(args.command)
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        from hare.pipeline import PipelineError

        usage = isinstance(e, (RecipeError, PipelineError))
        print(f"error: {_error_line(e)}", file=sys.stderr)
        if not usage:
            print("(run again with --debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE if usage else EXIT_DATA


if __name__ == "__main__":
    raise SystemExit(main())
