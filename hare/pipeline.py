"""The runner: runs the steps of ``hare.registry.STEPS`` (or any list of ``Step`` objects) for a recipe.

Each step writes into ``runs/<name>/<step>/`` and finishes by writing ``stats.json`` (its typed
stats) and ``manifest.json`` (its fingerprinted config, the execution-only settings it ran with, the
fingerprints of its inputs, counts, timings, library versions and output files). The fingerprint
is made of the recipe values the step declares it reads, without the keys marked ``EXECUTION``,
with the fingerprints of its upstream steps and of the files it reads (``hare.core.step``).

- A step is skipped when its manifest's fingerprint equals the one computed now and its recorded
  outputs are intact.
- A step that was interrupted leaves ``.pending.json``; started again with the same fingerprint it
  is told to resume (training continues from its last checkpoint, the corpus step from its finished
  shards). Execution-only settings (workers, device, threads, logging and checkpoint cadence) are
  not in the fingerprint, so changing them keeps the work.
- A change of a ``CONTINUABLE`` key (``train.max_steps``) keeps the step's folder and tells it to
  resume, finished or not; the step decides what of its earlier work still holds.
- Otherwise the step's folder is emptied and the step runs afresh.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from hare.core import dist
from hare.core.io import fingerprint_obj, read_json, remove_stale_temps, write_json
from hare.core.progress import FileLog, step_output
from hare.core.step import ReportSection, Step, StepContext
from hare.recipe import Recipe
from hare.registry import REPORT_SECTIONS, STEPS

__all__ = ["Pipeline", "PipelineError", "StepContext", "STEPS", "STEP_NAMES", "build_report", "rebuild_report"]

log = logging.getLogger("hare.pipeline")

MANIFEST = "manifest.json"
PENDING = ".pending.json"
STEP_NAMES = [s.name for s in STEPS]


class PipelineError(RuntimeError):
    """A run that cannot go on as asked; the message says what to do instead."""


def versions() -> dict[str, str]:
    """The versions of Python and the main libraries, read from their installed metadata: a step that
    does not use PyTorch does not import it to write its manifest."""
    from importlib import metadata

    import hare

    out = {"python": platform.python_version(), "platform": platform.platform(), "hare": hare.__version__}
    for name in ("torch", "transformers", "tokenizers", "lm_eval", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # a missing optional library is just not listed
            pass
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


def _check_step_folder(out: Path) -> None:
    """Refuse to empty a folder that no hare step made: a step folder always holds the step's
    manifest or its pending mark (written first), unless it is empty."""
    if out.is_symlink() or not out.is_dir():
        raise PipelineError(f"{out} is not a folder of this run (a link or a file); refusing to replace it")
    if not ((out / MANIFEST).exists() or (out / PENDING).exists()) and any(out.iterdir()):
        raise PipelineError(f"{out} holds files that no hare step wrote (no {MANIFEST} or {PENDING}); "
                            "refusing to delete it: move it away or choose another name or out_dir")


def _read(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None


class Pipeline:
    """Runs the steps of one recipe, skipping those whose inputs and config are unchanged."""

    def __init__(self, recipe: Recipe, steps: list[Step] | None = None):
        self.recipe = recipe
        self.run_dir = recipe.run_dir
        self.steps = list(STEPS if steps is None else steps)
        self.by_name: dict[str, Step] = {}
        self.deps: dict[str, tuple[str, ...]] = {}
        for s in self.steps:
            if s.name in self.by_name:
                raise PipelineError(f"two steps are named '{s.name}'")
            deps = s.depends_on(list(self.by_name))
            unknown = [d for d in deps if d not in self.by_name]
            if unknown:
                raise PipelineError(f"step {s.name} comes after {unknown}, which are not earlier steps")
            self.by_name[s.name] = s
            self.deps[s.name] = deps
        self.names = list(self.by_name)
        self.fingerprints: dict[str, str] = {}

    def step_dir(self, name: str) -> Path:
        return self.run_dir / name

    def upstream(self, names: list[str]) -> list[str]:
        """Steps needed for ``names`` (their transitive dependencies), in pipeline order."""
        need: set[str] = set()
        stack = list(names)
        while stack:
            n = stack.pop()
            if n not in need:
                need.add(n)
                stack.extend(self.deps[n])
        return [s for s in self.names if s in need]

    def downstream(self, name: str) -> set[str]:
        """``name`` and every step that depends on it, directly or not."""
        out = {name}
        for s in self.names:
            if any(d in out for d in self.deps[s]):
                out.add(s)
        return out

    def fingerprint(self, step: Step) -> tuple[str, str, dict[str, Any]]:
        """(fingerprint, resume key, what the fingerprint is made of) of ``step`` now.

        The resume key leaves out the ``CONTINUABLE`` keys as well: work done under another value of
        them is handed to the step to continue."""
        inputs: dict[str, Any] = {d: self.fingerprints[d] for d in self.deps[step.name]}
        inputs.update(step.inputs(step.view(self.recipe)))
        key = {"step": step.name, "config": step.config(self.recipe), "inputs": inputs}
        resume = {**key, "config": step.config(self.recipe, without=("execution", "continuable"))}
        return fingerprint_obj(key), fingerprint_obj(resume), key

    def run(self, targets: list[str] | None = None, force: list[str] | None = None) -> dict[str, str]:
        """Run ``targets`` (default: every step) and what they need; returns step -> 'ran' | 'skipped'."""
        for n in (targets or []) + (force or []):
            if n not in self.by_name:
                raise PipelineError(f"unknown step '{n}'; steps: {', '.join(self.names)}")
        names = self.upstream(targets or self.names)
        forced: set[str] = set()
        for f in force or []:
            forced |= self.downstream(f)
        if dist.distributed():
            # Under torchrun only the train step runs, in every process; what it reads must be ready.
            dist.init(self.recipe.train.device)
            if [n for n in names if n != "train"] != [n for n in self.upstream(["train"]) if n != "train"] or force:
                raise PipelineError("under torchrun, run only 'hare train' (no --force); prepare its inputs first "
                                    "with a single process: hare tokenize RECIPE")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        status: dict[str, str] = {}
        t0 = time.perf_counter()
        with FileLog(self.run_dir / "run.log") if dist.is_main() else contextlib.nullcontext():
            log.info("run %s: steps %s", self.recipe.name, " -> ".join(names))
            for name in names:
                status[name] = self._run_step(self.by_name[name], name in forced)
            log.info("run %s finished in %.1fs: %s", self.recipe.name, time.perf_counter() - t0,
                     ", ".join(f"{k} {v}" for k, v in status.items()))
        return status

    def _decide(self, step: Step, fp: str, rk: str, forced: bool) -> str:
        """'skip', 'resume' or 'fresh' for ``step`` (read on the main process)."""
        out = self.step_dir(step.name)
        manifest, pending = _read(out / MANIFEST), _read(out / PENDING)
        if forced:
            return "fresh"
        if manifest and manifest.get("fingerprint") == fp and _outputs_intact(out, manifest.get("outputs", [])):
            return "skip"
        if pending and (pending.get("fingerprint") == fp or pending.get("resume_key") == rk):
            return "resume"
        if manifest and manifest.get("fingerprint") != fp and manifest.get("resume_key") == rk:
            return "resume"  # only a continuable key changed
        return "fresh"

    def _run_step(self, step: Step, forced: bool) -> str:
        out = self.step_dir(step.name)
        fp, rk, key = self.fingerprint(step)
        main = dist.is_main()
        decision = dist.broadcast_object(self._decide(step, fp, rk, forced) if main else None)
        if decision == "skip":
            log.info("step %s: unchanged, reusing %s", step.name, out)
            self.fingerprints[step.name] = fp
            return "skipped"
        if dist.distributed() and step.name != "train":
            raise PipelineError(f"step {step.name} is not up to date; under torchrun only the train step runs. "
                                f"Run 'hare teacher RECIPE' (it runs every step before train) in a single process "
                                f"first")
        resume = decision == "resume"
        if main:
            if out.exists() and not resume:
                _check_step_folder(out)
                shutil.rmtree(out)
            out.mkdir(parents=True, exist_ok=True)
            if resume and remove_stale_temps(out):
                log.info("step %s: removed the temporary files of writes cut short", step.name)
            (out / MANIFEST).unlink(missing_ok=True)
            write_json(out / PENDING, {"fingerprint": fp, "resume_key": rk})
        dist.barrier()
        deps = {d: self.step_dir(d) for d in self.deps[step.name]}
        ctx = StepContext(self.recipe, step.name, out, deps, resume, steps=dict(self.by_name))
        log.info("step %s: %s (%s)", step.name, "resuming" if resume else "running", step.help)
        start = time.time()
        t0 = time.perf_counter()
        with step_output(out / "log.txt") if main else contextlib.nullcontext():
            counts = step(ctx)
        seconds = time.perf_counter() - t0
        self.fingerprints[step.name] = fp
        if not main:
            return "ran"
        write_json(out / MANIFEST, {
            "step": step.name,
            "fingerprint": fp,
            "resume_key": rk,
            "config": key["config"],
            "execution": step.execution(self.recipe),
            "inputs": key["inputs"],
            "counts": counts,
            "timings": {"started": start, "seconds": round(seconds, 3)},
            "versions": versions(),
            "outputs": _outputs(out),
        })
        (out / PENDING).unlink()
        log.info("step %s: done in %.1fs", step.name, seconds)
        return "ran"


def _sections(run_dir: Path) -> list[tuple[ReportSection, Path]]:
    return [(s, run_dir / s.name) for s in STEPS if s.name != "report"] + \
           [(s, run_dir / s.name) for s in REPORT_SECTIONS]


def build_report(run_dir: str | Path, title: str) -> str:
    """The HTML report of a run folder made with the standard steps."""
    from hare.report.html import render_report

    return render_report(Path(run_dir), title, _sections(Path(run_dir)))


def rebuild_report(run_dir: str | Path) -> None:
    """Rewrite a run's report in place (after ``hare audit`` added a section)."""
    from hare.report.html import write_report

    run_dir = Path(run_dir)
    write_report(run_dir, build_report(run_dir, run_dir.name))
