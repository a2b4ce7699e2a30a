"""The report step: renders every step before it, and the outputs made outside the pipeline
(``hare.report.html``)."""

from __future__ import annotations

import logging
from pathlib import Path

from hare.core.step import ReportSection, Stats, Step, StepContext

log = logging.getLogger("hare.report")


class ReportStats(Stats):
    bytes: int


class ReportStep(Step):
    """Renders every step before it in the pipeline, and the ``extras`` (outputs made outside it)."""

    name = "report"
    help = "write report.html"
    reads = ("name",)
    stats = ReportStats

    def __init__(self, extras: list[ReportSection] = ()):
        self.extras = list(extras)

    def depends_on(self, earlier: list[str]) -> tuple[str, ...]:
        return tuple(earlier)

    def run(self, ctx: StepContext) -> ReportStats:
        # jinja2: imported when the step runs, not to list the steps
        from hare.report.html import render_report, write_report

        sections: list[tuple[ReportSection, Path]] = [(ctx.steps[n], ctx.deps[n]) for n in ctx.deps]
        sections += [(s, ctx.run_dir / s.name) for s in self.extras]
        path = write_report(ctx.run_dir, render_report(ctx.run_dir, ctx.config.name, sections), ctx.out)
        log.info("report: %s", ctx.run_dir / "report.html")
        return ReportStats(bytes=path.stat().st_size)
