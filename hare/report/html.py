"""The report step: one static report.html rendered from every step's typed stats.

Each section is a Jinja2 template over one step's (or another output's) stats model: the template
``<name>.html.j2`` in ``hare/report/templates/`` or in a ``templates/`` folder beside the step's
module, else the step's ``report_template`` string, else a plain table of its stats. A template gets
``stats`` (the model), ``data`` (``ReportSection.report_data``: what it reads from the step's other files),
``manifest`` and ``plots`` (``hare.report.plots``). Plots are inline SVG, so the file has no
external reference and can be mailed or archived as is. The report is written into the step folder
and copied to ``runs/<name>/report.html``.
"""

from __future__ import annotations

import html
import inspect
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from pydantic import ValidationError

from hare.core.io import atomic_open, read_json
from hare.core.step import ReportSection
from hare.report import plots

log = logging.getLogger("hare.report")

TEMPLATES = Path(__file__).with_name("templates")


def num(v: Any) -> str:
    """A number as the report prints it (thousands separated, floats to 4 places below 100)."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return "" if v is None else str(v)


def markdown_to_html(md: str) -> Markup:
    """A markdown table and the notes under it (as ``leaderboard.md`` writes them) as HTML."""
    rows, notes = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= {"-", ":"} for c in cells):
                rows.append([c.replace("**", "") for c in cells])
        elif line.strip():
            notes.append(line.strip().lstrip("- ").replace("\\*", "*"))
    out = ""
    if rows:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        out = f"<table><tr>{head}</tr>{body}</table>"
    return Markup(out + "".join(f"<p class='muted'>{html.escape(n)}</p>" for n in notes))


def _environment(sections: list[ReportSection]) -> jinja2.Environment:
    dirs = [TEMPLATES] + [Path(inspect.getfile(type(s))).parent / "templates" for s in sections]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in dict.fromkeys(dirs) if d.is_dir()]),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(num=num, pct=lambda v: f"{v:.1%}", markdown=markdown_to_html,
                       pairs=lambda d, n=8: ", ".join(f"{k}={num(v)}" for k, v in list(d.items())[:n]))
    env.globals.update(plots=plots)
    return env


def _template(env: jinja2.Environment, section: ReportSection) -> jinja2.Template:
    try:
        return env.get_template(f"{section.name}.html.j2")
    except jinja2.TemplateNotFound:
        if section.report_template:
            return env.from_string(section.report_template)
        return env.get_template("_generic.html.j2")


def render_report(run_dir: Path, title: str, sections: list[tuple[ReportSection, Path]]) -> str:
    """The report of ``run_dir``: a table of the steps that ran, then one section per output found."""
    env = _environment([s for s, _ in sections])
    steps, parts = [], []
    for section, folder in sections:
        try:
            stats = section.read_stats(folder) if folder.is_dir() else None
        except ValidationError as e:  # written by another version of hare: say so, render the rest
            log.warning("report: %s/%s does not match %s; section left out (%s)", folder, section.stats_file,
                        section.stats.__name__, str(e).splitlines()[0])
            parts.append(f"<p class='muted'>{html.escape(section.name)}: {html.escape(section.stats_file)} was "
                         "written by another version of hare; run the step again to show it</p>")
            continue
        if stats is None:
            continue
        manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").exists() else None
        if manifest is not None:
            steps.append((section.name, manifest["timings"]["seconds"], manifest.get("counts", {})))
        parts.append(_template(env, section).render(
            section=section, stats=stats, data=section.report_data(folder, stats), manifest=manifest, folder=folder))
    return env.get_template("report.html.j2").render(title=title, run_dir=str(run_dir.resolve()), steps=steps,
                                                     sections=[Markup(p) for p in parts])


def render_template(name: str, **context: Any) -> str:
    """One of the report's templates rendered on its own (the study's report), with the same filters."""
    return _environment([]).get_template(name).render(**context)


def write_report(run_dir: Path, text: str, folder: Path | None = None) -> Path:
    """Write ``report.html`` into the report step's folder and publish it to the run folder."""
    folder = folder or run_dir / "report"
    with atomic_open(folder / "report.html") as f:
        f.write(text)
    publish(run_dir)
    return folder / "report.html"


def publish(run_dir: Path) -> None:
    """Copy report/report.html to the run folder, where people look for it."""
    src = run_dir / "report" / "report.html"
    if src.exists():
        tmp = run_dir / ".report.html.tmp"
        shutil.copyfile(src, tmp)
        tmp.replace(run_dir / "report.html")
