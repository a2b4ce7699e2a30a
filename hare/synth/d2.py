"""D2 (the d2 step's work): topic-seeded synthetic text (the paper's D2), for semantic diversity.

For every topic of the cluster step, the seeds are the documents nearest its centroid and a seeded
sample of its other members; every topic gets the same number of generations
(``synth.d2.docs_per_topic``), so rare topics are covered as well as common ones. Each generation
pairs a seed with a prompt of its source's category (``synth.d2.categories``: web, wiki, news,
academic, books, law, code, math), a style and an audience drawn by the seed; the template is
``templates/d2/<category>.<style>.txt`` when it exists (the paper's law-textbook prompt is
``law.textbook_unit.txt``), else ``<style>.txt``. Answers are capped at ``synth.d2.max_tokens``.
These are the ``topic`` family.

The ``rephrase`` family (WRAP, Maini et al. 2024, "Rephrasing the Web"): per topic,
``synth.d2.rephrase_per_topic`` seed documents rewritten in a style drawn from
``synth.d2.rephrase_styles`` (``templates/d2/rephrase/<style>.txt``: encyclopedic, simple, qa,
textbook), keeping their content. The teacher sees the first ``rephrase_chars`` characters and
samples at ``rephrase_temperature``; curation drops rephrases that drift from that text
(``hare.synth.fidelity``). Both families go to the teacher in one batch of requests.

Outputs: ``generated/`` (shards of the answers, each with its provenance: family, template,
style, topic, and the seed (topic) or source (rephrase) document), ``rejected.jsonl`` (failed
requests and answers too short to keep) and stats per template. The curate step then cleans,
bands, deduplicates and decontaminates them into the ``d2`` data part.
"""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from hare.core.documents import Document, ShardWriter, read_shards
from hare.core.io import read_json, read_jsonl, write_jsonl
from hare.core.step import Stats
from hare.synth.client import Usage
from hare.synth.common import Teacher, sub_seed
from hare.synth.fidelity import require_model, source_passage
from hare.synth.prompts import Templates

log = logging.getLogger("hare.synth.d2")

SNIPPET = 400


class D2Stats(Stats):
    enabled: bool
    topics: int = 0
    seeds: int = 0
    requests: int = 0
    generated: int = 0
    rejected: dict[str, int] = {}
    usage: Usage | None = None
    templates: dict[str, Usage] = {}
    teacher: dict[str, Any] = {}

    def counts(self) -> dict[str, int | float]:
        return {"requests": self.requests, "generated": self.generated,
                "sent": self.usage.sent if self.usage else 0}


def topic_seeds(cluster_dir: Path, nearest: int, sampled: int, seed: int) -> tuple[list[dict], dict[int, list]]:
    """The topics and, per topic, its seed (source, id) pairs: the nearest first, then a seeded sample."""
    topics = read_json(cluster_dir / "topics.json") if (cluster_dir / "topics.json").exists() else []
    members: dict[int, list[tuple[str, str]]] = defaultdict(list)
    if (cluster_dir / "assignments.jsonl").exists():
        for r in read_jsonl(cluster_dir / "assignments.jsonl"):
            members[r["cluster"]].append((r["source"], r["id"]))
    seeds: dict[int, list[tuple[str, str]]] = {}
    for t in topics:
        c = t["cluster"]
        near = [(e["source"], e["id"]) for e in t["examples"][:nearest]]
        rest = [m for m in members[c] if m not in set(near)]
        rng = random.Random(sub_seed(seed, "d2-seeds", c))
        seeds[c] = near + rng.sample(rest, min(sampled, len(rest)))
    return [t for t in topics if seeds.get(t["cluster"])], seeds


def words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def generate_d2(teacher: Teacher, cfg, templates: Templates, cluster_dir: Path, decontam_dir: Path, seed: int,
                out: Path, shard_docs: int) -> D2Stats:
    """Generate D2 (the module docstring) with ``teacher`` from the topics in ``cluster_dir`` and the
    seed documents in ``decontam_dir/train``; ``cfg``: ``hare.synth.config.D2Config``."""
    if cfg.rephrase_per_topic:
        require_model()  # curation cannot check rephrases without it: fail before paying the teacher
    jobs, topics, seeds = d2_requests(teacher, cfg, templates, cluster_dir, decontam_dir, seed)
    with teacher.session("d2") as session:
        results = session.generate([r for r, _ in jobs], [m["template"] for _, m in jobs], desc="d2: generate")

    rejected: dict[str, int] = defaultdict(int)
    quarantine = []
    generated = 0
    with ShardWriter(out / "generated", shard_docs) as w:
        for k, ((req, meta), res) in enumerate(zip(jobs, results)):
            text = res.text.strip()
            reason = None if res.ok else "request_failed"
            if reason is None and words(text) < cfg.min_words:
                reason = "too_short"
            if reason:
                rejected[reason] += 1
                quarantine.append({"reason": reason, "error": res.error, "text": text, "key": res.key, **meta})
                continue
            w.write(Document(text, f"d2/{meta['topic']}/{k}", "d2",
                             {**meta, "finish_reason": res.finish_reason, "key": res.key,
                              "completion_tokens": res.completion_tokens}))
            generated += 1
    write_jsonl(out / "rejected.jsonl", quarantine)
    log.info("d2: %d topics, %d requests (%d from the cache), %d generated, rejected %s", topics, len(jobs),
             session.total.cached, generated, dict(rejected) or "none")
    return D2Stats(enabled=True, topics=topics, seeds=seeds, requests=len(jobs), generated=generated,
                   rejected=dict(rejected), usage=session.total,
                   templates=session.by_family(),
                   teacher={"model": jobs[0][0].model if jobs else None, "api": teacher.syn.teacher.api,
                            "endpoints": len(teacher.syn.teacher.endpoints)})


