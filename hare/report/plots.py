"""Every plot of the report, drawn with matplotlib and returned as inline SVG (no external file)."""

from __future__ import annotations

import io

from markupsafe import Markup


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> Markup:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buf.getvalue()
    return Markup(text[text.index("<svg"):])


def loss(metrics: list[dict]) -> Markup:
    """Training loss and learning rate against the step; one loss line per training seed when the
    records carry one (a soup's runs)."""
    fig, ax = _pyplot().subplots(1, 2, figsize=(10, 3.2))
    seeds = list(dict.fromkeys(m.get("seed") for m in metrics))
    for seed in seeds:
        run = [m for m in metrics if m.get("seed") == seed]
        ax[0].plot([m["step"] for m in run], [m["loss"] for m in run], color=None if len(seeds) > 1 else "#1f77b4",
                   label=f"seed {seed}")
    if len(seeds) > 1:
        ax[0].legend(fontsize=8)
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training loss")
    ax[0].grid(alpha=.3)
    first = [m for m in metrics if m.get("seed") == seeds[0]] if metrics else []
    ax[1].plot([m["step"] for m in first], [m["lr"] for m in first], color="#ff7f0e")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("learning rate")
    ax[1].grid(alpha=.3)
    fig.tight_layout()
    return _svg(fig)


def heldout_curves(curves: dict[str, list[dict]], baseline: float | None = None) -> Markup:
    """Held-out bits per byte against training tokens, one line per curve (the study's arms)."""
    fig, ax = _pyplot().subplots(figsize=(7, 3.6))
    for name, points in curves.items():
        pts = [p for p in points if p["tokens"] > 0]
        ax.plot([p["tokens"] for p in pts], [p["bits_per_byte"] for p in pts], marker="o", ms=3, label=name)
    if baseline is not None:
        ax.axhline(baseline, color="#999", ls="--", lw=1)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("held-out bits per byte")
    ax.grid(alpha=.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _svg(fig)


def quality(sources: dict, grades: bool = False) -> Markup:
    """Quality-score histograms of the sources scored (``.quality.before``/``.after``): the cleaned
    documents, and those kept by the band; ``grades``: on the annotator's 0-5 scale (score x 5)."""
    per_source = {name: (st.quality.before, st.quality.after) for name, st in sources.items() if st.quality}
    n = max(1, len(per_source))
    fig, axes = _pyplot().subplots(1, n, figsize=(4 * n, 2.8), squeeze=False)
    for ax, (name, (before, after)) in zip(axes[0], per_source.items()):
        top = 5 if grades else 1
        edges = [top * i / len(before) for i in range(len(before))]
        w = top / len(before)
        ax.bar(edges, before, width=w, align="edge", color="#cccccc", label="cleaned")
        ax.bar(edges, after, width=w, align="edge", color="#2ca02c", label="kept")
        ax.set_title(name)
        ax.set_xlabel("predicted grade" if grades else "quality score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _svg(fig)


def reasons(removed: dict[str, int]) -> Markup:
    """Documents removed, by reason."""
    items = sorted(removed.items(), key=lambda kv: kv[1])
    fig, ax = _pyplot().subplots(figsize=(7, 0.35 * len(items) + 0.8))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#9467bd")
    ax.set_xlabel("documents removed")
    ax.grid(alpha=.3, axis="x")
    fig.tight_layout()
    return _svg(fig)


def topic_shares(clusters: dict) -> Markup:
    """Each topic's share of the characters before and after the mix's sampling, largest topic first.
    ``clusters``: topic number -> its ``.name``, ``.chars_before`` and ``.chars_after``."""
    topics = [(f"{c}: {t.name[:40]}", t.chars_before, t.chars_after) for c, t in clusters.items()]
    before_total = sum(b for _, b, _ in topics) or 1
    after_total = sum(a for _, _, a in topics) or 1
    rows = sorted(topics, key=lambda t: t[1])
    y = list(range(len(rows)))
    fig, ax = _pyplot().subplots(figsize=(8, 0.28 * len(rows) + 1.0))
    ax.barh([v + 0.2 for v in y], [b / before_total for _, b, _ in rows], height=0.4, color="#bbbbbb",
            label="before sampling")
    ax.barh([v - 0.2 for v in y], [a / after_total for _, _, a in rows], height=0.4, color="#2ca02c",
            label="after sampling")
    ax.set_yticks(y)
    ax.set_yticklabels([label for label, _, _ in rows], fontsize=8)
    ax.set_xlabel("share of characters")
    ax.legend(loc="lower right")
    ax.grid(alpha=.3, axis="x")
    fig.tight_layout()
    return _svg(fig)
