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

5. scores every arm during training (``train.eval_every``, ``eval_points`` regular token counts):
   held-out bits per byte (per source too) and task likelihood on multiple-choice items no arm saw
   (``hare.study.tasks``: endings of held-out documents, and with benchmark files their held-out
   items, the planted ones apart); with benchmark files, the leaderboard suite (``--limit`` items
   per task) and the leakage audit on every arm's first seed;
6. trains every arm with ``seeds`` seeds (model initialization and data order, the data the same),
   the first by the arm's train step, the others on its packed data (``train_seed``);
7. writes ``study.json``, ``loss_vs_tokens.png`` and ``report.html`` (``hare.study.outputs``): the
   mean curves of every arm with their 95 % intervals, every metric's final value with its interval,
   the difference with the raw arm paired by seed and whether it can be told apart from zero, the
   data-efficiency ratio (the tokens an arm needs to reach the raw arm's final value, linearly
   interpolated between evaluations, as a share of the raw arm's tokens) with its interval, every
   arm's unique tokens and epochs, and the tier the budget puts the study in (``tier_of``).
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from hare.core.io import atomic_path, fingerprint_obj, fingerprint_path, read_json, read_jsonl, write_json, write_jsonl
from hare.recipe import Recipe
from hare.study.arms import Arm, deep_merge, load_arms
from hare.study.noise import Noise
from hare.study.outputs import write_outputs
from hare.study.stats import interval, lower_is_better, tokens_to_reach, verdict
from hare.study.tasks import contaminated, seeded_key, split_benchmark_items, task_items

log = logging.getLogger("hare.study")

BASELINE = "raw"
# Recipe sections an arm may change; everything else is the same in every arm (the test checks it).
# The training stages are data too: which parts a model reads, and when.
DATA_SECTIONS = ("sources", "corpus", "decontam", "cluster", "synth", "mix")
DATA_KEYS = (("train", "stages"),)
SIGNAL_KEYS = ("distill",)  # train keys an arm may set: what the student learns from, not how long or how fast
# The paper's second stage (HARE-1.1B: D1 46.5 %, D2 13.63 %, D3 39.87 %), used when the recipe has no stages.
PAPER_STAGE2 = {"d1": 46.5, "d2": 13.63, "d3": 39.87}
TASKS_VERSION = 1  # how task items are made (hare.study.tasks): a change makes the data again
CREDIBLE_TOKENS_PER_PARAM, CREDIBLE_SEEDS = 10, 3


class StudyConfig(BaseModel):
    """How a study is run (the ``hare study`` flags)."""

    arms: list[str] | None = Field(
        None, description="Arms to train, by name (default: every arm without synthetic parts, and those with when "
        "the recipe has a teacher).")
    arms_file: str | None = Field(None, description="A YAML file of arms of your own (the shape of "
                                  "hare/study/arms.yaml); an arm of a built-in name replaces it.")
    ablations: bool = Field(False, description="Add the ablation arms (hare/study/ablations.yaml): the hare arm "
                            "with one of its principles taken out at a time.")
    baseline: str = Field(BASELINE, description="The arm every other is compared with (paired by seed) and whose "
                          "final value the data-efficiency ratios reach: raw, or e.g. hare for the distillation arms.")
    distill: bool = Field(False, description="Add the distillation arms (hare/study/distill.yaml: hare+kd, "
                          "hare+kd+ddk); every arm then uses the teacher's tokenizer unless the recipe names one.")
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
    seeds: int | None = Field(None, ge=1, description="Seeds per arm (model initialization and data order): the "
                              "recipe's seed, then seed + 1, ...; with two or more every number gets a 95 % interval "
                              "(default 1; 3 in the credible tier).")
    suite: bool = Field(True, description="With benchmarks_dir: the leaderboard suite and the leakage audit on every "
                        "arm's first seed (the task items are scored either way).")
    task_items: int = Field(100, ge=1, description="Items per benchmark scored as tasks in the cloze formulation "
                            "(never planted; every arm is decontaminated against them).")
    tier: Literal["smoke", "credible"] = Field(
        "smoke", description="smoke: the given budget and seeds, a check that every part runs; credible: 3 seeds "
        "and 10 tokens per non-embedding parameter unless --seeds / --tokens / --steps say otherwise.")


class ArmResult(BaseModel):
    arm: str
    description: str
    docs: int  # documents in the arm's training mix
    chars: int
    tokens: int  # tokens trained on
    curve: list[dict]  # the mean over seeds at each evaluation: {"step", "tokens", metric, metric_lo, metric_hi}
    final_bits_per_byte: float | None  # the mean over seeds; None: the arm was not trained (``skipped`` says why)
    tokens_to_baseline: float | None  # tokens to reach the baseline's final bits per byte (None: not reached)
    ratio: float | None  # tokens_to_baseline / the baseline's tokens (mean over seeds)
    seeds: list[int] = []
    runs: list[dict] = []  # per seed: {"seed", "curve"}
    final: dict[str, dict] = {}  # metric -> {"mean", "lo", "hi", "n", "values"} at the last evaluation
    vs_baseline: dict[str, dict] = {}  # metric -> the paired difference arm - baseline, and its verdict
    ratios: dict[str, dict] = {}  # metric -> tokens to reach the baseline's final value / its tokens
    unique_tokens: int | None = None  # tokens of the arm's packed data (every part)
    epochs: float | None = None  # tokens trained on / unique tokens
    parts: dict[str, dict] | None = None  # per data part: sequences, samples read, epochs
    over_cap: bool = False  # a part read more than train.max_epochs
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
    seeds: list[int] = []
    tier: str = "smoke"  # what the run can tell: "smoke" or "credible" (``tier_note`` says why)
    tier_note: str = ""
    non_embedding_params: int | None = None
    tokens_per_param: float | None = None
    max_epochs: float | None = None


# ---- data


def _source_inputs(recipe: Recipe) -> list[dict]:
    out = []
    for s in recipe.sources:
        d = s.model_dump(mode="json")
        if s.path:
            d["files"] = fingerprint_path(s.path)
        out.append(d)
    return out


def benchmark_items(names: list[str], folder: str | None) -> dict[str, list]:
    """Every item of the benchmarks found in ``folder``, per benchmark (those missing are skipped)."""
    from hare.core.evalsets import load_benchmark
    from hare.core.evalsets.base import BenchmarkMissing

    out = {}
    for name in names:
        try:
            out[name] = list(load_benchmark(name, folder))
        except BenchmarkMissing as e:
            log.info("study: benchmark %s neither scored nor planted: %s", name, e)
    return out


def prepare_data(recipe: Recipe, cfg: StudyConfig, out: Path) -> dict:
    """Held-out documents and the raw input of every source, in ``out/data`` (reused when unchanged)."""
    from hare.filters.clean import Cleaner
    from hare.corpus.read import Quarantine, read_source

    folder = out / "data"
    key = fingerprint_obj({"sources": _source_inputs(recipe), "clean": recipe.corpus.clean.model_dump(mode="json"),
                           "heldout_docs": cfg.heldout_docs, "seed": recipe.seed,
                           "noise": cfg.noise.model_dump() if cfg.noise else None,
                           "benchmarks": fingerprint_path(cfg.benchmarks_dir) if cfg.benchmarks_dir else None,
                           "task_items": cfg.task_items, "tasks": TASKS_VERSION})
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
    from hare.core.text import normalize_for_dedup, text_hash

    heldout: list[dict] = []
    for d in sorted(docs, key=lambda d: seeded_key(recipe.seed, d["id"])):
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
    # benchmark items: some scored as tasks (no arm may see them), some of the rest planted as noise
    found = benchmark_items(recipe.decontam.benchmarks, cfg.benchmarks_dir) if cfg.benchmarks_dir else {}
    scored, planted = split_benchmark_items(found, recipe.seed, cfg.task_items,
                                            cfg.noise.benchmark_items if cfg.noise else 0)
    leaked = contaminated(pool, scored)
    pool = [d for d in pool if d["id"] not in leaked]
    if leaked:
        log.info("study: %d input documents hold text of the scored benchmark items and are removed", len(leaked))
    items = [it.text() for it in planted]
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
    tasks = task_items(heldout, scored, planted if cfg.noise else [], recipe.seed)
    with atomic_path(folder / "tasks.jsonl") as tmp:
        tmp.write_text("".join(t.to_json() + "\n" for t in tasks), encoding="utf-8")
    info = {"fingerprint": key, "read": len(docs), "quarantined": len(q.records), "heldout": len(heldout),
            "heldout_copies_removed": copies, "heldout_path": str(folder / "heldout.jsonl"),
            "heldout_chars": sum(len(h["text"]) for h in heldout), "sources": sources,
            "benchmark_items_available": sum(len(v) for v in found.values()),
            "benchmark_items_planted": len(items), "task_item_copies_removed": len(leaked),
            "tasks_path": str(folder / "tasks.jsonl"),
            "tasks": dict(sorted(Counter(t.task for t in tasks).items()))}
    write_json(manifest, info)
    log.info("study: %d documents read, %d held out, raw input of %s documents", len(docs), len(heldout),
             f"{sum(s['raw_docs'] for s in sources.values()):,}")
    return info


def add_noise_of(docs: list[dict], noise: Noise, seed: int, source: str, items: list[str]):
    from hare.study.noise import add_noise

    return add_noise(docs, noise, int(seeded_key(seed, source)[:8], 16), items)


def prepare_tokenizer(recipe: Recipe, data: dict, out: Path) -> Path:
    """One byte-level BPE trained on a seeded sample of the raw input, shared by every arm."""
    from hare.train.pack import tokenizer_path, train_tokenizer

    if tokenizer_path(recipe.tokenizer):
        return Path(tokenizer_path(recipe.tokenizer))
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
    r["tokenizer"].update(path=str(tokenizer), packaged=None)
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
                      eval_docs=data["heldout_path"], eval_max_docs=cfg.eval_docs, eval_tasks=data.get("tasks_path"))
    r["eval"] = {**r["eval"], "heldout_perplexity": False, "limit": cfg.limit,
                 "tasks": ["leaderboard"] if cfg.benchmarks_dir and cfg.suite else []}
    if cfg.benchmarks_dir:
        r["decontam"]["benchmarks_dir"] = cfg.benchmarks_dir
    outside = sorted(set(arm.overlay) - set(DATA_SECTIONS) - {"train"})
    outside += [f"train.{k}" for k in sorted(set(arm.overlay.get("train") or {}) - set(SIGNAL_KEYS))]
    if outside:
        raise ValueError(f"arm {name}: an arm changes data only ({', '.join(DATA_SECTIONS)}) and the training "
                         f"signal ({', '.join('train.' + k for k in SIGNAL_KEYS)}), not {outside}")
    return Recipe.model_validate(deep_merge(r, arm.overlay))


