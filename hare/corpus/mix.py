"""The mix (the mix step's work): sample the decontaminated documents of each source by weight into its data part.

With no character budget every document is taken once. With ``mix.max_chars`` each source gets
``max_chars * weight / sum(weights)`` characters, drawn in a seeded random order; a source smaller
than its share is repeated (whole passes first, then a partial one), as the paper's per-source
weights require. Each data part (``source.part``) is written to ``train/<part>/`` in an order
shuffled by the seed; the training stages then mix the parts by weight. With ``mix.split_sources``
every source is a part of its own, ``<part>.<source>`` (the domains DDK re-weights, ``hare.train.ddk``).

With a budget and the cluster step's topics, a source's budget B is split over its topics by
temperature sampling (as multilingual models sample languages: Conneau & Lample 2019, mT5): topic
c, holding C_c characters of the source, gets ``B * C_c**(1/T) / sum_j C_j**(1/T)`` characters,
drawn from its documents as above. T = 1 keeps each topic's natural share; as T grows the shares
approach ``B / topics``, so rare topics are repeated and common ones thinned. Source weights are
unchanged by it.

The synthetic parts the curate step kept (``d2``, ``d3``) are taken whole, each document once, in a
seeded order of their own (so they change nothing of the D1 sample): they were generated to a
budget already, and ``train.stages`` weighs the parts against each other.

The step streams: a first pass over the shards keeps only each document's source, length and topic
(a few bytes a document, never its text), the sampling draws document numbers, and a second pass
scatters every drawn document to a scratch bucket of the output shards it lands in (``work/``,
each bucket a bounded number of characters); each bucket is then read back, put in order and
written as its output shards. Memory is one bucket plus the per-document numbers, however large the
corpus (the external distribution step of a shuffle, as Spark and Ray Data shuffle datasets larger
than memory); the output equals that of sampling whole documents in memory.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from array import array
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from hare.core.documents import ShardWriter, read_shards
from hare.core.progress import progress
from hare.corpus.cluster import load_assignments, load_topics
from hare.corpus.stats import MixStats, PartMix, SourceMix, TopicMix

log = logging.getLogger("hare.corpus.mix")

T = TypeVar("T")

# Characters of the documents one scratch bucket holds (the step's memory, about 1-4 bytes each).
BUCKET_CHARS = 64_000_000
# Bytes of bucket lines buffered in memory, over all buckets, before they are appended to their files.
BUFFER_BYTES = 64_000_000


def sample_indices(lengths: Sequence[int], target_chars: int, rng: random.Random) -> array:
    """Indices into ``lengths`` totalling about ``target_chars``: whole shuffled passes, then a
    prefix of one more."""
    out = array("q")
    if sum(lengths) == 0:
        return out
    got = 0
    while got < target_chars:
        order = array("q", range(len(lengths)))
        rng.shuffle(order)
        for i in order:
            if got >= target_chars:
                break
            out.append(i)
            got += lengths[i]
    return out


def sample_source(docs: list[T], target_chars: int, rng: random.Random) -> list[T]:
    """Documents totalling about ``target_chars``: ``sample_indices`` over their text lengths."""
    return [docs[i] for i in sample_indices([len(d.text) for d in docs], target_chars, rng)]


def topic_shares(chars: dict[int, int], temperature: float) -> dict[int, float]:
    """Each topic's share of a budget: C_c**(1/T) / sum_j C_j**(1/T) over topics with text."""
    w = {c: n ** (1.0 / temperature) for c, n in chars.items() if n > 0}
    total = sum(w.values())
    return {c: v / total for c, v in w.items()}


