"""The CLI and the step registry load without the heavy libraries: ``hare --help``, ``hare corpus``
and every other command that does not run a model start without importing torch, transformers,
lm-eval or scikit-learn, nor the report's jinja2, D3's jsonschema or numpy (a step imports them
when it runs)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, nltk_texts

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


def test_a_corpus_run_imports_neither_torch_nor_transformers(tmp_path):
    """Reading a corpus (``hare corpus`` on a recipe with a model section left at its preset) starts
    without PyTorch, transformers or lm-eval, in the run's process: the manifest reads library versions
    from their metadata, the pipeline's rank checks need no process group, and the model preset is
    checked without transformers when nothing overrides it."""
    with open(tmp_path / "docs.jsonl", "w") as f:
        for i, (_, text) in enumerate(nltk_texts("movie_reviews", 40)):
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    (tmp_path / "recipe.yaml").write_text(
        f"name: light\nout_dir: {tmp_path / 'runs'}\n"
        f"sources:\n  - {{name: docs, kind: jsonl, path: {tmp_path / 'docs.jsonl'}}}\n"
        "corpus: {heldout_fraction: 0.0, clean: {language_id: none}}\nexecution: {workers: 1}\n")
    code = ("import sys, json\n"
            "from hare.cli import main\n"
            f"main(['corpus', {str(tmp_path / 'recipe.yaml')!r}])\n"
            "loaded = {m.split('.')[0] for m in sys.modules}\n"
            "print(json.dumps(sorted(loaded & {'torch', 'transformers', 'lm_eval'})))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    manifest = json.loads(next((tmp_path / "runs").rglob("corpus/manifest.json")).read_text())
    assert manifest["versions"]["torch"] and manifest["versions"]["numpy"]
