"""``hare d2`` and ``hare d3`` killed with SIGKILL midway (some answers cached, others not), then run
again, write exactly what an uninterrupted run writes: with the packaged teacher at the demo's
sampling temperatures, where the re-run sends only the missing requests, in batches of another
size (``teacher.batch_size`` says how the work is run, not what it gives)."""

from __future__ import annotations

import json
import os
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
from tests.conftest import ROOT
from tests.synth.test_steps import recipe

# What may differ between a resumed and an uninterrupted run: timings and how many answers came
# from the cache (a resumed run reads the killed run's answers back).
TIMED = {"log.txt"}
USAGE = ("usage", "templates", "task_usage")


def snapshot(step_dir: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted(step_dir.rglob("*")):
        if not p.is_file() or p.name in TIMED:
            continue
        rel = str(p.relative_to(step_dir))
        if p.name == "stats.json":
            out[rel] = {k: v for k, v in read_json(p).items() if k not in USAGE}
        elif p.name == "manifest.json":
            m = read_json(p)
            out[rel] = {"config": m["config"], "inputs": m.get("inputs"),
                        "counts": {k: v for k, v in m["counts"].items() if k != "sent"},
                        "outputs": sorted(Path(o["path"]).name for o in m["outputs"]
                                          if Path(o["path"]).name not in TIMED | {"stats.json"})}
        else:
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shared_data, smollm2):
    folder = tmp_path_factory.mktemp("synth-resume")
    path = recipe(folder, {"packaged": "smollm2", "batch_size": 2, "threads": 1}, "resume", shared_data)
    r = yaml.safe_load(path.read_text())
    for part in ("d2", "d3"):  # the demo's sampling: the defaults (D2 0.8, D3 0.7, top-p 0.95)
        r["synth"][part].pop("temperature")
    r["synth"]["d2"].update(docs_per_topic=3, max_tokens=24)
    r["synth"]["d3"].update(tasks=["qa", "summary"], seeds_from_d2=2, seeds_from_d1=1, max_tokens=24)
    r["synth"]["d3"]["datasets"] = []
    path.write_text(yaml.safe_dump(r))
    assert main(["d3", str(path), "--out-dir", str(folder / "straight")]) == 0
    return folder, path, folder / "straight" / "resume"


def kill_midway(cmd: list[str], cache: Path, total: int) -> int:
    """Run ``cmd`` until its cache holds at least one answer, then SIGKILL it; the answers it held."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    held = cache.read_bytes().count(b"\n") if cache.exists() else 0
    assert 0 < held < total, f"killed with {held} of {total} answers cached: not midway"
    return held


@pytest.mark.slow
@pytest.mark.parametrize("step", ["d2", "d3"])
def test_killed_generation_reruns_to_the_texts_of_an_uninterrupted_run(straight, step, tmp_path):
    folder, path, run = straight
    total = read_json(run / step / "stats.json")["requests"]
    assert total >= 4
    killed = tmp_path / "killed"
    for s in ("corpus", "decontam", "cluster", "d2")[: 4 if step == "d3" else 3]:
        shutil.copytree(run / s, killed / "resume" / s)
    cache = killed / "resume" / "synth-cache" / f"{step}.jsonl"
    held = kill_midway([sys.executable, "-m", "hare", step, str(path), "--out-dir", str(killed)], cache, total)
    assert not (killed / "resume" / step / "manifest.json").exists()
    r = yaml.safe_load(path.read_text())
    r["synth"]["teacher"]["batch_size"] = 3
    other = folder / "resume-batch3.yaml"
    other.write_text(yaml.safe_dump(r))
    assert main([step, str(other), "--out-dir", str(killed)]) == 0
    stats = read_json(killed / "resume" / step / "stats.json")
    assert stats["usage"]["cached"] >= held and stats["usage"]["sent"] <= total - held
    assert snapshot(killed / "resume" / step) == snapshot(run / step)
    straight_texts = [json.loads(line)["text"] for line in (run / "synth-cache" / f"{step}.jsonl").open()]
    assert len(set(straight_texts)) > 1  # sampled: the answers are not all one text
