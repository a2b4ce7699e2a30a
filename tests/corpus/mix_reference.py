"""The mix step as it was before it streamed: every document held in memory. Kept only as the
reference the streamed step (hare/corpus/mix.py) must equal byte for byte."""


from __future__ import annotations

import logging
import random
from collections import defaultdict

from pydantic import BaseModel

from hare.core.documents import Document, ShardWriter, read_shards
from hare.core.step import Stats, Step, StepContext
from hare.corpus.cluster import load_assignments, load_topics

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


def topic_shares(chars: dict[int, int], temperature: float) -> dict[int, float]:
    """Each topic's share of a budget: C_c**(1/T) / sum_j C_j**(1/T) over topics with text."""
    w = {c: n ** (1.0 / temperature) for c, n in chars.items() if n > 0}
    total = sum(w.values())
    return {c: v / total for c, v in w.items()}


def sample_by_topic(docs: list[Document], topic: dict[tuple[str, str], int], target_chars: int,
                    temperature: float, rng: random.Random) -> list[Document]:
    """A source's budget split over its topics by ``topic_shares``, each topic sampled by ``sample_source``."""
    groups: dict[int, list[Document]] = defaultdict(list)
    for d in docs:
        groups[topic[(d.source, d.id)]].append(d)
    shares = topic_shares({c: sum(len(d.text) for d in g) for c, g in groups.items()}, temperature)
    out: list[Document] = []
    # Each topic aims at the running total of the targets so far, so one topic's overshoot (up to a
    # document) is taken off the next one's target: the source overshoots by one document, not one per topic.
    goal = 0.0
    got = 0
    for c in sorted(shares):
        goal += target_chars * shares[c]
        picked = sample_source(groups[c], round(goal) - got, rng)
        got += sum(len(d.text) for d in picked)
        out.extend(picked)
    return out


def _topic_counts(docs: list[Document], topic: dict[tuple[str, str], int]) -> dict[int, list[int]]:
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for d in docs:
        c = counts[topic[(d.source, d.id)]]
        c[0] += 1
        c[1] += len(d.text)
    return counts


class SourceMix(BaseModel):
    weight: float
    docs_available: int
    chars_available: int
    docs: int
    chars: int
    epochs: float
    share: float
    part: str


class PartMix(BaseModel):
    docs: int
    chars: int


class TopicMix(BaseModel):
    """One topic before (every decontaminated document) and after sampling."""

    name: str = ""
    docs_before: int
    chars_before: int
    docs_after: int
    chars_after: int
    share_after: float


class MixStats(Stats):
    sources: dict[str, SourceMix]
    parts: dict[str, PartMix]
    docs: int
    chars: int
    cluster_temperature: float | None = None
    clusters: dict[str, TopicMix] | None = None

    def counts(self) -> dict[str, int | float]:
        return {"docs": self.docs, "chars": self.chars}


class MixStep(Step):
    name = "mix"
    help = "sample the sources by weight, and their topics by temperature, into the training set"
    after = ("decontam", "cluster", "curate")
    reads = ("mix", "seed", "sources", "corpus.shard_docs")
    stats = MixStats

    def depends_on(self, earlier: list[str]) -> tuple[str, ...]:
        return tuple(s for s in self.after if s != "curate" or "curate" in earlier)

    def run(self, ctx: StepContext) -> MixStats:
        c = ctx.config
        rng = random.Random(c.seed)
        by_source: dict[str, list[Document]] = defaultdict(list)
        for d in read_shards(ctx.deps["decontam"] / "train"):
            by_source[d.source].append(d)
        weights = {s.name: s.weight for s in c.sources if by_source.get(s.name)}
        chosen: list[Document] = []
        picked_by: dict[str, tuple[list[Document], int]] = {}
        wsum = sum(weights.values()) or 1.0
        topic = load_assignments(ctx.deps["cluster"]) if "cluster" in ctx.deps else None
        for name, docs in by_source.items():
            if c.mix.max_chars is None:
                picked = docs if weights.get(name, 0) > 0 else []
            elif topic is not None:
                picked = sample_by_topic(docs, topic, int(c.mix.max_chars * weights.get(name, 0) / wsum),
                                         c.mix.cluster_temperature, rng)
            else:
                picked = sample_source(docs, int(c.mix.max_chars * weights.get(name, 0) / wsum), rng)
            chosen.extend(picked)
            picked_by[name] = (picked, sum(len(d.text) for d in docs))
        rng.shuffle(chosen)
        part_of = {s.name: s.part for s in c.sources}
        synthetic = ctx.deps["curate"] / "train" if "curate" in ctx.deps else None
        extra = list(read_shards(synthetic)) if synthetic is not None and synthetic.is_dir() else []
        random.Random(c.seed + 1).shuffle(extra)
        d1_chosen = chosen
        for d in extra:
            part_of[d.source] = d.source  # the synthetic documents' source is their part: d2, d3
            by_source[d.source].append(d)
            weights[d.source] = 1.0
        for name in {d.source for d in extra}:
            picked_by[name] = (by_source[name], sum(len(d.text) for d in by_source[name]))
        chosen = chosen + extra
        total_chars = sum(len(d.text) for d in chosen)
        sources = {}
        for name, (picked, available) in picked_by.items():
            chars = sum(len(d.text) for d in picked)
            sources[name] = SourceMix(weight=weights.get(name, 0.0), docs_available=len(by_source[name]),
                                      chars_available=available, docs=len(picked), chars=chars,
                                      epochs=round(chars / available, 3) if available else 0,
                                      share=round(chars / total_chars, 4) if total_chars else 0.0, part=part_of[name])
        parts: dict[str, PartMix] = {}
        for part in sorted(set(part_of.values())):
            docs = [d for d in chosen if part_of[d.source] == part]
            with ShardWriter(ctx.out / "train" / part, c.corpus.shard_docs) as w:
                for d in docs:
                    w.write(d)
            parts[part] = PartMix(docs=len(docs), chars=sum(len(d.text) for d in docs))
        stats = MixStats(sources=sources, parts=parts, docs=len(chosen), chars=total_chars)
        if topic is not None:
            # Per topic, before (every decontaminated document) and after sampling: what the report plots.
            synthetic_names = {x.source for x in extra}
            before = _topic_counts([d for name, docs in by_source.items() if name not in synthetic_names
                                    for d in docs], topic)
            after = _topic_counts(d1_chosen, topic)
            names = {t.cluster: t.name for t in load_topics(ctx.deps["cluster"])}
            stats.cluster_temperature = c.mix.cluster_temperature
            stats.clusters = {str(k): TopicMix(name=names.get(k, ""), docs_before=before[k][0],
                                               chars_before=before[k][1],
                                               docs_after=after[k][0] if k in after else 0,
                                               chars_after=after[k][1] if k in after else 0,
                                               share_after=round(after[k][1] / total_chars, 4)
                                               if k in after and total_chars else 0.0)
                              for k in sorted(before)}
        log.info("mix: %d documents, %d characters from %d sources", len(chosen), total_chars, len(sources))
        return stats


REFERENCE_MIX = MixStep()
