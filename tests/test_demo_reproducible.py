"""The embedded demo recipe gives byte-identical outputs on two runs in two different folders.

The two runs happen in this one process, one after the other, so the second starts with everything
the first imported and logged: what made the demo's pydoc corpus differ from run to run. To stay
fast the test renders a fixed choice of modules (those whose pages showed the reading process's
state among them), runs without the synthetic-data steps (their teacher is too slow for a test) and
trains 4 steps.
"""

import json
from pathlib import Path

import pytest
import yaml

import hare.corpus.read as read
from hare.cli import main
from hare.recipe import DEFAULT_RECIPE

STEPS = ["corpus", "decontam", "cluster", "mix", "tokenize", "train"]
MODULES = ["argparse", "array", "ast", "base64", "builtins", "calendar", "collections", "contextlib", "csv",
           "ctypes", "ctypes.wintypes", "dataclasses", "datetime", "decimal", "email.message", "enum", "functools",
           "http.client", "inspect", "itertools", "json", "logging", "pathlib", "pyexpat", "re", "sqlite3",
           "string", "textwrap", "typing", "unittest.mock", "xml.parsers.expat", "zipfile"]
# Files that hold timings: compared only for presence (the logs, the manifests, training's metrics)
# or without their timing fields.
TIMED = {"log.txt", "manifest.json", "metrics.jsonl"}
TIMING_FIELDS = {"cluster/stats.json": ("seconds", "docs_per_s")}


def files(step_dir: Path) -> dict[str, bytes | None]:
    out = {}
    for p in sorted(step_dir.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(step_dir))
            fields = TIMING_FIELDS.get(f"{step_dir.name}/{rel}")
            if fields:
                out[rel] = json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k not in fields})
            else:
                out[rel] = None if p.name in TIMED else p.read_bytes()
    return out


@pytest.mark.slow
def test_demo_gives_identical_corpus_tokens_and_model_in_two_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "pydoc_modules", lambda: MODULES)
    r = yaml.safe_load(DEFAULT_RECIPE.read_text(encoding="utf-8"))
    r["synth"]["enabled"] = False
    r["train"].update(max_steps=4, micro_batch_size=2, grad_accum=1, threads=1, checkpoint_every=2, log_every=2,
                      warmup_steps=1, stages=[{"name": "stage1", "weights": {"d1": 1}}])
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(yaml.safe_dump(r))
    for name in ("a", "b"):
        assert main(["train", str(recipe), "--out-dir", str(tmp_path / name)]) == 0
    for step in STEPS:
        a, b = files(tmp_path / "a" / "demo" / step), files(tmp_path / "b" / "demo" / step)
        assert a.keys() == b.keys(), step
        assert [k for k in a if a[k] != b[k]] == [], step
    assert (tmp_path / "a" / "demo" / "train" / "model" / "model.safetensors").is_file()
    assert len(list((tmp_path / "a" / "demo" / "tokenize").rglob("tokens.bin"))) >= 1
