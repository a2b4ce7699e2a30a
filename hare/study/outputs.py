"""The study's outputs: its tables (terminal, README), the plot and the HTML report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hare.core.io import atomic_path

if TYPE_CHECKING:
    from hare.study.run import ArmResult, StudyResult


def primary_task(result: StudyResult) -> str | None:
    """The task metric shown beside held-out bits per byte: held-out endings, else the first task."""
    metrics = sorted({m for a in result.arms for m in a.final
                      if m.startswith("task/") and m.endswith("/bits_per_byte")})
    ending = "task/heldout-ending/bits_per_byte"
    return ending if ending in metrics else (metrics[0] if metrics else None)


def plot_curves(result: StudyResult, path: Path) -> None:
    """Held-out bits per byte and the primary task's against training tokens: one line per arm (the
    mean over seeds), its 95 % interval shaded; PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = primary_task(result)
    panels = [("bits_per_byte", "held-out bits per byte")]
    if task:
        panels.append((task, f"{task.split('/')[1]}: gold bits per byte"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.2), squeeze=False)
    base = next(a for a in result.arms if a.arm == result.baseline)
    for ax, (m, label) in zip(axes[0], panels):
        for a in result.arms:
            pts = [p for p in a.curve if p["tokens"] > 0 and m in p]
            if not pts:
                continue
            ratio = a.ratios.get(m, {}).get("mean")
            line, = ax.plot([p["tokens"] for p in pts], [p[m] for p in pts], marker="o", ms=3,
                            label=a.arm + (f" (reaches {result.baseline} at {ratio:.2f}x tokens)"
                                           if ratio and a.arm != result.baseline else ""))
            if all(f"{m}_lo" in p for p in pts):
                ax.fill_between([p["tokens"] for p in pts], [p[f"{m}_lo"] for p in pts],
                                [p[f"{m}_hi"] for p in pts], color=line.get_color(), alpha=.15, lw=0)
        if m in base.final and base.final[m]["mean"] is not None:
            ax.axhline(base.final[m]["mean"], color="#999", ls="--", lw=1, label=f"{result.baseline}: final")
        ax.set_xlabel("training tokens")
        ax.set_ylabel(label)
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    n = len(result.seeds) or 1
    fig.suptitle(f"hare study: {result.recipe} ({result.tier}; {n} seed{'s' if n > 1 else ''}"
                 f"{', mean and 95 % interval' if n > 1 else ''})", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _iv(x: dict | None, digits: int = 4) -> str:
    """A mean and its interval: ``1.5954 [1.5712, 1.6196]``, or the mean alone."""
    if not x or x.get("mean") is None:
        return "—"
    if x.get("lo") is None:
        return f"{x['mean']:.{digits}f}"
    return f"{x['mean']:.{digits}f} [{x['lo']:.{digits}f}, {x['hi']:.{digits}f}]"


def _vs(a: ArmResult, m: str, baseline: str) -> str:
    d = a.vs_baseline.get(m)
    if a.arm == baseline or not d:
        return "—"
    return f"{_iv(d)} {d['verdict']}"


def _ratio(a: ArmResult, m: str, baseline: str) -> str:
    r = a.ratios.get(m)
    if a.arm == baseline or not r:
        return "—"
    if r["mean"] is None:
        return f"not reached ({r['reached']} of {r['of']} seeds reach it)"
    return _iv(r, 2).replace(" [", "x [") if r.get("lo") is not None else f"{r['mean']:.2f}x"


def markdown(result: StudyResult) -> str:
    """The study's tables (README and terminal): the arms on held-out bits per byte and the primary
    task, then every metric of every arm with its paired comparison."""
    task = primary_task(result)
    b = result.baseline
    n = len(result.seeds) or 1
    lines = [f"{result.tier}: {result.tier_note}" if result.tier_note else "", ""]
    head = ["arm", "mix docs", "unique tokens", "tokens (epochs)", "held-out bits/byte", f"vs {b}",
            f"tokens to {b}'s final"]
    if task:
        head += [f"{task.split('/')[1]} bits/byte", f"vs {b}", f"tokens to {b}'s final",
                 f"{task.split('/')[1]} acc"]
    lb = any(a.leaderboard for a in result.arms)
    head += (["leaderboard avg"] if lb else []) + (["audit Δ"] if any(a.audit for a in result.arms) else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in result.arms:
        if a.skipped:
            lines.append("| " + " | ".join([a.arm, f"not trained: {a.skipped}"] + [""] * (len(head) - 2)) + " |")
            continue
        ep = f"{a.tokens:,} ({a.epochs:.2f}{' over the cap' if a.over_cap else ''})" if a.epochs else f"{a.tokens:,}"
        row = [a.arm, f"{a.docs:,}", f"{a.unique_tokens:,}" if a.unique_tokens else "—", ep,
               _iv(a.final.get("bits_per_byte")), _vs(a, "bits_per_byte", b), _ratio(a, "bits_per_byte", b)]
        if task:
            acc = task.replace("/bits_per_byte", "/acc")
            row += [_iv(a.final.get(task)), _vs(a, task, b), _ratio(a, task, b), _iv(a.final.get(acc), 3)]
        if lb:
            avg = (a.leaderboard or {}).get("average")
            row.append("—" if avg is None else f"{avg:.2f}")
        if any(x.audit for x in result.arms):
            row.append(_audit_delta(a.audit))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Every metric at the last evaluation: mean over {n} seed{'s' if n > 1 else ''}"
              + (" [95 % interval]; the difference with " + b + " paired by seed" if n > 1 else "") + ".", ""]
    lines += [f"| metric | arm | value | vs {b} |", "|---|---|---|---|"]
    metrics = sorted({m for a in result.arms for m in a.final})
    for m in metrics:
        for a in result.arms:
            if m in a.final:
                lines.append(f"| {m} | {a.arm} | {_iv(a.final[m])} | {_vs(a, m, b)} |")
    return "\n".join(lines).lstrip("\n") + "\n"


def _audit_delta(audit: dict | None) -> str:
    if not audit:
        return "—"
    rows = audit.get("rows") or audit.get("benchmarks") or []
    deltas = [r.get("delta") for r in rows if isinstance(r, dict) and r.get("delta") is not None]
    return "—" if not deltas else f"{max(deltas):+.3f} (max)"


def write_outputs(result: StudyResult, out: Path, figure: Path | None = None) -> None:
    from hare.report.html import render_template

    plot_curves(result, out / "loss_vs_tokens.png")
    if figure is not None:
        figure.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(figure) as tmp:
            shutil.copyfile(out / "loss_vs_tokens.png", tmp)
    html = render_template("study.html.j2", result=result, table=markdown(result),
                           arms={a.arm: a.description for a in result.arms})
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(html, encoding="utf-8")
