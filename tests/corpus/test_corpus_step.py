"""The corpus step as a whole: the Ray executor against the local one, and kill-and-resume identity."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hare.cli import main
from hare.core.documents import shard_paths
from hare.core.io import read_json, read_jsonl
from tests.conftest import ROOT, nltk_texts


def _write_inputs(folder: Path) -> None:
    """Real text in three sources: web-like pages with contact lines, reviews with planted
    near-duplicates, a file with malformed lines (quarantined)."""
    rng = random.Random(0)
    reviews = [t for _, t in nltk_texts("movie_reviews", 400)]
    with open(folder / "web.jsonl", "w") as f:
        for name, text in nltk_texts("webtext"):
            for i in range(0, len(text), 3000):
                f.write(json.dumps({"id": f"{name}:{i}", "text": text[i:i + 3000] + "\nMail me at a.b@example.org"})
                        + "\n")
    with open(folder / "reviews.jsonl", "w") as f:
        for i, t in enumerate(reviews):
            f.write(json.dumps({"id": f"r{i}", "text": t}) + "\n")
        for i in range(0, 100, 5):  # near-duplicates: a few words changed
            words = reviews[i].split()
            for _ in range(4):
                words[rng.randrange(len(words))] = "changed"
            f.write(json.dumps({"id": f"copy{i}", "text": " ".join(words)}) + "\n")
        f.write('{"id": "broken", "text": \n')
        f.write(json.dumps({"id": "no-text", "body": "x"}) + "\n")


def _recipe(folder: Path, name: str, workers: int = 0, executor: str = "local") -> Path:
    r = {"name": name,
         "sources": [{"name": "web", "kind": "jsonl", "path": "web.jsonl", "id_field": "id"},
                     {"name": "reviews", "kind": "jsonl", "path": "reviews.jsonl", "id_field": "id"}],
         "corpus": {"dedup": "minhash", "shard_docs": 40, "heldout_fraction": 0.1},
         "execution": {"workers": workers, "executor": executor}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def _outputs(step: Path) -> dict:
    """Everything the step wrote that later steps or people read, shard by shard."""
    out = {"stats": read_json(step / "stats.json"), "quarantine": list(read_jsonl(step / "quarantine.jsonl"))}
    for folder, prefix in (("train", "shard"), ("heldout", "shard"), ("removed", "removed")):
        out[folder] = [(p.name, list(read_jsonl(p))) for p in shard_paths(step / folder, prefix)]
    return out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("corpus")
    _write_inputs(folder)
    assert main(["corpus", str(_recipe(folder, "c", workers=2)), "--out-dir", str(folder / "local")]) == 0
    return folder, _outputs(folder / "local" / "c" / "corpus")


def test_shards_accounting_and_near_duplicates(local_run):
    folder, out = local_run
    s = out["stats"]["summary"]
    assert s["shards"] > 10
    assert s["read"] == s["train"] + s["heldout"] + s["removed"] + s["quarantined"]
    assert s["quarantined"] == 2 and {q["line"] for q in out["quarantine"]} == {421, 422}
    assert s["removed_by_reason"]["near_duplicate"] >= 19
    near = {r["id"]: r["metadata"]["duplicate_of"] for _, recs in out["removed"] for r in recs
            if r["reason"] == "near_duplicate"}
    assert all(near.get(f"copy{i}") == f"r{i}" for i in range(0, 100, 5) if f"copy{i}" in near)
    assert s["formatter_changes"]["pii"] > 100
    assert not (folder / "local" / "c" / "corpus" / "work").exists()


def test_ray_executor_gives_the_same_output_as_the_local_executor(local_run):
    pytest.importorskip("ray")
    folder, out = local_run
    recipe = _recipe(folder, "c", executor="ray", workers=2)
    assert main(["corpus", str(recipe), "--out-dir", str(folder / "ray")]) == 0
    assert _outputs(folder / "ray" / "c" / "corpus") == out
    manifest = read_json(folder / "ray" / "c" / "corpus" / "manifest.json")
    assert manifest["config"]["execution"] == {}  # how the work is spread is not fingerprinted


def test_killed_corpus_step_resumes_from_finished_shards(local_run):
    folder, out = local_run
    recipe = _recipe(folder, "c", workers=1)
    step = folder / "killed" / "c" / "corpus"
    cmd = [sys.executable, "-m", "hare", "corpus", str(recipe), "--out-dir", str(folder / "killed")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    deadline = time.time() + 300
    while len(list((step / "work").glob("clean-*.npz"))) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (step / "manifest.json").exists()
    assert len(list((step / "work").glob("clean-*.npz"))) >= 4

    assert main(["corpus", str(recipe), "--out-dir", str(folder / "killed")]) == 0
    log = (folder / "killed" / "c" / "run.log").read_text()
    kept = re.search(r"corpus: resuming; .*?(\d+) cleaned shards kept", log)
    assert kept and int(kept.group(1)) >= 4
    assert _outputs(step) == out
    assert not (step / "work").exists()
