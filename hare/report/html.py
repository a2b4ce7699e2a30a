"""The report step: one static report.html with the run's counts, cleaning reasons, loss curve and evaluations.

Plots are drawn with matplotlib and inlined as SVG, so the file has no external reference and can be
mailed or archived as is. The report is written into the step folder and copied to
``runs/<name>/report.html``.
"""

from __future__ import annotations

import html
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from hare.io import atomic_open, read_json, read_jsonl

log = logging.getLogger("hare.report")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em} th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#777;font-size:.9em} pre{white-space:pre-wrap;background:#f8f8f8;padding:.5em;font-size:.85em;margin:0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.5em;margin-bottom:.8em}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v))
    return html.escape(str(v))


def _opt(v: float | None) -> Any:
    return "–" if v is None else round(v, 2)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='{'n' if isinstance(c, (int, float)) else ''}'>{_fmt(c)}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def near_duplicate_examples(corpus_dir: Path, k: int = 3) -> str:
    """A few removed near-duplicates beside the document kept in their place."""
    from hare.corpus.document import read_shards

    picked = []
    for d in read_shards(corpus_dir / "removed", prefix="removed"):
        if d.metadata.get("duplicate_of") and len(picked) < k:
            picked.append(d)
    if not picked:
        return ""
    want = {d.metadata["duplicate_of"] for d in picked}
    kept = {d.id: d for folder in ("train", "heldout") for d in read_shards(corpus_dir / folder) if d.id in want}
    out = []
    for d in picked:
        other = kept.get(d.metadata["duplicate_of"])
        out.append(f"<p class='muted'>{html.escape(d.id)} removed as a near-duplicate of "
                   f"{html.escape(d.metadata['duplicate_of'])} (estimated Jaccard "
                   f"{d.metadata.get('jaccard_estimate', '?')})</p><div class='pair'><pre>{html.escape(d.text[:500])}"
                   f"</pre><pre>{html.escape(other.text[:500]) if other else ''}</pre></div>")
    return "".join(out)


def markdown_to_html(md: str) -> str:
    """A markdown table and the notes under it (as ``leaderboard.md`` writes them) as HTML."""
    rows, notes = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= {"-", ":"} for c in cells):
                rows.append([c.replace("**", "") for c in cells])
        elif line.strip():
            notes.append(line.strip().lstrip("- ").replace("\\*", "*"))
    out = table(rows[0], rows[1:]) if rows else ""
    return out + "".join(f"<p class='muted'>{html.escape(n)}</p>" for n in notes)


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def loss_plot(metrics: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    steps = [m["step"] for m in metrics]
    ax[0].plot(steps, [m["loss"] for m in metrics], color="#1f77b4")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training loss")
    ax[0].grid(alpha=.3)
    ax[1].plot(steps, [m["lr"] for m in metrics], color="#ff7f0e")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("learning rate")
    ax[1].grid(alpha=.3)
    fig.tight_layout()
    return _svg(fig)


def quality_plot(per_source: dict[str, dict]) -> str:
    """Score histograms per source, before and after the quality band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(per_source))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 2.8), squeeze=False)
    for ax, (name, q) in zip(axes[0], per_source.items()):
        edges = [i / len(q["before"]) for i in range(len(q["before"]))]
        w = 1 / len(q["before"])
        ax.bar(edges, q["before"], width=w, align="edge", color="#cccccc", label="cleaned")
        ax.bar(edges, q["after"], width=w, align="edge", color="#2ca02c", label="kept")
        ax.set_title(name)
        ax.set_xlabel("quality score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _svg(fig)


def reasons_plot(removed: dict[str, int]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(removed.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 0.8))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#9467bd")
    ax.set_xlabel("documents removed")
    ax.grid(alpha=.3, axis="x")
    fig.tight_layout()
    return _svg(fig)


def topics_plot(topics: list[dict], clusters: dict[str, dict]) -> str:
    """Each topic's share of the characters before and after the mix's sampling, largest topic first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before_total = sum(c["chars_before"] for c in clusters.values()) or 1
    after_total = sum(c["chars_after"] for c in clusters.values()) or 1
    rows = sorted((t for t in topics if str(t["cluster"]) in clusters),
                  key=lambda t: clusters[str(t["cluster"])]["chars_before"])
    labels = [f"{t['cluster']}: {t['name'][:40]}" for t in rows]
    before = [clusters[str(t["cluster"])]["chars_before"] / before_total for t in rows]
    after = [clusters[str(t["cluster"])]["chars_after"] / after_total for t in rows]
    y = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.0))
    ax.barh([v + 0.2 for v in y], before, height=0.4, color="#bbbbbb", label="before sampling")
    ax.barh([v - 0.2 for v in y], after, height=0.4, color="#2ca02c", label="after sampling")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("share of characters")
    ax.legend(loc="lower right")
    ax.grid(alpha=.3, axis="x")
    fig.tight_layout()
    return _svg(fig)


