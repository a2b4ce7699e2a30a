"""The dedup pass over hash partitions: the same fates as one partition and as the reference rules
(the first copy of a text survives; near-duplicate clusters are those of verifying every candidate
pair) on real text with planted copies, on one worker and two; each task stays under the memory cap."""

from __future__ import annotations

import random
import tracemalloc
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from hare.core.documents import Document, shard_paths
from hare.core.io import read_jsonl, write_jsonl
from hare.core.text import normalize_for_dedup, text_hash
from hare.corpus import passes
from hare.corpus.build import build_corpus
from hare.corpus.config import CorpusConfig, SourceConfig
from hare.corpus.passes import EXACT_BYTES_PER_DOC, EXACT_FIXED_BYTES, EXACT_ROW, Fate, Tally, exact_partition
from hare.corpus.workers import run_tasks
from hare.filters.minhash import (LINK_BYTES_PER_DOC, LINK_FIXED_BYTES, NearDuplicateIndex, estimated_jaccard,
                                  link_partition, partition_of, partitions_for)
from tests.conftest import nltk_texts

CLEAN = {"language_id": "none", "min_words": 20}


def _texts() -> list[str]:
    """Movie reviews in read order with planted exact copies (changed only in spacing and punctuation,
    which normalization folds) and near-duplicates (a few words changed), each after its original."""
    rng = random.Random(3)
    reviews = [" ".join(t.split()[:300]) for _, t in nltk_texts("movie_reviews", 160)]
    out = list(reviews)
    for i in range(0, 160, 7):
        out.insert(rng.randrange(i + 1, len(out) + 1), "  " + reviews[i].replace(" , ", " ,  ") + " .")
    for i in range(3, 160, 5):
        words = reviews[i].split()
        for _ in range(rng.randrange(1, 6)):
            words[rng.randrange(len(words))] = "altered"
        out.insert(rng.randrange(out.index(reviews[i]) + 1, len(out) + 1), " ".join(words))
    return out


def _components(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def _reference(work: Path, shards, cfg: CorpusConfig) -> list[int]:
    """The fates by the rules themselves, from the cleaned documents: a set of digests in read order,
    then every pair of each LSH bucket verified and their connected components (each keeps its first)."""
    recs = [r for name, _ in shards for r in read_jsonl(passes.clean_paths(work, name)[0])]
    texts = [r["text"] for r in recs]
    seen: set[bytes] = set()
    fates, cand = [], []
    for i, r in enumerate(recs):
        if "reason" in r:
            fates.append(Fate.RULE)
            continue
        h = text_hash(normalize_for_dedup(r["text"]), normalized=True)
        fates.append(Fate.EXACT_DUPLICATE if h in seen and cfg.dedup != "none" else Fate.KEPT)
        seen.add(h)
        if fates[-1] == Fate.KEPT:
            cand.append(i)
    if cfg.dedup != "minhash":
        return fates
    index = NearDuplicateIndex.from_config(cfg.minhash, "unused")
    index.discard()
    sigs = index.signer([texts[i] for i in cand])
    bands = index.band_hashes(sigs)
    pairs = []
    for b in range(bands.shape[1]):
        buckets: dict[int, list[int]] = {}
        for k, h in enumerate(bands[:, b].tolist()):
            buckets.setdefault(h, []).append(k)
        pairs += [(a, c) for m in buckets.values() for j, a in enumerate(m) for c in m[j + 1:]
                  if estimated_jaccard(sigs[a], sigs[c]) >= cfg.minhash.threshold]
    for k, root in enumerate(_components(len(cand), pairs)):
        if root != k:
            fates[cand[k]] = Fate.NEAR_DUPLICATE
    return fates


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory) -> tuple[Path, list[tuple[str, str]], list[str]]:
    """The texts as cleaned shards of 23 documents (pass 1), as the corpus step leaves them."""
    work = tmp_path_factory.mktemp("work")
    texts = _texts()
    cfg = CorpusConfig(dedup="minhash", clean=CLEAN)
    shards = []
    for k in range(0, len(texts), 23):
        name = f"00000-{k // 23:05d}"
        write_jsonl(work / f"input-{name}.jsonl.zst",
                    [Document(id=f"d{i}", text=t, source="reviews").to_record() for i, t in
                     enumerate(texts[k:k + 23], k)])
        passes.ShardCleaner(str(work), cfg.clean, "minhash", cfg.minhash, None)(name)
        shards.append((name, "reviews"))
    return work, shards, texts


def _fates(work: Path, shards, cfg: CorpusConfig, run=None) -> tuple[list[int], passes.Dedup]:
    d = passes.dedup(work, shards, {"reviews": Tally()}, cfg, False, **({"run": run} if run else {}))
    return np.asarray(d.fates).tolist(), d


