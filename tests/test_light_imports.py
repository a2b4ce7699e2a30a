"""The CLI and the step registry load without the heavy libraries: ``hare --help``, ``hare corpus``
and every other command that does not run a model start without importing torch, transformers,
lm-eval or scikit-learn, nor the report's jinja2, D3's jsonschema or numpy (a step imports them
when it runs)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ["torch", "transformers", "lm_eval", "sklearn", "scipy", "datasets", "sentence_transformers", "matplotlib",
         "pyarrow", "ray", "jinja2", "jsonschema", "numpy"]


def test_the_cli_and_the_registry_import_no_heavy_library():
    code = ("import sys, json, contextlib, io\n"
            "import hare.cli, hare.registry\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    hare.cli.main(['--help'])\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
