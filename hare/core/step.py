"""The step contract: what a pipeline step declares, what it is given, and what it returns.

A step is a subclass of ``Step`` that declares, as class attributes:

- ``name`` and ``help`` (its command, ``hare <name>``, and the line describing it);
- ``after``: the steps whose outputs it reads (``ctx.deps[name]`` is each one's folder);
- ``reads``: the recipe key paths it reads (``"corpus"``, ``"seed"``, ``"corpus.clean.min_words"``).
  It receives only those (``ctx.config``; reading another key raises ``UndeclaredRead``), and its
  fingerprint is made of exactly those values, without the keys the schema marks ``EXECUTION``
  (``hare.core.config``), plus the fingerprints of its upstream steps and of the files ``inputs()`` names;
- ``stats``: the pydantic model ``run`` returns. The runner writes it to ``stats.json``; the report
  reads it back into the same model and renders it with the step's template.

``run(ctx)`` does the work in ``ctx.out`` and returns the stats: it reads its config and folders,
calls the library function of its stage that does the work, and returns what that gives.
``step(ctx)`` runs it as the runner does: ``run``, then ``stats.json``, then the headline counts
for the manifest. A stage's steps live in ``hare/<stage>/steps.py``; adding a step is one class
there (or one module) and one entry in ``hare.registry.STEPS``; its report section
is the template ``<name>.html.j2`` (``hare/report/templates/``), or ``report_template``, or a table
of its stats when it has neither.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from hare.core.io import fingerprint_path, read_json, write_json
from hare.core.config import config_dump, marked_values


def numbers(model: BaseModel) -> dict[str, int | float]:
    """The top-level numeric fields of a model that are set."""
    return {k: v for k, v in model if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Stats(BaseModel):
    """A step's typed results (``stats.json``)."""

    model_config = ConfigDict(extra="forbid")

    def counts(self) -> dict[str, int | float]:
        """The headline numbers: the manifest's ``counts`` and the report's table of steps."""
        return numbers(self)

    def dump(self) -> dict[str, Any]:
        """What ``stats.json`` holds (absent values are left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class UndeclaredRead(AttributeError):
    """A step read a recipe key its ``reads`` does not declare."""


class ConfigView:
    """The part of a recipe a step declared in ``reads``: a key on one of the declared paths (or
    under one) reads through to the recipe; any other key raises ``UndeclaredRead``."""

    def __init__(self, obj: Any, declared: tuple[tuple[str, ...], ...], step: str, at: tuple[str, ...] = ()):
        self._obj, self._declared, self._step, self._at = obj, declared, step, at

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        path = self._at + (key,)
        if any(path[:len(d)] == d for d in self._declared):
            return getattr(self._obj, key)
        if any(d[:len(path)] == path for d in self._declared):
            return ConfigView(getattr(self._obj, key), self._declared, self._step, path)
        raise UndeclaredRead(f"step {self._step} reads recipe key '{'.'.join(path)}' but does not declare it "
                             f"(its reads: {', '.join('.'.join(d) for d in self._declared) or 'none'})")


@dataclass
class StepContext:
    """What a step is given: its config view (``config``, set when the step is called), its own folder,
    its upstream folders. ``steps`` holds the pipeline's step objects by name (the report renders each
    one's stats). The whole recipe is kept private: a step reads only what it declared."""

    _recipe: Any = field(repr=False)
    name: str
    out: Path
    deps: dict[str, Path]
    resume: bool = False
    steps: dict[str, "Step"] = field(default_factory=dict, repr=False)
    config: Any = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.out.parent


class ReportSection:
    """Something the report renders from typed data: a step's folder, or another output of a run
    (``hare audit``'s). ``stats`` is its model, read from ``stats_file`` in its folder."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    stats: ClassVar[type[Stats]] = Stats
    stats_file: ClassVar[str] = "stats.json"
    report_template: ClassVar[str | None] = None  # inline Jinja source, instead of templates/<name>.html.j2

    def read_stats(self, folder: Path) -> Stats | None:
        path = Path(folder) / self.stats_file
        return self.stats.model_validate(read_json(path)) if path.exists() else None

    def report_data(self, folder: Path, stats: Stats) -> dict[str, Any]:
        """Extra values the section's template needs beyond the stats (read from the step's own files)."""
        return {}


def _paths(reads: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(r.split(".")) for r in reads)


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = getattr(obj, key)
    return obj


class Step(ReportSection):
    """One step of the pipeline; see the module docstring."""

    help: ClassVar[str] = ""
    after: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()

    def depends_on(self, earlier: list[str]) -> tuple[str, ...]:
        """The upstream steps, given the names of the steps before this one in the pipeline."""
        return self.after

    def view(self, recipe: Any) -> ConfigView:
        return ConfigView(recipe, _paths(self.reads), self.name)

    def config(self, recipe: Any, without: tuple[str, ...] = ("execution",)) -> dict[str, Any]:
        """The declared recipe values, without fields marked with the roles in ``without``."""
        return {r: config_dump(_at(recipe, p), without) for r, p in zip(self.reads, _paths(self.reads))}

    def execution(self, recipe: Any) -> dict[str, Any]:
        """The declared keys marked ``EXECUTION`` and their values (recorded, never fingerprinted)."""
        out: dict[str, Any] = {}
        for r, p in zip(self.reads, _paths(self.reads)):
            out.update(marked_values(_at(recipe, p), "execution", r))
        return out

    def inputs(self, config: ConfigView) -> dict[str, Any]:
        """Fingerprints of the files outside the run that the step reads (``fingerprint_path``)."""
        return {}

    def run(self, ctx: StepContext) -> Stats:
        raise NotImplementedError

    def __call__(self, ctx: StepContext) -> dict[str, int | float]:
        """Run in ``ctx`` as the runner does: the work, ``stats.json``, and the headline counts."""
        ctx.config = self.view(ctx._recipe)
        stats = self.run(ctx)
        if not isinstance(stats, self.stats):
            raise TypeError(f"step {self.name} returned {type(stats).__name__}, not {self.stats.__name__}")
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, the main process writes
            write_stats(ctx.out, stats)
        return stats.counts()


def write_stats(folder: Path, stats: Stats) -> None:
    write_json(Path(folder) / "stats.json", stats.dump())


def file_inputs(**paths: str | Path | None) -> dict[str, Any]:
    """``Step.inputs`` for named files or folders; unset ones are left out."""
    return {k: fingerprint_path(v) for k, v in paths.items() if v}
