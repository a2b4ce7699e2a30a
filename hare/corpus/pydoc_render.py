"""The rendering half of the pydoc source, run as a script: render modules' documentation as plain text.

``hare.corpus.read.read_pydoc_source`` starts this file as a fresh interpreter in isolated mode
(``python -I``, no environment) and sends it the module names on stdin; it renders each module in a
worker forked from itself, one worker per module, and writes ``[name, text, error]`` as one JSON
line per module, in order. It imports nothing but the standard library and nothing of hare: what
pydoc prints depends on what is imported (the subclasses of ``object``, logging's handlers), so the
workers must start from the same state on every run, whatever the reading process had imported.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import sys
import warnings


def _empty_environment() -> None:
    """Pool initializer: the rendering workers run with an empty environment. pydoc prints default
    arguments, and some are ``os.environ`` itself (``cgi.parse(environ=os.environ)``): with the real
    environment the documents would carry this machine's variables, secrets included, and differ
    from machine to machine."""
    os.environ.clear()


# Default values print with their memory address ("<object object at 0x7f6c0e34c160>"), which
# changes from run to run; the documents keep "<object object>".
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+\b")


def _render_module(name: str) -> tuple[str, str | None, str | None]:
    """Render one module's documentation as plain text in a worker; (name, text, error)."""
    import contextlib
    import io
    import pydoc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                obj, _ = pydoc.resolve(name)
                text = pydoc.render_doc(obj, title="%s", renderer=pydoc.plaintext)
            return name, _ADDRESS.sub("", text), None
        except BaseException as e:  # noqa: BLE001 - a module that cannot be documented is reported, not fatal
            return name, None, f"{type(e).__name__}: {e}"




def main() -> None:
    names = json.loads(sys.stdin.buffer.read())
    processes = int(sys.argv[1])
    ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
    out = sys.stdout.buffer
    with ctx.Pool(processes, initializer=_empty_environment, maxtasksperchild=1) as pool:
        for rec in pool.imap(_render_module, names, chunksize=1):
            out.write(json.dumps(rec).encode("ascii") + b"\n")
            out.flush()


if __name__ == "__main__":
    main()