def interpolate_tokens(curve: list[dict], target: float) -> float | None:
    """Tokens at which ``curve`` first reaches ``target`` bits per byte, linear between evaluations."""
    return tokens_to_reach(curve, "bits_per_byte", target)


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


def run_arm(recipe: Recipe, name: str, arm: Arm, cfg: StudyConfig, seeds: list[int]) -> dict:
    """Run one arm's pipeline (its first seed trained by the train step), then train its other seeds
    on the same packed data (``train_seed``). A synthetic arm whose part curation emptied is not
    trained: its row says so (a small teacher's text may not pass the quality bar)."""
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
    targets = ["train", "eval"] if cfg.benchmarks_dir and cfg.suite else ["train"]
    status = pipeline.run(targets=targets)
    log.info("study: arm %s, seed %d (1 of %d): %s", name, seeds[0], len(seeds),
             ", ".join(f"{k} {v}" for k, v in status.items()))
    for k, seed in enumerate(seeds[1:], 2):
        log.info("study: arm %s, seed %d (%d of %d)", name, seed, k, len(seeds))
        train_seed(recipe, seed)
    return {**done, "status": status, "seconds": time.perf_counter() - t0}


def seed_dir(recipe: Recipe, seed: int) -> Path:
    """Where seed ``seed`` of an arm trains: the train step's folder for the recipe's own seed."""
    return recipe.run_dir / "train" if seed == recipe.seed else recipe.run_dir / "seeds" / str(seed)


