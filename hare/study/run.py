"""The data-efficiency study: models of one configuration trained on arms that differ only in data.

``hare study RECIPE`` answers the HARE paper's central question on the user's own data: what does
the corpus hare builds buy per training token? It

1. reads the recipe's sources once and holds out ``heldout_docs`` clean documents before anything
   else (chosen by a seeded hash of their ids among those the recipe's cleaning rules keep; exact
   copies of them are taken out of the rest), so no arm ever sees them;
2. makes the raw input: the rest as read, or, with ``noise`` (the default study on the embedded
   corpus), with crawl-like noise added deterministically (``hare.study.noise``);
3. trains one BPE tokenizer on the raw input, shared by every arm (bits per byte do not depend on
   the tokenizer, but the token budget does: one tokenizer makes "tokens" mean the same in every arm);
4. runs each arm as a recipe variant through the ordinary pipeline, in its own run folder
   (``arms/<arm>/``), so a study started again after a crash reuses every finished step. The arms
   share the model, seed, tokenizer, token budget and evaluation; only corpus, decontam, cluster
   and mix settings differ:

   - ``raw``: the input as read (no cleaning, no deduplication, no quality band, no topic
     balancing, no decontamination);
   - ``clean``: the recipe's cleaning rules and deduplication (exact, then MinHash);
   - ``hare``: the recipe's full D1: cleaning, deduplication, quality band, topic-balanced
     sampling, decontamination;
   - when the recipe has a teacher (``synth.enabled``), the paper's ablation of its synthetic parts:
     ``hare-d2`` (D1, then D1 + D2) and ``hare-d2-d3`` (D1, then D1 + D2 + D3), trained in the
     paper's two stages (the recipe's ``train.stages``, or D1 for half the budget, then the paper's
     stage-2 weights); both read one request cache, so D2 is generated once;

5. scores the held-out documents during training (``train.eval_every``: bits per byte at
   ``eval_points`` regular token counts), and, when benchmark files are given, runs the
   leaderboard suite (``--limit`` items per task) and the leakage audit on every arm;
6. writes ``study.json``, ``loss_vs_tokens.png`` and ``report.html``: the curves of every arm on
   one plot, the evaluation table, and for every arm the tokens it needed to reach the raw arm's
   final held-out bits per byte (linearly interpolated between evaluations), as a share of the raw
   arm's tokens: the data-efficiency ratio.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from hare.core.io import atomic_path, fingerprint_obj, fingerprint_path, read_json, read_jsonl, write_json, write_jsonl
from hare.core.text import normalize_for_dedup, text_hash
from hare.recipe import Recipe
from hare.study.arms import Arm, deep_merge, load_arms
from hare.study.noise import Noise

log = logging.getLogger("hare.study")

BASELINE = "raw"
# Recipe sections an arm may change; everything else is the same in every arm (the test checks it).
# The training stages are data too: which parts a model reads, and when.
DATA_SECTIONS = ("sources", "corpus", "decontam", "cluster", "synth", "mix")
DATA_KEYS = (("train", "stages"),)
# The paper's second stage (HARE-1.1B: D1 46.5 %, D2 13.63 %, D3 39.87 %), used when the recipe has no stages.
PAPER_STAGE2 = {"d1": 46.5, "d2": 13.63, "d3": 39.87}


class StudyConfig(BaseModel):
    """How a study is run (the ``hare study`` flags)."""

    arms: list[str] | None = Field(
        None, description="Arms to train, by name (default: every arm without synthetic parts, and those with when "
        "the recipe has a teacher).")
    arms_file: str | None = Field(None, description="A YAML file of arms of your own (the shape of "
                                  "hare/study/arms.yaml); an arm of a built-in name replaces it.")
    steps: int | None = Field(None, ge=1, description="Optimizer steps of every arm (default: train.max_steps).")
    tokens: int | None = Field(None, ge=1, description="Token budget of every arm (sets steps; rounded up).")
    preset: str | None = Field(None, description="Model preset of every arm (default: the recipe's).")
    eval_points: int = Field(10, ge=1, description="Held-out evaluations during training.")
    heldout_docs: int = Field(100, ge=1, description="Clean documents held out before anything else.")
    eval_docs: int = Field(64, ge=1, description="Held-out documents scored at each evaluation.")
    noise: Noise | None = Field(None, description="Crawl-like noise added to the input (None: the input as read).")
    benchmarks_dir: str | None = Field(None, description="Benchmark files: planted as noise, decontaminated against "
                                       "by the hare arm, and evaluated (leaderboard suite and leakage audit).")
    limit: int = Field(20, ge=1, description="Items per leaderboard task.")
    audit_items: int = Field(200, ge=1, description="Items per benchmark in the leakage audit.")


class ArmResult(BaseModel):
    arm: str
    description: str
    docs: int  # documents in the arm's training mix
    chars: int
    tokens: int  # tokens trained on
    curve: list[dict]  # held-out {"step", "tokens", "bits_per_byte", "loss"}
    final_bits_per_byte: float | None  # None: the arm was not trained (``skipped`` says why)
    tokens_to_baseline: float | None  # tokens to reach the baseline's final bits per byte (None: not reached)
    ratio: float | None  # tokens_to_baseline / the baseline's tokens
    leaderboard: dict[str, float | None] | None = None
    audit: dict[str, Any] | None = None
    synth: dict[str, dict[str, Any]] | None = None  # synthetic arms: per part, documents generated and kept
    skipped: str | None = None
    seconds: float


class StudyResult(BaseModel):
    recipe: str
    baseline: str
    data: dict[str, Any]
    arms: list[ArmResult]
    seconds: float


# ---- data


def _order_key(seed: int, doc_id: str) -> str:
    return hashlib.sha1(f"{seed}:{doc_id}".encode()).hexdigest()


def _source_inputs(recipe: Recipe) -> list[dict]:
    out = []
    for s in recipe.sources:
        d = s.model_dump(mode="json")
        if s.path:
            d["files"] = fingerprint_path(s.path)
        out.append(d)
    return out


def benchmark_texts(names: list[str], folder: str | None) -> list[str]:
    """The text of every item of the benchmarks found in ``folder`` (those missing are skipped)."""
    from hare.core.evalsets import load_benchmark
    from hare.core.evalsets.base import BenchmarkMissing

    texts = []
    for name in names:
        try:
            texts += [it.text() for it in load_benchmark(name, folder)]
        except BenchmarkMissing as e:
            log.info("study: benchmark %s not planted: %s", name, e)
    return texts


def prepare_data(recipe: Recipe, cfg: StudyConfig, out: Path) -> dict:
    """Held-out documents and the raw input of every source, in ``out/data`` (reused when unchanged)."""
    from hare.filters.clean import Cleaner
    from hare.corpus.read import Quarantine, read_source

    folder = out / "data"
    key = fingerprint_obj({"sources": _source_inputs(recipe), "clean": recipe.corpus.clean.model_dump(mode="json"),
                           "heldout_docs": cfg.heldout_docs, "seed": recipe.seed,
                           "noise": cfg.noise.model_dump() if cfg.noise else None,
                           "benchmarks": fingerprint_path(cfg.benchmarks_dir) if cfg.benchmarks_dir and cfg.noise
                           else None})
    manifest = folder / "manifest.json"
    if manifest.exists() and read_json(manifest).get("fingerprint") == key:
        log.info("study: data unchanged, reusing %s", folder)
        return read_json(manifest)
    if folder.exists():
        shutil.rmtree(folder)
    q = Quarantine()
    docs: list[dict] = []
    for src in recipe.sources:
        for d in read_source(src, q, recipe.corpus.max_line_bytes):
            docs.append({"id": d.id, "source": src.name, "text": d.text})
    if not docs:
        raise ValueError("the recipe's sources hold no documents")
    cleaner = Cleaner.from_config(recipe.corpus.clean)
    from hare.core.documents import Document

    heldout: list[dict] = []
    for d in sorted(docs, key=lambda d: _order_key(recipe.seed, d["id"])):
        if len(heldout) >= cfg.heldout_docs:
            break
        doc = Document(d["text"], d["id"], d["source"])
        if cleaner(doc)[0]:
            heldout.append({"id": d["id"], "source": d["source"], "text": doc.text, "raw": d["text"]})
    if len(heldout) < cfg.heldout_docs:
        log.warning("study: only %d documents pass the cleaning rules to be held out (asked %d)",
                    len(heldout), cfg.heldout_docs)
    taken = {h["id"] for h in heldout}
    seen = {text_hash(normalize_for_dedup(t)) for h in heldout for t in (h["text"], h["raw"])}
    pool = [d for d in docs if d["id"] not in taken and text_hash(normalize_for_dedup(d["text"])) not in seen]
    copies = len(docs) - len(heldout) - len(pool)
    items = benchmark_texts(recipe.decontam.benchmarks, cfg.benchmarks_dir) if cfg.noise and cfg.benchmarks_dir \
        else []
    sources: dict[str, dict] = {}
    for src in recipe.sources:
        mine = [d for d in pool if d["source"] == src.name]
        if cfg.noise:
            raw, counts = add_noise_of(mine, cfg.noise, recipe.seed, src.name, items)
        else:
            raw, counts = [{**d, "noise": []} for d in mine], {"clean_docs": len(mine), "raw_docs": len(mine)}
        path = folder / "raw" / f"{src.name}.jsonl"
        write_jsonl(path, ({"id": d["id"], "text": d["text"], "noise": d["noise"]} for d in raw))
        sources[src.name] = {"path": str(path), "chars": sum(len(d["text"]) for d in raw), **counts}
    write_jsonl(folder / "heldout.jsonl", ({"id": h["id"], "source": h["source"], "text": h["text"]}
                                           for h in heldout))
    info = {"fingerprint": key, "read": len(docs), "quarantined": len(q.records), "heldout": len(heldout),
            "heldout_copies_removed": copies, "heldout_path": str(folder / "heldout.jsonl"),
            "heldout_chars": sum(len(h["text"]) for h in heldout), "sources": sources,
            "benchmark_items_available": len(items)}
    write_json(manifest, info)
    log.info("study: %d documents read, %d held out, raw input of %s documents", len(docs), len(heldout),
             f"{sum(s['raw_docs'] for s in sources.values()):,}")
    return info


def add_noise_of(docs: list[dict], noise: Noise, seed: int, source: str, items: list[str]):
    from hare.study.noise import add_noise

    return add_noise(docs, noise, int(_order_key(seed, source)[:8], 16), items)


def prepare_tokenizer(recipe: Recipe, data: dict, out: Path) -> Path:
    """One byte-level BPE trained on a seeded sample of the raw input, shared by every arm."""
    from hare.train.pack import train_tokenizer

    if recipe.tokenizer.path:
        return Path(recipe.tokenizer.path)
    folder = out / "tokenizer"
    key = fingerprint_obj({"data": data["fingerprint"], "tokenizer": recipe.tokenizer.model_dump(mode="json"),
                           "seed": recipe.seed})
    stamp = out / ".tokenizer.json"
    if folder.is_dir() and stamp.exists() and read_json(stamp).get("fingerprint") == key:
        return folder
    texts = [r["text"] for s in data["sources"].values() for r in read_jsonl(s["path"])]
    rng = random.Random(recipe.seed)
    if len(texts) > recipe.tokenizer.train_docs:
        texts = rng.sample(texts, recipe.tokenizer.train_docs)
    tmp = out / ".tokenizer.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    train_tokenizer(texts, recipe.tokenizer.vocab_size, tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    write_json(stamp, {"fingerprint": key})
    return folder


# ---- arms


def step_tokens(recipe: Recipe) -> int:
    """Tokens of one optimizer step, over every process (torchrun's included)."""
    from hare.core import dist
    from hare.train.loop import tokens_per_step

    return tokens_per_step(recipe.train, recipe.pack.seq_len, dist.world_size())


def train_steps(recipe: Recipe, cfg: StudyConfig) -> int:
    if cfg.tokens:
        return max(1, math.ceil(cfg.tokens / step_tokens(recipe)))
    return cfg.steps or recipe.train.max_steps


def default_arms(recipe: Recipe, arms: dict[str, Arm]) -> list[str]:
    return [n for n, a in arms.items() if not a.synthetic] + \
        ([n for n, a in arms.items() if a.synthetic] if recipe.synth.enabled else [])


def synth_stages(recipe: Recipe, arm: Arm, steps: int) -> list[dict]:
    """The two stages of a synthetic arm within the study's budget: the recipe's stages (their
    explicit tokens scaled down when they would not fit), or D1 for half the budget, then the paper's
    stage-2 weights; weights of parts the arm has no data for are dropped."""
    parts = {"d1", *arm.synthetic}
    t = recipe.train
    budget = steps * step_tokens(recipe)
    stages = [s.model_dump(mode="json") for s in t.stages] or [
        {"name": "stage1", "tokens": budget // 2, "weights": {"d1": 1.0}},
        {"name": "stage2", "tokens": None, "weights": dict(PAPER_STAGE2)}]
    fixed = sum(s["tokens"] or 0 for s in stages)
    if fixed >= budget:  # keep the stages' proportions, and leave the last stage half the budget
        for s in stages:
            if s["tokens"]:
                s["tokens"] = max(1, s["tokens"] * budget // (2 * fixed))
    out = []
    for s in stages:
        w = {p: v for p, v in s["weights"].items() if p in parts and v > 0}
        if w:
            out.append({**s, "weights": w})
    if out:
        out[-1]["tokens"] = None  # the last stage runs to the end of the budget
    return out


def arm_recipe(recipe: Recipe, name: str, arm: Arm, cfg: StudyConfig, out: Path, data: dict,
               tokenizer: Path) -> Recipe:
    """The recipe of one arm: the study's recipe with the study's settings (shared by every arm), then
    the arm's overlay (``hare.study.arms``: data only)."""
    r = recipe.model_dump(mode="json")
    r["name"] = name
    r["out_dir"] = str(out / "arms")
    r["sources"] = [{**s, "kind": "jsonl", "path": data["sources"][s["name"]]["path"], "text_field": "text",
                     "id_field": "id", "limit": None} for s in r["sources"]]
    for s in r["sources"]:
        for k in ("split", "config_name", "allow_hub"):
            s.pop(k, None)
    r["corpus"]["heldout_fraction"] = 0.0  # the study holds out its own documents, before any arm
    # D1 arms: no synthetic parts, one training stage over the D1 mix
    r["synth"]["enabled"] = False
    r["train"]["stages"] = []
    r["sft"]["enabled"] = False
    r["decontam"]["heldout"] = False
    r["tokenizer"]["path"] = str(tokenizer)
    if cfg.preset:
        r["model"] = {"preset": cfg.preset, "overrides": {}}
    steps = train_steps(recipe, cfg)
    if arm.synthetic:
        if not recipe.synth.enabled:
            raise ValueError(f"arm {name} needs a teacher: the recipe's synth.enabled is false")
        r["synth"]["enabled"] = True
        # one request cache for every synthetic arm: their D1 and topics are the same, so is D2
        r["synth"]["cache_dir"] = str(out / "synth-cache")
        r["train"]["stages"] = synth_stages(recipe, arm, steps)
    r["train"].update(max_steps=steps, eval_every=max(1, math.ceil(steps / cfg.eval_points)),
                      eval_docs=data["heldout_path"], eval_max_docs=cfg.eval_docs)
    r["eval"] = {**r["eval"], "heldout_perplexity": False, "limit": cfg.limit,
                 "tasks": ["leaderboard"] if cfg.benchmarks_dir else []}
    if cfg.benchmarks_dir:
        r["decontam"]["benchmarks_dir"] = cfg.benchmarks_dir
    outside = sorted(set(arm.overlay) - set(DATA_SECTIONS))
    if outside:
        raise ValueError(f"arm {name}: an arm changes data only ({', '.join(DATA_SECTIONS)}), not {outside}")
    return Recipe.model_validate(deep_merge(r, arm.overlay))


def interpolate_tokens(curve: list[dict], target: float) -> float | None:
    """Tokens at which ``curve`` first reaches ``target`` bits per byte, linear between evaluations."""
    prev = None
    for p in curve:
        if p["bits_per_byte"] <= target:
            if prev is None or prev["bits_per_byte"] == p["bits_per_byte"]:
                return float(p["tokens"])
            f = (prev["bits_per_byte"] - target) / (prev["bits_per_byte"] - p["bits_per_byte"])
            return prev["tokens"] + f * (p["tokens"] - prev["tokens"])
        prev = p
    return None


def _audit(model_dir: Path, recipe: Recipe, cfg: StudyConfig, out: Path) -> dict | None:
    from hare.evals.audit import run_audit
    from hare.evals.rewrite import DeterministicRewriter

    summary = out / "audit.json"
    if summary.exists() and summary.stat().st_mtime >= (model_dir / "model.safetensors").stat().st_mtime:
        return read_json(summary)
    res = run_audit(model_dir, recipe.decontam.benchmarks, cfg.benchmarks_dir, out,
                    DeterministicRewriter(seed=recipe.seed), max_items=cfg.audit_items, device="cpu", run_dir=recipe.run_dir, seed=recipe.seed)
    return res


def synth_survival(recipe: Recipe, arm: Arm) -> dict[str, dict[str, Any]]:
    """Per synthetic part of ``arm``: documents the teacher gave, kept by curation, and why removed."""
    parts = read_json(recipe.run_dir / "curate" / "stats.json").get("parts", {})
    return {p: {"generated": parts.get(p, {}).get("docs_in", 0), "kept": parts.get(p, {}).get("docs_out", 0),
                "removed": parts.get(p, {}).get("removed", {})} for p in arm.synthetic}


def run_arm(recipe: Recipe, name: str, arm: Arm, cfg: StudyConfig) -> dict:
    """Run one arm's pipeline. A synthetic arm whose part curation emptied is not trained: its row
    says so (a small teacher's text may not pass the quality bar)."""
    from hare.pipeline import Pipeline

    t0 = time.perf_counter()
    pipeline = Pipeline(recipe)
    done: dict[str, Any] = {}
    if arm.synthetic:
        pipeline.run(targets=["curate"])
        done["synth"] = synth_survival(recipe, arm)
        empty = [p for p, c in done["synth"].items() if not c["kept"]]
        if empty:
            done["skipped"] = "; ".join(
                f"curation kept no {p} document ({c['generated']} generated; removed: "
                f"{', '.join(f'{k} {v}' for k, v in sorted(c['removed'].items())) or 'none'})"
                for p, c in done["synth"].items() if p in empty)
            log.warning("study: arm %s not trained: %s", name, done["skipped"])
            return {**done, "seconds": time.perf_counter() - t0}
    targets = ["train", "eval"] if cfg.benchmarks_dir else ["train"]
    status = pipeline.run(targets=targets)
    log.info("study: arm %s: %s", name, ", ".join(f"{k} {v}" for k, v in status.items()))
    return {**done, "status": status, "seconds": time.perf_counter() - t0}


def collect(recipe: Recipe, arm: str, description: str, done: dict, cfg: StudyConfig) -> dict:
    run = recipe.run_dir
    seconds = done["seconds"]
    if done.get("skipped"):
        return {"arm": arm, "description": description, "docs": 0, "chars": 0, "tokens": 0, "curve": [],
                "final_bits_per_byte": None, "synth": done["synth"], "skipped": done["skipped"],
                "seconds": round(seconds, 1)}
    curve = [{k: r[k] for k in ("step", "tokens", "bits_per_byte", "loss")}
             for r in read_jsonl(run / "train" / "heldout.jsonl")]
    mix = read_json(run / "mix" / "stats.json")
    train = read_json(run / "train" / "stats.json")
    out = {"arm": arm, "description": description, "docs": mix["docs"], "chars": mix["chars"],
           "tokens": train["tokens"], "curve": curve, "final_bits_per_byte": curve[-1]["bits_per_byte"],
           "synth": done.get("synth"), "seconds": round(seconds, 1)}
    if cfg.benchmarks_dir and (run / "eval" / "stats.json").exists():
        out["leaderboard"] = read_json(run / "eval" / "stats.json").get("leaderboard")
        audit = _audit(run / "train" / "model", recipe, cfg, run / "audit")
        if audit is not None:
            out["audit"] = audit
    return out


def run_study(recipe: Recipe, cfg: StudyConfig, out: Path, figure: Path | None = None) -> StudyResult:
    """Run every arm of the study of ``recipe`` into ``out``; see the module docstring."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    known = load_arms(cfg.arms_file)
    arms = cfg.arms or default_arms(recipe, known)
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise ValueError(f"unknown arms {unknown}; known: {', '.join(known)} (add arms with an arms file)")
    if BASELINE not in arms:
        raise ValueError(f"a study needs its baseline arm '{BASELINE}' (arms: {', '.join(arms)})")
    if not recipe.synth.enabled and (wanted := [a for a in arms if known[a].synthetic]):
        raise ValueError(f"arms {', '.join(wanted)} need a teacher: the recipe's synth.enabled is false")
    data = prepare_data(recipe, cfg, out)
    tokenizer = prepare_tokenizer(recipe, data, out)
    rows = []
    for name in arms:
        r = arm_recipe(recipe, name, known[name], cfg, out, data, tokenizer)
        write_json(out / "arms" / f"{name}.recipe.json", r.model_dump(mode="json"))
        rows.append(collect(r, name, known[name].description, run_arm(r, name, known[name], cfg), cfg))
    base = next(r for r in rows if r["arm"] == BASELINE)
    target, base_tokens = base["final_bits_per_byte"], base["tokens"]
    for r in rows:
        t = interpolate_tokens(r["curve"], target) if r["curve"] else None
        r["tokens_to_baseline"] = None if t is None else round(t, 1)
        r["ratio"] = None if t is None else round(t / base_tokens, 4)
    result = StudyResult(recipe=recipe.name, baseline=BASELINE,
                         data={k: v for k, v in data.items() if k != "fingerprint"},
                         arms=[ArmResult(**r) for r in rows], seconds=round(time.perf_counter() - t0, 1))
    write_json(out / "study.json", result.model_dump(mode="json"))
    write_outputs(result, out, figure)
    return result


# ---- outputs


def plot_curves(result: StudyResult, path: Path) -> None:
    """Held-out bits per byte against training tokens, one line per arm (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    base = next(a for a in result.arms if a.arm == result.baseline)
    for a in result.arms:
        if not a.curve:
            continue
        pts = [p for p in a.curve if p["tokens"] > 0]
        ax.plot([p["tokens"] for p in pts], [p["bits_per_byte"] for p in pts], marker="o", ms=3,
                label=f"{a.arm}" + (f" (reaches {result.baseline} at {a.ratio:.2f}x tokens)" if a.ratio and
                                    a.arm != result.baseline else ""))
    ax.axhline(base.final_bits_per_byte, color="#999", ls="--", lw=1, label=f"{result.baseline}: final")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("held-out bits per byte")
    ax.set_title(f"hare study: {result.recipe}")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def markdown(result: StudyResult) -> str:
    """The study's table (README and terminal)."""
    lb = any(a.leaderboard for a in result.arms)
    head = ["arm", "mix docs", "mix chars", "tokens", "held-out bits/byte", f"tokens to {result.baseline}'s final",
            "ratio"] + (["leaderboard avg"] if lb else []) + (["audit Δ"] if any(a.audit for a in result.arms) else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in result.arms:
        if a.skipped:
            lines.append("| " + " | ".join([a.arm, f"not trained: {a.skipped}"] + [""] * (len(head) - 2)) + " |")
            continue
        row = [a.arm, f"{a.docs:,}", f"{a.chars:,}", f"{a.tokens:,}", f"{a.final_bits_per_byte:.4f}",
               "not reached" if a.tokens_to_baseline is None else f"{a.tokens_to_baseline:,.0f}",
               "—" if a.ratio is None else f"{a.ratio:.2f}x"]
        if lb:
            avg = (a.leaderboard or {}).get("average")
            row.append("—" if avg is None else f"{avg:.2f}")
        if any(x.audit for x in result.arms):
            row.append(_audit_delta(a.audit))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


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