def _load(folder: Path, name: str) -> Any:
    p = folder / name
    return read_json(p) if p.exists() else None


def build_report(run_dir: Path, recipe_name: str) -> str:
    parts = [f"<h1>hare run: {html.escape(recipe_name)}</h1>",
             f"<p class='muted'>{html.escape(str(run_dir.resolve()))}</p>"]

    # Steps
    rows = []
    manifests = {}
    for step in ("corpus", "decontam", "cluster", "mix", "tokenize", "train", "eval"):
        m = _load(run_dir / step, "manifest.json")
        if m is None:
            continue
        manifests[step] = m
        counts = {k: v for k, v in m.get("counts", {}).items() if isinstance(v, (int, float))}
        rows.append([step, m["timings"]["seconds"], ", ".join(f"{k}={_fmt(v)}" for k, v in list(counts.items())[:8])])
    parts += ["<h2>Steps</h2>", table(["step", "seconds", "counts"], rows)]

    # Corpus
    cstats = _load(run_dir / "corpus", "stats.json")
    if cstats:
        s = cstats["summary"]
        parts.append("<h2>Corpus</h2>")
        parts.append(f"<p>{s['read']:,} documents read: {s['train']:,} kept for training, {s['heldout']:,} held out "
                     f"for evaluation, {s['removed']:,} removed, {s['quarantined']:,} quarantined.</p>")
        rows = [[name, st["docs_in"], st["chars_in"], sum(st["removed"].values()), st["quarantined"], st["train"],
                 st["heldout"], st["chars_out"]] for name, st in cstats["sources"].items()]
        parts.append(table(["source", "docs in", "chars in", "removed", "quarantined", "train", "held out",
                            "chars out"], rows))
        parts.append("<h3>Cleaning: documents removed, by reason</h3>")
        removed = s["removed_by_reason"]
        if removed:
            parts.append(table(["reason", "documents"], [[k, v] for k, v in removed.items()]))
            parts.append(reasons_plot(removed))
        parts.append("<p class='muted'>Documents changed by line-level rules: "
                     + ", ".join(f"{k}: {v:,}" for k, v in s["formatter_changes"].items()) + "</p>")
        mh = cstats.get("minhash")
        if mh:
            parts.append(f"<h3>Near-duplicates</h3><p>MinHash LSH over {mh['documents']:,} cleaned documents: "
                         f"{mh['candidate_pairs']:,} candidate pairs, {mh['linked_pairs']:,} confirmed, "
                         f"{mh['duplicates']:,} documents removed in {mh['clusters']:,} clusters "
                         "(the first document read of each cluster is kept).</p>")
            parts.append(near_duplicate_examples(run_dir / "corpus"))
        q = cstats.get("quality")
        if q:
            parts.append("<h3>Quality consistency</h3>")
            parts.append(f"<p>A classifier trained on {q['reference_docs']:,} reference documents against "
                         f"{q['raw_docs']:,} raw ones (held-out accuracy {q['heldout_accuracy']:.1%}) scores every "
                         f"cleaned document; those outside [{q['min_score']}, {q['max_score']}] are removed. "
                         f"Terms that read most like the reference: "
                         f"{html.escape(', '.join(q['terms']['reference'][:10]))}; least: "
                         f"{html.escape(', '.join(q['terms']['raw'][:10]))}.</p>")
            parts.append(quality_plot({n: st["quality"] for n, st in cstats["sources"].items() if "quality" in st}))

    # Decontamination
    dstats = _load(run_dir / "decontam", "stats.json")
    if dstats:
        parts.append("<h2>Decontamination</h2>")
        parts.append(f"<p>{dstats['ngram']}-gram overlap, policy <b>{dstats['policy']}</b>: {dstats['docs_in']:,} "
                     f"documents in, {dstats['docs_dropped']:,} dropped, {dstats['docs_cut']:,} cut; characters "
                     f"{dstats['chars_in']:,} &rarr; {dstats['chars_out']:,}. {dstats['ignored_common_ngrams']:,} "
                     "matching n-grams were ignored as common text.</p>")
        rows = [[name, b["items_indexed"], b["items_found"],
                 sum(v for k, v in b.items() if k not in ("items_indexed", "items_found"))]
                for name, b in dstats["benchmarks"].items()]
        parts.append(table(["evaluation set", "items indexed", "items found in corpus", "documents affected"], rows))
        for name, why in dstats.get("missing_benchmarks", {}).items():
            parts.append(f"<p class='muted'>{html.escape(name)}: {html.escape(why)}</p>")
        matches = list(read_jsonl(run_dir / "decontam" / "matches.jsonl")) if (
            run_dir / "decontam" / "matches.jsonl").exists() else []
        acted = [m for m in matches if m["action"] in ("dropped", "cut", "dropped_after_cut")]
        by_source: dict[str, list[dict]] = {}
        for m in sorted(acted, key=lambda m: -m["example"].get("matched_words", 0)):
            group = by_source.setdefault(m["example"]["item_source"], [])
            if len(group) < 3:
                group.append(m)
        if by_source:
            parts.append("<h3>Examples, longest overlaps first (corpus passage | evaluation item)</h3>")
        for source, group in by_source.items():
            parts.append(f"<h4>{html.escape(source)}</h4>")
            for m in group:
                ex = m["example"]
                parts.append(f"<p class='muted'>{html.escape(m['id'])} &mdash; {m['action']}, overlap rate "
                             f"{m['rate']:.1%}, {ex.get('matched_words', '?')} words in a row from "
                             f"{html.escape(ex.get('item_id', ''))}</p>"
                             f"<div class='pair'><pre>{html.escape(ex['corpus'])}</pre>"
                             f"<pre>{html.escape(ex['item'])}</pre></div>")

    # Topics
    mstats = _load(run_dir / "mix", "stats.json")
    kstats = _load(run_dir / "cluster", "stats.json")
    topics = _load(run_dir / "cluster", "topics.json")
    if kstats and kstats.get("enabled") and topics:
        parts.append("<h2>Topics</h2>")
        parts.append(f"<p>{kstats['docs']:,} training documents in {kstats['k']:,} topics (k: "
                     f"{html.escape(kstats['k_rule'])}), embedded with {html.escape(kstats['embedder'])} "
                     f"({kstats['dims']} dimensions) and clustered with mini-batch k-means; each topic is named by "
                     "its highest mean TF-IDF terms.</p>")
        clusters = (mstats or {}).get("clusters", {})
        if clusters:
            parts.append(f"<p>The mix covers topics with temperature T = {mstats['cluster_temperature']:g}: within "
                         "each source, a topic of C characters gets a share proportional to C<sup>1/T</sup> of the "
                         "source's budget (T = 1: as found, large T: uniform).</p>")
        rows = []
        for t in sorted(topics, key=lambda t: -t["size"]):
            c = clusters.get(str(t["cluster"]), {})
            rows.append([t["cluster"], t["size"], t["chars"], c.get("docs_after", "–"), c.get("share_after", "–"),
                         ", ".join(t["top_terms"][:8]), t["examples"][0]["id"] if t["examples"] else ""])
        parts.append(table(["topic", "documents", "characters", "documents in mix", "share of mix", "top terms",
                            "nearest document"], rows))
        if clusters:
            parts.append(topics_plot(topics, clusters))

    # Mix
    if mstats:
        parts.append("<h2>Training mix</h2>")
        rows = [[n, st["weight"], st["docs"], st["chars"], st["share"], st["epochs"]] for n, st in mstats["sources"].items()]
        parts.append(table(["source", "weight", "documents", "characters", "share", "epochs"], rows))

    # Tokenize
    idx = _load(run_dir / "tokenize", "index.json")
    if idx:
        parts.append("<h2>Tokens</h2>")
        parts.append(f"<p>vocabulary {idx['vocab_size']:,}</p>")
        parts.append(table(["data part", "documents", "tokens", "sequence length", "sequences", "unused tail"],
                           [[name, p["num_docs"], p["num_tokens"], p["seq_len"], p["num_sequences"],
                             p["unused_tail_tokens"]] for name, p in idx["parts"].items()]))

    # Training
    mpath = run_dir / "train" / "metrics.jsonl"
    if mpath.exists():
        metrics = list(read_jsonl(mpath))
        tm = manifests.get("train", {}).get("counts", {})
        parts.append("<h2>Training</h2>")
        if tm:
            parts.append(f"<p>{tm.get('params', 0):,} parameters, {tm.get('step', 0):,} steps, "
                         f"{tm.get('tokens', 0):,} tokens ({tm.get('epochs', 0)} epochs), final loss "
                         f"{tm.get('final_loss', float('nan')):.4f}.</p>")
        if metrics:
            parts.append(loss_plot(metrics))
            stages = []
            for m in metrics:
                if not stages or stages[-1][0] != m.get("stage"):
                    stages.append([m.get("stage"), m["step"], m["step"]])
                stages[-1][2] = m["step"]
            if len(stages) > 1:
                parts.append("<p class='muted'>stages: " + ", ".join(
                    f"{html.escape(str(n))} (steps {a}&ndash;{b})" for n, a, b in stages) + "</p>")
            last = metrics[-1]
            parts.append(f"<p class='muted'>last logged: {last.get('tokens_per_s', 0):,.0f} tokens/s"
                         + (f", MFU {last['mfu']:.1%}" if "mfu" in last else "") + "</p>")

    # Evaluation
    es = _load(run_dir / "eval", "summary.json")
    if es:
        parts.append("<h2>Evaluation</h2>")
        if "perplexity" in es:
            p = es["perplexity"]
            parts.append(table(["held-out documents", "tokens", "loss (nats/token)", "perplexity", "bits per byte"],
                               [[p["docs"], p["tokens"], p["loss"], p["perplexity"], p["bits_per_byte"]]]))
        if es.get("tasks"):
            parts.append("<h3>lm-evaluation-harness</h3>")
            parts.append(table(["task", "metric", "value", "stderr"],
                               [[t["task"], t["metric"], t["value"], t["stderr"] if t["stderr"] is not None else ""]
                                for t in es["tasks"]]))
        for name, why in es.get("skipped_tasks", {}).items():
            parts.append(f"<p class='muted'>task {html.escape(name)} skipped: {html.escape(why)}</p>")
        board = run_dir / "eval" / "leaderboard.md"
        if board.exists():
            parts.append("<h3>The paper's table</h3>")
            parts.append(markdown_to_html(board.read_text(encoding="utf-8")))

    audit = _load(run_dir / "audit", "audit.json")
    if audit:
        parts.append("<h2>Leakage audit</h2>")
        parts.append(f"<p>{audit['n']}-gram accuracy (%) at {audit['k']} start points on each benchmark split (D) "
                     f"and on its rewritten twin (D&prime;, rewriter: {html.escape(audit['rewriter'])}); "
                     "&Delta; = D &minus; D&prime;. A clearly positive &Delta; signals memorised benchmark data.</p>")
        parts.append(table(["benchmark", "split", "items", "D′ (rewritten)", "D (original)", "Δ"],
                           [[r["benchmark"], r["split"], r["items"], _opt(r["D_rewritten"]), _opt(r["D"]),
                             _opt(r["delta"])] for r in audit["rows"]]))
        if audit.get("clean_subset"):
            parts.append("<h3>Clean subset (items sharing no 13-gram with the training data)</h3>")
            parts.append(table(["benchmark", "split", "items", "seen in training", "n-gram acc (all)",
                                "n-gram acc (clean)", "choice acc (all)", "choice acc (clean)"],
                               [[r["benchmark"], r["split"], r["items"], r["items_seen_in_training"], _opt(r["D"]),
                                 _opt(r["D_clean"]), _opt(r.get("choice_acc")), _opt(r.get("choice_acc_clean"))]
                                for r in audit["rows"]]))

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>hare: {html.escape(recipe_name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def rebuild(run_dir: Path) -> None:
    """Rewrite a run's report in place (after ``hare audit`` added a section)."""
    run_dir = Path(run_dir)
    with atomic_open(run_dir / "report" / "report.html") as f:
        f.write(build_report(run_dir, run_dir.name))
    publish(run_dir)


def run_report(ctx) -> dict:
    text = build_report(ctx.run_dir, ctx.recipe.name)
    with atomic_open(ctx.out / "report.html") as f:
        f.write(text)
    publish(ctx.run_dir)
    log.info("report: %s", ctx.run_dir / "report.html")
    return {"bytes": len(text.encode())}


def publish(run_dir: Path) -> None:
    """Copy report/report.html to the run folder, where people look for it."""
    src = run_dir / "report" / "report.html"
    if src.exists():
        tmp = run_dir / ".report.html.tmp"
        shutil.copyfile(src, tmp)
        tmp.replace(run_dir / "report.html")