def train_seed(recipe: Recipe, seed: int) -> None:
    """Train the arm's model again with ``seed`` (initialization and data order) on the packed data
    of its train step, in ``seeds/<seed>/``. Done once: a finished seed whose train step is unchanged
    is kept; an interrupted one continues from its last checkpoint (the train step's resume rules)."""
    from hare.train.loop import train_model

    run = recipe.run_dir
    manifest = read_json(run / "train" / "manifest.json")
    fp = fingerprint_obj({"train": manifest["fingerprint"], "seed": seed})
    rk = fingerprint_obj({"train": manifest.get("resume_key"), "seed": seed})
    folder = seed_dir(recipe, seed)
    stamp = folder / "seed.json"
    old = read_json(stamp) if stamp.exists() else {}
    if old.get("fingerprint") == fp and old.get("done"):
        return
    if folder.exists() and old.get("resume_key") != rk:
        shutil.rmtree(folder)  # trained on other data or settings: nothing of it can be continued
    folder.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"fingerprint": fp, "resume_key": rk, "done": False})
    stats = train_model(run / "tokenize", run / "corpus", recipe.model, recipe.train, seed, folder, resume=True,
                        teacher_out=run / "teacher")
    write_json(folder / "stats.json", stats.model_dump(mode="json", exclude_none=True))
    write_json(stamp, {"fingerprint": fp, "resume_key": rk, "done": True})