def d2_requests(teacher: Teacher, cfg, templates: Templates, cluster_dir: Path, decontam_dir: Path,
                seed: int) -> tuple[list[tuple[Any, dict]], int, int]:
    """(request, provenance) of every D2 generation: per topic, ``docs_per_topic`` pairs of a seed
    document and a prompt of its category, style and audience, then (after every topic's)
    ``rephrase_per_topic`` rephrases of its seeds; and the numbers of topics with seeds and of seed
    documents found."""
    categories = templates.yaml("d2/categories.yaml")
    audiences = templates.yaml("d2/audiences.yaml")
    styles = [p.split("/")[-1][:-4] for p in templates.variants("d2") if "." not in p.split("/")[-1][:-4]]
    for bad in [s for s in cfg.styles if s not in styles]:
        raise ValueError(f"synth.d2.styles: no template d2/{bad}.txt (styles: {', '.join(styles)})")
    for bad in [a for a in cfg.audiences if a not in audiences]:
        raise ValueError(f"synth.d2.audiences: {bad!r} is not in d2/audiences.yaml ({', '.join(audiences)})")
    for src, cat in cfg.categories.items():
        if cat not in categories:
            raise ValueError(f"synth.d2.categories.{src}: {cat!r} is not in d2/categories.yaml "
                             f"({', '.join(categories)})")
    rephrase_styles = [p.split("/")[-1][:-4] for p in templates.variants("d2/rephrase")]
    for bad in [s for s in cfg.rephrase_styles if cfg.rephrase_per_topic and s not in rephrase_styles]:
        raise ValueError(f"synth.d2.rephrase_styles: no template d2/rephrase/{bad}.txt "
                         f"(styles: {', '.join(rephrase_styles)})")
    topics, seeds = topic_seeds(cluster_dir, cfg.nearest_seeds, cfg.sampled_seeds, seed)
    wanted = {s for ss in seeds.values() for s in ss}
    texts = {(d.source, d.id): d.text for d in read_shards(decontam_dir / "train") if (d.source, d.id) in wanted}
    jobs: list[tuple[Any, dict]] = []
    rephrases: list[tuple[Any, dict]] = []
    for t in topics:
        c = t["cluster"]
        pool = [s for s in seeds[c] if s in texts]
        if not pool:
            continue
        rng = random.Random(sub_seed(seed, "d2", c))
        for j in range(cfg.docs_per_topic):
            src, doc_id = pool[j % len(pool)]
            style, audience = rng.choice(cfg.styles), rng.choice(cfg.audiences)
            category = cfg.categories.get(src, "web")
            rel = f"d2/{category}.{style}.txt" if templates.exists(f"d2/{category}.{style}.txt") else \
                f"d2/{style}.txt"
            seed_text = texts[(src, doc_id)][:cfg.seed_chars].strip()
            spec = categories[category]
            prompt = templates.render(rel, subject=spec["subject"], note=spec.get("note", ""),
                                      audience=audiences[audience], topic=t["name"], seed=seed_text)
            req = teacher.request(prompt, cfg.max_tokens, cfg.temperature, cfg.top_p, sub_seed(seed, "d2", c, j),
                                  frequency_penalty=cfg.frequency_penalty, presence_penalty=cfg.presence_penalty)
            jobs.append((req, {"family": "topic", "template": rel.split("/", 1)[1][:-4], "category": category,
                               "style": style, "audience": audience, "topic": c, "topic_name": t["name"],
                               "seed_source": src, "seed_id": doc_id, "seed_snippet": seed_text[:SNIPPET]}))
        for j in range(cfg.rephrase_per_topic):
            src, doc_id = pool[j % len(pool)]
            r_seed = sub_seed(seed, "d2-rephrase", c, j)
            style = random.Random(r_seed).choice(cfg.rephrase_styles)
            source = source_passage(texts[(src, doc_id)], cfg.rephrase_chars)
            prompt = templates.render(f"d2/rephrase/{style}.txt", source=source)
            req = teacher.request(prompt, cfg.rephrase_max_tokens, cfg.rephrase_temperature, cfg.top_p, r_seed,
                                  frequency_penalty=cfg.rephrase_frequency_penalty,
                                  presence_penalty=cfg.rephrase_presence_penalty)
            rephrases.append((req, {"family": "rephrase", "template": f"rephrase.{style}", "style": style,
                                    "topic": c, "topic_name": t["name"], "source_source": src,
                                    "source_id": doc_id, "source_snippet": source[:SNIPPET]}))
    return jobs + rephrases, len(topics), len(texts)


def examples(folder: Path, k: int = 3) -> list[Document]:
    """The first ``k`` topic-family generations of a d2 folder (the report shows them with their seeds)."""
    out = []
    for d in read_shards(folder / "generated"):
        if d.metadata.get("family", "topic") != "topic":
            continue
        out.append(d)
        if len(out) >= k:
            break
    return out
