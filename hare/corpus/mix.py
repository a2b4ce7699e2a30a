"""The mix step: sample the decontaminated documents of each source by weight into its data part.

With no character budget every document is taken once. With ``mix.max_chars`` each source gets
``max_chars * weight / sum(weights)`` characters, drawn in a seeded random order; a source smaller
than its share is repeated (whole passes first, then a partial one), as the paper's per-source
weights require. Each data part (``source.part``) is written to ``train/<part>/`` in an order
shuffled by the seed; the training stages then mix the parts by weight.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict

from hare.corpus.document import Document, ShardWriter, read_shards
from hare.io import write_json

log = logging.getLogger("hare.corpus.mix")


def sample_source(docs: list[Document], target_chars: int, rng: random.Random) -> list[Document]:
    """Documents totalling about ``target_chars``: whole shuffled passes, then a prefix of one more."""
    total = sum(len(d.text) for d in docs)
    if total == 0:
        return []
    out: list[Document] = []
    got = 0
    while got < target_chars:
        order = docs[:]
        rng.shuffle(order)
        for d in order:
            if got >= target_chars:
                break
            out.append(d)
            got += len(d.text)
    return out


def run_mix(ctx) -> dict:
    r = ctx.recipe
    rng = random.Random(r.seed)
    by_source: dict[str, list[Document]] = defaultdict(list)
    for d in read_shards(ctx.deps["decontam"] / "train"):
        by_source[d.source].append(d)
    weights = {s.name: s.weight for s in r.sources if by_source.get(s.name)}
    chosen: list[Document] = []
    stats = {}
    wsum = sum(weights.values()) or 1.0
    for name, docs in by_source.items():
        available = sum(len(d.text) for d in docs)
        if r.mix.max_chars is None:
            picked = docs if weights.get(name, 0) > 0 else []
        else:
            picked = sample_source(docs, int(r.mix.max_chars * weights.get(name, 0) / wsum), rng)
        chosen.extend(picked)
        chars = sum(len(d.text) for d in picked)
        stats[name] = {"weight": weights.get(name, 0.0), "docs_available": len(docs), "chars_available": available,
                       "docs": len(picked), "chars": chars, "epochs": round(chars / available, 3) if available else 0}
    rng.shuffle(chosen)
    total_chars = sum(len(d.text) for d in chosen)
    part_of = {s.name: s.part for s in r.sources}
    for name, st in stats.items():
        st["share"] = round(st["chars"] / total_chars, 4) if total_chars else 0.0
        st["part"] = part_of[name]
    parts: dict[str, dict] = {}
    for part in sorted(set(part_of.values())):
        docs = [d for d in chosen if part_of[d.source] == part]
        with ShardWriter(ctx.out / "train" / part, r.corpus.shard_docs) as w:
            for d in docs:
                w.write(d)
        parts[part] = {"docs": len(docs), "chars": sum(len(d.text) for d in docs)}
    write_json(ctx.out / "stats.json", {"sources": stats, "parts": parts, "docs": len(chosen), "chars": total_chars})
    log.info("mix: %d documents, %d characters from %d sources", len(chosen), total_chars, len(stats))
    return {"docs": len(chosen), "chars": total_chars}