def collect(recipe: Recipe, arm: str, description: str, done: dict, cfg: StudyConfig, seeds: list[int]) -> dict:
    run = recipe.run_dir
    seconds = done["seconds"]
    if done.get("skipped"):
        return {"arm": arm, "description": description, "docs": 0, "chars": 0, "tokens": 0, "curve": [],
                "final_bits_per_byte": None, "synth": done["synth"], "skipped": done["skipped"],
                "seconds": round(seconds, 1)}
    runs = [{"seed": s, "curve": [{k: v for k, v in r.items() if k != "seconds"}
                                  for r in read_jsonl(seed_dir(recipe, s) / "heldout.jsonl")]} for s in seeds]
    mix = read_json(run / "mix" / "stats.json")
    train = read_json(run / "train" / "stats.json")
    tok = read_json(run / "tokenize" / "stats.json")
    curve = mean_curve([r["curve"] for r in runs])
    unique = tok.get("num_tokens")
    out = {"arm": arm, "description": description, "docs": mix["docs"], "chars": mix["chars"],
           "tokens": train["tokens"], "curve": curve, "final_bits_per_byte": curve[-1]["bits_per_byte"],
           "seeds": seeds, "runs": runs,
           "final": {m: interval([r["curve"][-1][m] for r in runs]) for m in metrics_of(runs)},
           "unique_tokens": unique, "epochs": round(train["tokens"] / unique, 3) if unique else None,
           "parts": train.get("parts"), "synth": done.get("synth"), "seconds": round(seconds, 1)}
    cap = recipe.train.max_epochs
    if cap:
        read = [p.get("epochs", 0) for p in (out["parts"] or {}).values()] or [out["epochs"] or 0]
        out["over_cap"] = max(read) > cap * 1.001
    if cfg.benchmarks_dir and cfg.suite and (run / "eval" / "stats.json").exists():
        out["leaderboard"] = read_json(run / "eval" / "stats.json").get("leaderboard")
        audit = _audit(run / "train" / "model", recipe, cfg, run / "audit")
        if audit is not None:
            out["audit"] = audit
    return out


