"""Fault tests: each step killed with SIGKILL at a seeded random moment while it works, then run
again, writes exactly the files of an uninterrupted run.

The upstream steps are prepared once (an uninterrupted run of the small recipe of test_pipeline on
real text); for each step its upstream folders are copied into a fresh run folder, so that only the
step itself runs in the killed process. (The corpus and train steps have their own kill tests, with
checks of what they resume from: tests/corpus/test_corpus_step.py and tests/test_pipeline.py.)
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hare.cli import main
from hare.core.io import read_json
from hare.pipeline import Pipeline
from hare.recipe import load_recipe
from tests.conftest import ROOT
from tests.test_pipeline import make_inputs, recipe_dict

STEPS = ["decontam", "cluster", "mix", "tokenize", "eval"]
# What legitimately differs between two runs: the step's log (timestamps, rates), the manifest's
# timings, and the timing fields named below; compared without them. Paths into the run folder (the
# eval step's task files name their data files by absolute path) are compared relative to it, and the
# manifest's list of outputs by name (the sizes of files holding such paths depend on the folder).
TIMING_FILES = {"log.txt"}
TIMING_FIELDS = {("cluster", "stats.json"): ("seconds", "docs_per_s"), ("eval", "lm_eval_results.json"): ("date",)}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("faults")
    make_inputs(folder, shared_data)
    r = recipe_dict(shared_data)
    r["eval"] = {"tasks": ["hare_heldout", "arc_easy"], "limit": 8, "max_heldout_docs": 4, "batch_size": 4}
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(r))
    assert main(["eval", str(recipe), "--out-dir", str(folder / "straight")]) == 0  # and every step before it
    return folder, recipe, folder / "straight" / "t"


def snapshot(out_dir: Path, step: str) -> dict[str, bytes]:
    """Every file of a step's folder by relative path, less what holds timings (see above)."""
    step_dir = out_dir / "t" / step
    out = {}
    for p in sorted(step_dir.rglob("*")):
        if not p.is_file() or p.name in TIMING_FILES:
            continue
        rel = str(p.relative_to(step_dir))
        timing = TIMING_FIELDS.get((step, rel), ())
        if p.name == "manifest.json":
            m = read_json(p)
            m.pop("timings")
            for k in TIMING_FIELDS.get((step, "stats.json"), ()):
                m["counts"].pop(k, None)
            m["outputs"] = [o["path"] for o in m["outputs"] if Path(o["path"]).name not in TIMING_FILES]
            out[rel] = json.dumps(m, sort_keys=True).encode()
        elif timing:
            m = read_json(p)
            for k in timing:
                m.pop(k)
            out[rel] = json.dumps(m, sort_keys=True).encode()
        else:
            out[rel] = p.read_bytes()
        out[rel] = out[rel].replace(str(out_dir).encode(), b"<out-dir>")
    return out


def kill_while_working(cmd: list[str], step_dir: Path, delay: float) -> bool:
    """Start ``cmd``, wait until the runner has started the step (its pending mark is written just
    before), sleep ``delay`` seconds and SIGKILL it. True when the step was cut short (no manifest)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 600  # a loaded machine can take minutes to import torch
    while not (step_dir / ".pending.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert (step_dir / ".pending.json").exists(), "the step never started"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL and not (step_dir / "manifest.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_killed_step_reruns_to_the_outputs_of_an_uninterrupted_run(straight, step, tmp_path):
    _, recipe, run_dir = straight
    seconds = read_json(run_dir / step / "manifest.json")["timings"]["seconds"]
    rng = random.Random(f"kill-{step}")
    delay = rng.uniform(0.1, 0.9) * seconds
    for attempt in range(8):
        killed = tmp_path / f"try{attempt}"
        for s in Pipeline(load_recipe(recipe)).upstream([step])[:-1]:  # what it needs, done once
            shutil.copytree(run_dir / s, killed / "t" / s)
        cmd = [sys.executable, "-m", "hare", step, str(recipe), "--out-dir", str(killed)]
        if kill_while_working(cmd, killed / "t" / step, delay):
            break
        print(f"{step}: finished within {delay:.3f}s, before the kill; trying a shorter delay")
        delay /= 4
    else:
        pytest.fail(f"{step} always finished before the kill")
    print(f"{step}: killed {delay:.3f}s into a {seconds:.3f}s step (attempt {attempt + 1})")
    assert main([step, str(recipe), "--out-dir", str(killed)]) == 0
    assert snapshot(killed, step) == snapshot(run_dir.parent, step)
