"""The step runner: corpus -> decontam -> cluster -> mix -> tokenize -> train -> eval -> report.

Each step writes into ``runs/<name>/<step>/`` and finishes by writing ``manifest.json`` (its
config, the fingerprints of its inputs, counts, timings and library versions). A step is skipped
when its manifest's fingerprint equals the one computed now and its recorded outputs are still
there. A step that was interrupted leaves ``.pending.json``; when it is started again with the
same fingerprint it is told to resume (training continues from its last checkpoint), otherwise
its folder is emptied first.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hare.io import fingerprint_obj, fingerprint_path, read_json, write_json
from hare.progress import FileLog
from hare.recipe import Recipe, section_dump
from hare.train import dist

log = logging.getLogger("hare.pipeline")

MANIFEST = "manifest.json"


class PipelineError(RuntimeError):
    """A run that cannot go on as asked; the message says what to do instead."""


PENDING = ".pending.json"


@dataclass
class StepContext:
    """What a step function gets: the recipe, its own folder and its upstream folders."""

    recipe: Recipe
    name: str
    out: Path
    deps: dict[str, Path]
    resume: bool = False
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.out.parent


@dataclass(frozen=True)
class Step:
    name: str
    deps: tuple[str, ...]
    config: Callable[[Recipe], Any]
    target: str  # "module:function" taking a StepContext and returning counts
    external: Callable[[Recipe], dict[str, Any]] = lambda r: {}
    help: str = ""

    def func(self) -> Callable[[StepContext], dict]:
        mod, fn = self.target.split(":")
        return getattr(importlib.import_module(mod), fn)


def _source_inputs(r: Recipe) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in r.sources:
        if s.kind == "pydoc":
            out[s.name] = {"python": sys.version, "stdlib": str(Path(os.__file__).parent)}
        else:
            base = Path(s.path)
            targets = sorted(base.parent.glob(base.name)) if not base.exists() else [base]
            out[s.name] = [fingerprint_path(t) for t in targets]
    return out


def _bench_inputs(r: Recipe) -> dict[str, Any]:
    d = r.decontam.benchmarks_dir
    return {"benchmarks_dir": fingerprint_path(d)} if d else {}


def _tok_inputs(r: Recipe) -> dict[str, Any]:
    return {"tokenizer": fingerprint_path(r.tokenizer.path)} if r.tokenizer.path else {}


# Corpus settings that change how the work is spread, never its output: not part of the fingerprint.
EXECUTION_ONLY = ("num_proc", "executor", "ray_address")

STEPS: list[Step] = [
    Step("corpus", (), lambda r: {"sources": section_dump(r.sources), "seed": r.seed,
                                  "corpus": {k: v for k, v in section_dump(r.corpus).items()
                                             if k not in EXECUTION_ONLY}},
         "hare.corpus.step:run_corpus", _source_inputs,
         "read the sources, clean them, keep a quality band, remove exact and near duplicates, hold out the evaluation slice"),
    Step("decontam", ("corpus",), lambda r: section_dump(r.decontam),
         "hare.corpus.decontam:run_decontam", _bench_inputs,
         "remove training text that overlaps held-out documents and benchmark items"),
    Step("cluster", ("decontam",), lambda r: {"cluster": section_dump(r.cluster), "seed": r.seed},
         "hare.corpus.cluster:run_cluster",
         help="embed the training documents, cluster them into topics and name each topic"),
    Step("mix", ("decontam", "cluster"), lambda r: {"mix": section_dump(r.mix), "seed": r.seed,
                                          "weights": {s.name: s.weight for s in r.sources}},
         "hare.corpus.mix:run_mix",
         help="sample the sources by weight, and their topics by temperature, into the training set"),
    Step("tokenize", ("mix",), lambda r: {"tokenizer": section_dump(r.tokenizer), "pack": section_dump(r.pack),
                                          "seed": r.seed},
         "hare.train.pack:run_tokenize", _tok_inputs,
         "train or load the tokenizer and pack the mix into token shards"),
    Step("train", ("tokenize",), lambda r: {"model": section_dump(r.model), "train": section_dump(r.train),
                                            "seed": r.seed},
         "hare.train.loop:run_train", help="train the model (resumes from the last checkpoint)"),
    Step("eval", ("train", "corpus", "decontam"), lambda r: section_dump(r.eval),
         "hare.evals.step:run_eval", help="held-out perplexity and lm-evaluation-harness tasks"),
    Step("report", ("corpus", "decontam", "cluster", "mix", "tokenize", "train", "eval"), lambda r: {"version": 1},
         "hare.report.html:run_report", help="write report.html"),
]
STEP_NAMES = [s.name for s in STEPS]
_BY_NAME = {s.name: s for s in STEPS}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("hare", "torch", "transformers", "tokenizers", "lm_eval", "numpy"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is just not listed
            pass
    return out


def upstream(names: list[str]) -> list[str]:
    """Steps needed for ``names`` (their transitive dependencies), in pipeline order."""
    need: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n not in need:
            need.add(n)
            stack.extend(_BY_NAME[n].deps)
    return [s for s in STEP_NAMES if s in need]


def downstream(name: str) -> set[str]:
    """``name`` and every step that depends on it, directly or not."""
    out = {name}
    for s in STEPS:
        if any(d in out for d in s.deps):
            out.add(s.name)
    return out


def _outputs(folder: Path) -> list[dict]:
    files = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in (MANIFEST, PENDING) and not p.name.startswith("."):
            files.append({"path": str(p.relative_to(folder)), "size": p.stat().st_size})
    return files


def _outputs_intact(folder: Path, recorded: list[dict]) -> bool:
    for o in recorded:
        p = folder / o["path"]
        if not p.is_file() or p.stat().st_size != o["size"]:
            return False
    return True


class Pipeline:
    """Runs the steps of one recipe, skipping those whose inputs and config are unchanged."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.run_dir = recipe.run_dir
        self.fingerprints: dict[str, str] = {}

    def step_dir(self, name: str) -> Path:
        return self.run_dir / name

    def fingerprint(self, step: Step) -> tuple[str, dict]:
        inputs = {d: self.fingerprints[d] for d in step.deps}
        inputs.update(step.external(self.recipe))
        key = {"step": step.name, "config": step.config(self.recipe), "inputs": inputs}
        return fingerprint_obj(key), key

    def run(self, targets: list[str] | None = None, force: list[str] | None = None) -> dict[str, str]:
        """Run ``targets`` (default: every step) and what they need; returns step -> 'ran' | 'skipped'."""
        for n in (targets or []) + (force or []):
            if n not in _BY_NAME:
                raise PipelineError(f"unknown step '{n}'; steps: {', '.join(STEP_NAMES)}")
        names = upstream(targets or STEP_NAMES)
        forced: set[str] = set()
        for f in force or []:
            forced |= downstream(f)
        if dist.distributed():
            # Under torchrun only the train step runs, in every process; what it reads must be ready.
            dist.init(self.recipe.train.device)
            if [n for n in names if n != "train"] != [n for n in upstream(["train"]) if n != "train"] or force:
                raise PipelineError("under torchrun, run only 'hare train' (no --force); prepare its inputs first "
                                   "with a single process: hare tokenize RECIPE")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        status: dict[str, str] = {}
        t0 = time.perf_counter()
        with FileLog(self.run_dir / "run.log") if dist.is_main() else contextlib.nullcontext():
            log.info("run %s: steps %s", self.recipe.name, " -> ".join(names))
            for name in names:
                status[name] = self._run_step(_BY_NAME[name], name in forced)
            log.info("run %s finished in %.1fs: %s", self.recipe.name, time.perf_counter() - t0,
                     ", ".join(f"{k} {v}" for k, v in status.items()))
        return status

    def _fresh(self, step: Step, fp: str) -> bool:
        out = self.step_dir(step.name)
        if not (out / MANIFEST).exists():
            return False
        m = read_json(out / MANIFEST)
        return m.get("fingerprint") == fp and _outputs_intact(out, m.get("outputs", []))

    def _run_step(self, step: Step, forced: bool) -> str:
        out = self.step_dir(step.name)
        fp, key = self.fingerprint(step)
        manifest_path = out / MANIFEST
        main = dist.is_main()
        fresh = dist.broadcast_object(not forced and self._fresh(step, fp) if main else None)
        if fresh:
            log.info("step %s: unchanged, reusing %s", step.name, out)
            self.fingerprints[step.name] = fp
            return "skipped"
        if dist.distributed() and step.name != "train":
            raise PipelineError(f"step {step.name} is not up to date; under torchrun only the train step runs. "
                               f"Run 'hare tokenize RECIPE' in a single process first")
        pending = out / PENDING
        resume = None
        if main:
            resume = (not forced and pending.exists() and read_json(pending).get("fingerprint") == fp)
            if out.exists() and not resume:
                shutil.rmtree(out)
            out.mkdir(parents=True, exist_ok=True)
            if manifest_path.exists():
                manifest_path.unlink()
            write_json(pending, {"fingerprint": fp})
        resume = dist.broadcast_object(resume)
        dist.barrier()
        ctx = StepContext(self.recipe, step.name, out, {d: self.step_dir(d) for d in step.deps}, resume)
        log.info("step %s: %s%s", step.name, "resuming" if resume else "running", f" ({step.help})")
        start = time.time()
        t0 = time.perf_counter()
        with FileLog(out / "log.txt") if main else contextlib.nullcontext():
            counts = step.func()(ctx) or {}
        seconds = time.perf_counter() - t0
        if not main:
            self.fingerprints[step.name] = fp
            return "ran"
        manifest = {
            "step": step.name,
            "fingerprint": fp,
            "config": key["config"],
            "inputs": key["inputs"],
            "counts": counts,
            "timings": {"started": start, "seconds": round(seconds, 3)},
            "versions": versions(),
            "outputs": _outputs(out),
        }
        write_json(manifest_path, manifest)
        pending.unlink()
        self.fingerprints[step.name] = fp
        log.info("step %s: done in %.1fs", step.name, seconds)
        return "ran"