def metrics_of(runs: list[dict]) -> list[str]:
    """The metrics every evaluation of every run has (held-out, per source, per task)."""
    keys = None
    for r in runs:
        for p in r["curve"]:
            have = {k for k, v in p.items() if k not in ("step", "tokens") and isinstance(v, (int, float))}
            keys = have if keys is None else keys & have
    return sorted(keys or ())


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """The mean over seeds at each evaluation, with the 95 % interval as ``<metric>_lo`` / ``_hi``."""
    runs = [{"curve": c} for c in curves]
    names = metrics_of(runs)
    out = []
    for points in zip(*curves):
        row = {"step": points[0]["step"], "tokens": points[0]["tokens"]}
        for m in names:
            iv = interval([p[m] for p in points])
            row[m] = round(iv["mean"], 6)
            if iv["lo"] is not None:
                row[f"{m}_lo"], row[f"{m}_hi"] = round(iv["lo"], 6), round(iv["hi"], 6)
        out.append(row)
    return out


def ratio_metrics(metrics: list[str]) -> list[str]:
    """Metrics the data-efficiency ratio is given for: held-out bits per byte and every task's."""
    return [m for m in metrics if m == "bits_per_byte" or (m.startswith("task/") and m.endswith("/bits_per_byte"))]


def compare(rows: list[dict], baseline: str) -> None:
    """Fill every trained row's paired differences with the baseline and its data-efficiency ratios."""
    base = next(r for r in rows if r["arm"] == baseline)
    base_runs = {r["seed"]: r for r in base.get("runs", [])}
    for r in rows:
        if r.get("skipped") or not base_runs:
            continue
        pairs = [(run, base_runs[run["seed"]]) for run in r["runs"] if run["seed"] in base_runs]
        common = metrics_of(r["runs"] + base["runs"])
        r["vs_baseline"] = {}
        for m in common:
            diff = interval([a["curve"][-1][m] - b["curve"][-1][m] for a, b in pairs])
            r["vs_baseline"][m] = {**diff, "verdict": verdict(diff, lower_is_better(m))}
        r["ratios"] = {}
        for m in ratio_metrics(common):
            reached = [tokens_to_reach(a["curve"], m, b["curve"][-1][m]) for a, b in pairs]
            got = [t / base["tokens"] for t in reached if t is not None]
            iv = interval(got) if len(got) == len(pairs) else {"mean": None, "lo": None, "hi": None,
                                                               "n": len(pairs), "values": got}
            r["ratios"][m] = {**iv, "reached": len(got), "of": len(pairs)}
        t = tokens_to_reach(r["curve"], "bits_per_byte", base["curve"][-1]["bits_per_byte"])
        r["tokens_to_baseline"] = None if t is None else round(t, 1)
        hb = r["ratios"].get("bits_per_byte", {})
        r["ratio"] = None if hb.get("mean") is None else round(hb["mean"], 4)


def non_embedding_params(recipe: Recipe, vocab_size: int) -> int:
    """Parameters of the recipe's model without its input embedding and (untied) output layer:
    the count scaling laws use (Kaplan et al. 2020), built on the meta device (no memory)."""
    import torch

    from hare.model.model import mistral_config
    from transformers import MistralForCausalLM

    config = mistral_config(recipe.model.preset, dict(recipe.model.overrides), vocab_size=vocab_size)
    with torch.device("meta"):
        model = MistralForCausalLM(config)
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def resolve_budget(recipe: Recipe, cfg: StudyConfig, tokenizer: Path) -> tuple[StudyConfig, int]:
    """The study's settings with the tier's defaults filled in, and the model's non-embedding parameters."""
    from hare.core.tokenizer import load_tokenizer

    n = non_embedding_params(recipe if not cfg.preset else recipe.model_copy(
        update={"model": recipe.model.model_copy(update={"preset": cfg.preset, "overrides": {}})}),
        len(load_tokenizer(tokenizer)))
    if cfg.tier == "credible":
        update = {}
        if cfg.seeds is None:
            update["seeds"] = CREDIBLE_SEEDS
        if cfg.tokens is None and cfg.steps is None:
            update["tokens"] = CREDIBLE_TOKENS_PER_PARAM * n
        cfg = cfg.model_copy(update=update)
    return cfg, n