def test_partitions_give_the_reference_fates_and_the_same_clusters(cleaned):
    work, shards, _ = cleaned
    one = CorpusConfig(dedup="minhash", clean=CLEAN, dedup_partitions=1)
    fates, d = _fates(work, shards, one)
    assert fates == _reference(work, shards, one)
    counts = Counter(fates)
    assert counts[Fate.EXACT_DUPLICATE] == 23 and counts[Fate.NEAR_DUPLICATE] >= 25
    for parts, run in ((4, None), (7, partial(run_tasks, workers=2))):
        cfg = one.model_copy(update={"dedup_partitions": parts})
        again, e = _fates(work, shards, cfg, run)
        assert again == fates, parts
        assert np.array_equal(e.near.duplicates, d.near.duplicates) and np.array_equal(e.near.kept_of, d.near.kept_of)
        assert np.array_equal(e.near.jaccard_of, d.near.jaccard_of) and e.near.stats == d.near.stats
    assert not list(work.glob(".dedup-*"))  # spills removed


def test_exact_dedup_alone_over_partitions(cleaned):
    work, shards, _ = cleaned
    ref = _reference(work, shards, CorpusConfig(clean=CLEAN))
    for parts in (1, 5):
        fates, d = _fates(work, shards, CorpusConfig(dedup="exact", clean=CLEAN, dedup_partitions=parts))
        assert fates == ref and d.near is None


def _outputs(step: Path, stats) -> dict:
    out = {"stats": stats.model_dump()}
    for folder, prefix in (("train", "shard"), ("heldout", "shard"), ("removed", "removed")):
        out[folder] = [(p.name, list(read_jsonl(p))) for p in shard_paths(step / folder, prefix)]
    return out


def test_corpus_step_outputs_do_not_depend_on_partitions_or_workers(tmp_path):
    texts = _texts()
    write_jsonl(tmp_path / "reviews.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)])
    src = [SourceConfig(name="reviews", kind="jsonl", path=str(tmp_path / "reviews.jsonl"), id_field="id")]
    runs = []
    for parts, workers in ((1, 1), (6, 2)):
        cfg = CorpusConfig(dedup="minhash", clean=CLEAN, shard_docs=17, dedup_partitions=parts)
        out = tmp_path / f"p{parts}"
        runs.append(_outputs(out, build_corpus(src, cfg, 0, out, workers=workers)))
    assert runs[0] == runs[1]
    removed = runs[0]["stats"]["summary"]["removed_by_reason"]
    assert removed["exact_duplicate"] >= 20 and removed["near_duplicate"] >= 20
    near = [r for _, recs in runs[0]["removed"] for r in recs if r["reason"] == "near_duplicate"]

    def number(doc_id: str) -> int:
        return int(doc_id.rsplit("/r", 1)[1])

    assert all(number(r["metadata"]["duplicate_of"]) < number(r["id"]) for r in near)  # the earlier one is kept


def _peak(fn, task: dict) -> int:
    tracemalloc.start()
    try:
        fn(task)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_tasks_stay_under_the_memory_cap(tmp_path):
    """Under a 64 MB cap, 600,000 documents (10 % planted copies) are split so that every task,
    exact and LSH, peaks under the cap, as traced inside the task; one partition would not be."""
    rng = np.random.default_rng(0)
    n, cap = 600_000, 64
    sigs = rng.integers(0, 2**31, size=(n, 4), dtype=np.uint32)
    copies = rng.integers(0, n, n // 10)
    sigs[np.sort(rng.integers(0, n, n // 10))] = sigs[copies]
    parts = partitions_for(n, cap, LINK_BYTES_PER_DOC, LINK_FIXED_BYTES)
    assert parts > 1
    index = NearDuplicateIndex(tmp_path / "mh", bands=2, rows=2, threshold=0.5, partitions=parts)
    index.add_signatures(sigs[: n // 2])
    index.add_signatures(sigs[n // 2:])
    index.close()
    for task in index.tasks():
        assert _peak(link_partition, task) < cap << 20
    one = NearDuplicateIndex(tmp_path / "one", bands=2, rows=2, threshold=0.5)
    one.add_signatures(sigs)
    one.close()
    whole = _peak(link_partition, one.tasks()[0])
    assert whole / n < LINK_BYTES_PER_DOC  # the constant the partition count is derived from holds

    digests = rng.integers(0, 2**63, size=(n, 2)).astype(np.uint64)
    digests[rng.integers(0, n, n // 10)] = digests[copies]
    parts = partitions_for(n, cap, EXACT_BYTES_PER_DOC, EXACT_FIXED_BYTES)
    assert parts > 1
    rows = np.empty(n, dtype=EXACT_ROW)
    rows["d0"], rows["d1"], rows["pos"] = digests[:, 0], digests[:, 1], np.arange(n)
    part = partition_of(rows["d0"], parts)
    dups = []
    for p in range(parts):
        np.save(tmp_path / f"exact-{p}.npy", rows[part == p])
        task = {"rows": str(tmp_path / f"exact-{p}.npy"), "out": str(tmp_path / f"dups-{p}.npy")}
        assert _peak(exact_partition, task) < cap << 20
        dups.append(np.load(task["out"]))
    np.save(tmp_path / "exact-all.npy", rows)
    whole = _peak(exact_partition, {"rows": str(tmp_path / "exact-all.npy"), "out": str(tmp_path / "all.npy")})
    assert whole / n < EXACT_BYTES_PER_DOC
    assert np.array_equal(np.sort(np.concatenate(dups)), np.load(tmp_path / "all.npy"))