def sample_by_topic(lengths: Sequence[int], topics: Sequence[int], target_chars: int, temperature: float,
                    rng: random.Random) -> list[int]:
    """A source's budget split over its topics by ``topic_shares``, each topic sampled by
    ``sample_indices``; returns indices into ``lengths`` (one per document, ``topics`` alike)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(topics):
        groups[c].append(i)
    shares = topic_shares({c: sum(lengths[i] for i in g) for c, g in groups.items()}, temperature)
    out: list[int] = []
    # Each topic aims at the running total of the targets so far, so one topic's overshoot (up to a
    # document) is taken off the next one's target: the source overshoots by one document, not one per topic.
    goal = 0.0
    got = 0
    for c in sorted(shares):
        goal += target_chars * shares[c]
        g = groups[c]
        picked = [g[i] for i in sample_indices([lengths[i] for i in g], round(goal) - got, rng)]
        got += sum(lengths[i] for i in picked)
        out.extend(picked)
    return out


class _Docs:
    """What the first pass keeps of each document of one source: its number in the stream, length, topic."""

    def __init__(self) -> None:
        self.number = array("q")
        self.length = array("q")
        self.topic = array("q")


def _scan(folder: Path, topic: dict[tuple[str, str], int] | None, desc: str) -> dict[str, _Docs]:
    """Source -> its documents' numbers (in shard order), lengths and topics; sources by first appearance."""
    by_source: dict[str, _Docs] = {}
    for n, d in enumerate(progress(read_shards(folder), desc=desc, unit="doc")):
        s = by_source.get(d.source)
        if s is None:
            s = by_source[d.source] = _Docs()
        s.number.append(n)
        s.length.append(len(d.text))
        if topic is not None:
            s.topic.append(topic[(d.source, d.id)])
    return by_source


def _topic_counts(lengths: Sequence[int], topics: Sequence[int]) -> dict[int, list[int]]:
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for n, c in zip(lengths, topics):
        k = counts[int(c)]
        k[0] += 1
        k[1] += int(n)
    return counts


def build_mix(out: Path, d1_folder: Path, sources: list, cfg, seed: int, shard_docs: int,
              cluster_dir: Path | None = None, synthetic: Path | None = None) -> MixStats:
    """Sample the decontaminated documents in ``d1_folder`` (``sources``: their weights and parts;
    ``cfg``: ``hare.corpus.config.MixConfig``) and take the synthetic parts in ``synthetic`` whole,
    into ``out/train/<part>/`` (the module docstring); ``cluster_dir``: the cluster step's topics."""
    rng = random.Random(seed)
    topic = load_assignments(cluster_dir) if cluster_dir is not None else None
    d1 = _scan(d1_folder, topic, "mix: read")
    by_topic = topic is not None
    del topic  # each document's topic is in ``d1`` now
    weights = {s.name: s.weight for s in sources if s.name in d1}
    wsum = sum(weights.values()) or 1.0
    # Pass one's numbers of the sampled documents (a document repeated once per draw), in sampled order.
    chosen = array("q")
    counts: dict[str, tuple[int, int, int, int]] = {}  # source -> docs, chars, docs and chars available
    for name, docs in d1.items():
        if cfg.max_chars is None:
            picked = range(len(docs.length)) if weights.get(name, 0) > 0 else range(0)
        elif by_topic:
            picked = sample_by_topic(docs.length, docs.topic, int(cfg.max_chars * weights.get(name, 0) / wsum),
                                     cfg.cluster_temperature, rng)
        else:
            picked = sample_indices(docs.length, int(cfg.max_chars * weights.get(name, 0) / wsum), rng)
        chosen.extend(docs.number[i] for i in picked)
        counts[name] = (len(picked), sum(docs.length[i] for i in picked), len(docs.length), sum(docs.length))
    rng.shuffle(chosen)
    part_of = {s.name: f"{s.part}.{s.name}" if cfg.split_sources else s.part for s in sources}

    # The synthetic parts: every document once, in an order seeded apart from the D1 sample.
    extra = _scan(synthetic, None, "mix: read synthetic") if synthetic is not None and synthetic.is_dir() else {}
    extra_order = array("q", range(sum(len(d.number) for d in extra.values())))
    random.Random(seed + 1).shuffle(extra_order)
    for name in sorted(extra):
        part_of[name] = name  # the synthetic documents' source is their part: d2, d3
        weights[name] = 1.0
        n, chars = len(extra[name].length), sum(extra[name].length)
        counts[name] = (n, chars, n, chars)
    total_chars = sum(k[1] for k in counts.values())
    mixed = {name: SourceMix(weight=weights.get(name, 0.0), docs_available=docs_available,
                             chars_available=available, docs=docs, chars=chars,
                             epochs=round(chars / available, 3) if available else 0,
                             share=round(chars / total_chars, 4) if total_chars else 0.0, part=part_of[name])
             for name, (docs, chars, docs_available, available) in counts.items()}

    part_names = sorted(set(part_of.values()))
    d1_entries = _Entries(d1, chosen, [part_names.index(part_of[s]) for s in d1])
    extra_entries = _Entries(extra, extra_order, [part_names.index(part_of[s]) for s in extra])
    parts = _write_parts(out, part_names, d1_folder, d1_entries, synthetic, extra_entries, shard_docs)
    stats = MixStats(sources=mixed, parts=parts, docs=len(chosen) + len(extra_order), chars=total_chars)
    if by_topic:
        stats.cluster_temperature = cfg.cluster_temperature
        stats.clusters = _topic_mix(d1, extra, d1_entries, load_topics(cluster_dir), total_chars)
    log.info("mix: %d documents, %d characters from %d sources", stats.docs, total_chars, len(mixed))
    return stats