def tier_of(tokens_per_param: float, seeds: int) -> tuple[str, str]:
    """What a study of this budget can tell, in a word and a sentence."""
    why = []
    if tokens_per_param < CREDIBLE_TOKENS_PER_PARAM:
        why.append(f"{tokens_per_param:.2f} tokens per non-embedding parameter (credible: "
                   f"{CREDIBLE_TOKENS_PER_PARAM} or more)")
    if seeds < CREDIBLE_SEEDS:
        why.append(f"{seeds} seed{'s' if seeds > 1 else ''} per arm (credible: {CREDIBLE_SEEDS} or more)")
    if why:
        return "smoke", ("a smoke test of the pipeline: " + " and ".join(why) + "; it shows that every part runs, "
                         "it cannot rank data recipes (hare study --tier credible)")
    return "credible", (f"{tokens_per_param:.1f} tokens per non-embedding parameter, {seeds} seeds per arm: "
                        "differences are called only where their 95 % intervals exclude zero")


def run_study(recipe: Recipe, cfg: StudyConfig, out: Path, figure: Path | None = None) -> StudyResult:
    """Run every arm of the study of ``recipe`` into ``out``; see the module docstring."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    known = load_arms(cfg.arms_file, cfg.ablations, cfg.distill)
    arms = cfg.arms or default_arms(recipe, known)
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise ValueError(f"unknown arms {unknown}; known: {', '.join(known)} (add arms with an arms file)")
    if cfg.baseline not in arms:
        raise ValueError(f"a study needs its baseline arm '{cfg.baseline}' (arms: {', '.join(arms)})")
    if not recipe.synth.enabled and (wanted := [a for a in arms if known[a].synthetic]):
        raise ValueError(f"arms {', '.join(wanted)} need a teacher: the recipe's synth.enabled is false")
    if any(known[a].distills for a in arms) and not (recipe.tokenizer.path or recipe.tokenizer.packaged):
        # a student shares its teacher's tokenizer, and every arm shares one tokenizer
        log.info("study: distillation arms: every arm uses the packaged teacher's tokenizer (tokenizer.packaged)")
        recipe = recipe.model_copy(update={"tokenizer": recipe.tokenizer.model_copy(update={"packaged": "smollm2"})})
    data = prepare_data(recipe, cfg, out)
    tokenizer = prepare_tokenizer(recipe, data, out)
    cfg, n_params = resolve_budget(recipe, cfg, tokenizer)
    seeds = [recipe.seed + k for k in range(cfg.seeds or 1)]
    budget = train_steps(recipe, cfg) * step_tokens(recipe)
    tier, note = tier_of(budget / n_params, len(seeds))
    log.info("study: %s arms x %d seeds, %s tokens each, %s non-embedding parameters: %s", len(arms), len(seeds),
             f"{budget:,}", f"{n_params:,}", note)
    rows = []
    for name in arms:
        r = arm_recipe(recipe, name, known[name], cfg, out, data, tokenizer)
        write_json(out / "arms" / f"{name}.recipe.json", r.model_dump(mode="json"))
        rows.append(collect(r, name, known[name].description, run_arm(r, name, known[name], cfg, seeds), cfg, seeds))
    compare(rows, cfg.baseline)
    over = [r["arm"] for r in rows if r.get("over_cap")]
    cap = recipe.train.max_epochs
    if over:
        log.warning("study: arms %s read some of their data more than %s epochs (train.max_epochs); their "
                    "budget exceeds what their data can give without losing value", ", ".join(over), cap)
    result = StudyResult(recipe=recipe.name, baseline=cfg.baseline,
                         data={k: v for k, v in data.items() if k != "fingerprint"},
                         arms=[ArmResult(**r) for r in rows], seconds=round(time.perf_counter() - t0, 1),
                         seeds=seeds, tier=tier, tier_note=note, non_embedding_params=n_params,
                         tokens_per_param=round(budget / n_params, 3), max_epochs=cap)
    write_json(out / "study.json", result.model_dump(mode="json"))
    write_outputs(result, out, figure)
    return result