def _topic_mix(d1: dict, extra: dict, d1_entries: "_Entries", topics: list, total_chars: int) -> dict[str, TopicMix]:
    """Per topic, before (every decontaminated document) and after sampling: what the report plots."""
    before: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for name, docs in d1.items():
        if name not in extra:
            for k, (n, ch) in _topic_counts(docs.length, docs.topic).items():
                before[k][0] += n
                before[k][1] += ch
    after = _topic_counts(d1_entries.length[d1_entries.order], d1_entries.topic[d1_entries.order])
    names = {t.cluster: t.name for t in topics}
    return {str(k): TopicMix(name=names.get(k, ""), docs_before=before[k][0], chars_before=before[k][1],
                             docs_after=after[k][0] if k in after else 0,
                             chars_after=after[k][1] if k in after else 0,
                             share_after=round(after[k][1] / total_chars, 4) if k in after and total_chars else 0.0)
            for k in sorted(before)}


def _write_parts(out: Path, part_names: list[str], d1_folder: Path, d1: "_Entries",
                 synthetic: Path | None, extra: "_Entries", shard_docs: int) -> dict[str, PartMix]:
    """Write the D1 draws, then the synthetic documents, into each part's shards, in their order."""
    # Position of every draw in its part: D1 draws first, in sampled order, then the synthetic ones.
    npart = len(part_names)
    base = np.zeros(npart, dtype=np.int64)
    for e in (d1, extra):
        e.place(base)
        base += np.bincount(e.part, minlength=npart)
    # Buckets: runs of whole output shards of one part holding at most BUCKET_CHARS characters (or one shard).
    shard_chars = [np.zeros(-(-int(base[p]) // shard_docs), dtype=np.int64) for p in range(npart)]
    for e in (d1, extra):
        for p in range(npart):
            m = e.part == p
            np.add.at(shard_chars[p], e.pos[m] // shard_docs, e.length[e.order][m])
    first_bucket, bucket_range = [], []  # per part: the bucket of each shard; per bucket: its positions
    for p in range(npart):
        of_shard = np.zeros(len(shard_chars[p]), dtype=np.int64)
        chars = 0
        for s, n in enumerate(shard_chars[p]):
            if not bucket_range or bucket_range[-1][0] != p or (chars and chars + n > BUCKET_CHARS):
                bucket_range.append([p, s * shard_docs, s * shard_docs])
                chars = 0
            chars += int(n)
            bucket_range[-1][2] = min((s + 1) * shard_docs, int(base[p]))
            of_shard[s] = len(bucket_range) - 1
        first_bucket.append(of_shard)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)  # scratch of a run cut short: redone from the start
    work.mkdir(parents=True)
    buckets = _Buckets(work)
    for e, folder, desc in ((d1, d1_folder, "mix: scatter"), (extra, synthetic, "mix: scatter synthetic")):
        if not len(e.order):
            continue
        bucket = np.zeros(len(e.order), dtype=np.int64)
        for p in range(npart):
            m = e.part == p
            bucket[m] = first_bucket[p][e.pos[m] // shard_docs]
        by_number = np.argsort(e.order, kind="stable")
        numbers = e.order[by_number]
        k = 0
        for n, d in enumerate(progress(read_shards(folder), desc=desc, total=e.docs, unit="doc")):
            if k < len(numbers) and numbers[k] == n:
                line = json.dumps(d.to_record(), ensure_ascii=False)
                while k < len(numbers) and numbers[k] == n:
                    j = by_number[k]
                    buckets.add(int(bucket[j]), f"{e.pos[j]}\t{line}\n")
                    k += 1
    buckets.flush()
    parts: dict[str, PartMix] = {}
    for p, part in enumerate(part_names):
        with ShardWriter(out / "train" / part, shard_docs) as w:
            for b in sorted({int(x) for x in first_bucket[p]}):
                _, start, end = bucket_range[b]
                lines: list[str | None] = [None] * (end - start)
                for line in buckets.read(b):
                    pos, rec = line.split("\t", 1)
                    lines[int(pos) - start] = rec
                for rec in lines:
                    w.write(json.loads(rec))
        parts[part] = PartMix(docs=w.docs, chars=w.chars)
    shutil.rmtree(work)
    return parts


class _Entries:
    """The draws from one pass's documents: their numbers in the stream, in written order, with the
    part, length and topic of each, and (after ``place``) its position in its part."""

    def __init__(self, by_source: dict[str, _Docs], order: array, part_of_source: list[int]):
        n = sum(len(d.number) for d in by_source.values())
        self.docs = n
        part = np.zeros(n, dtype=np.int64)
        self.length = np.zeros(n, dtype=np.int64)
        self.topic = np.zeros(n, dtype=np.int64)
        for (name, d), p in zip(by_source.items(), part_of_source):
            numbers = np.frombuffer(d.number, dtype=np.int64)
            part[numbers] = p
            self.length[numbers] = np.frombuffer(d.length, dtype=np.int64)
            if len(d.topic):
                self.topic[numbers] = np.frombuffer(d.topic, dtype=np.int64)
        self.order = np.frombuffer(order, dtype=np.int64) if len(order) else np.zeros(0, dtype=np.int64)
        self.part = part[self.order]
        self.pos = np.zeros(len(self.order), dtype=np.int64)

    def place(self, base: np.ndarray) -> None:
        for p in range(len(base)):
            m = self.part == p
            self.pos[m] = base[p] + np.arange(int(m.sum()), dtype=np.int64)


class _Buckets:
    """Scratch files of bucket lines, appended to from a buffer of at most BUFFER_BYTES."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.buf: dict[int, list[str]] = defaultdict(list)
        self.size = 0

    def path(self, b: int) -> Path:
        return self.folder / f"bucket-{b:06d}.tsv"

    def add(self, b: int, line: str) -> None:
        self.buf[b].append(line)
        self.size += len(line)
        if self.size > BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        for b, lines in self.buf.items():
            with open(self.path(b), "a", encoding="utf-8", newline="") as f:
                f.writelines(lines)
        self.buf.clear()
        self.size = 0

    def read(self, b: int):
        if self.path(b).exists():
            with open(self.path(b), encoding="utf-8", newline="") as f:
                yield from f

