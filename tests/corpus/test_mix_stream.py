"""The streamed mix step writes exactly what sampling whole documents in memory wrote, and holds
a bounded amount of text however large its input."""

import tracemalloc
from pathlib import Path

import pytest

from hare.core.documents import Document, write_shards
from hare.corpus import mix
from hare.corpus.steps import MIX
from hare.corpus.cluster import cluster_documents
from hare.pipeline import StepContext
from hare.corpus.config import ClusterConfig
from hare.recipe import Recipe
from tests.conftest import nltk_texts
from tests.corpus.mix_reference import REFERENCE_MIX


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Reviews and speeches (D1, the speeches in part d2), their topics, and a synthetic d2 part."""
    folder = tmp_path_factory.mktemp("mix")
    docs = [Document(t, f"r{i}", "reviews") for i, (_, t) in enumerate(nltk_texts("movie_reviews", 150))]
    docs += [Document(t, name, "speeches") for name, t in nltk_texts("state_union", 40)]
    docs.insert(5, docs.pop(160))  # a speech among the first reviews: sources come in mixed order
    write_shards(docs, folder / "decontam" / "train", shard_docs=60)
    cluster_documents(folder / "decontam" / "train", folder / "cluster", ClusterConfig(k=5), seed=7)
    synthetic = [Document(t[:1500], f"s{i}", "d2", {"topic": i % 3}) for i, (_, t) in
                 enumerate(nltk_texts("movie_reviews", 190)[150:])]
    write_shards(synthetic, folder / "curate" / "train", shard_docs=25)
    (folder / "no-cluster").mkdir()
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("max_chars,clusters,synthetic", [(None, True, True), (900_000, True, True),
                                                         (3_000_000, False, False), (700_000, True, False)])
def test_streamed_mix_equals_the_in_memory_mix(inputs, tmp_path, monkeypatch, max_chars, clusters, synthetic):
    # Small buckets and buffer, so that a few hundred documents fill many buckets and flush often.
    monkeypatch.setattr(mix, "BUCKET_CHARS", 50_000)
    monkeypatch.setattr(mix, "BUFFER_BYTES", 30_000)
    recipe = Recipe(name="t", seed=11, corpus={"shard_docs": 17},
                    sources=[{"name": "reviews", "kind": "jsonl", "path": "unused", "weight": 2.0},
                             {"name": "speeches", "kind": "jsonl", "path": "unused", "part": "d2"}],
                    mix={"max_chars": max_chars, "cluster_temperature": 3.0})
    deps = {"decontam": inputs / "decontam", "cluster": inputs / ("cluster" if clusters else "no-cluster")}
    if synthetic:
        deps["curate"] = inputs / "curate"
    outs = {}
    for name, step in (("streamed", MIX), ("reference", REFERENCE_MIX)):
        (tmp_path / name).mkdir()
        step(StepContext(recipe, "mix", tmp_path / name, deps))
        outs[name] = files(tmp_path / name)
    assert outs["streamed"] == outs["reference"]
    assert len([p for p in outs["streamed"] if p.startswith("train/d1/")]) > 3
    assert not (tmp_path / "streamed" / "work").exists()


def test_mix_holds_a_bounded_share_of_its_input(tmp_path, monkeypatch):
    """Peak Python memory (tracemalloc) while mixing ~7.8 M characters of real text, against the in-memory mix."""
    reviews = [t for _, t in nltk_texts("movie_reviews")]
    docs = [Document(t, f"r{i}", "reviews") for i, t in enumerate(reviews)]
    chars = sum(len(d.text) for d in docs)
    write_shards(docs, tmp_path / "decontam" / "train", shard_docs=50)
    (tmp_path / "no-cluster").mkdir()
    monkeypatch.setattr(mix, "BUCKET_CHARS", 500_000)
    monkeypatch.setattr(mix, "BUFFER_BYTES", 500_000)
    recipe = Recipe(name="t", corpus={"shard_docs": 50},
                    sources=[{"name": "reviews", "kind": "jsonl", "path": "unused"}], mix={"max_chars": chars})
    deps = {"decontam": tmp_path / "decontam", "cluster": tmp_path / "no-cluster"}
    peaks = {}
    for name, step in (("streamed", MIX), ("reference", REFERENCE_MIX)):
        (tmp_path / name).mkdir()
        tracemalloc.start()
        step(StepContext(recipe, "mix", tmp_path / name, deps))
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert files(tmp_path / "streamed") == files(tmp_path / "reference")
    assert chars > 7_000_000
    assert peaks["reference"] > chars  # every document's text at once
    assert peaks["streamed"] < chars / 4, peaks  # about two buckets and the buffer


def test_split_sources_writes_each_source_as_its_own_part_with_the_same_documents(inputs, tmp_path):
    from hare.core.documents import read_shards

    def run(split):
        recipe = Recipe(name="t", seed=11, corpus={"shard_docs": 17},
                        sources=[{"name": "reviews", "kind": "jsonl", "path": "unused"},
                                 {"name": "speeches", "kind": "jsonl", "path": "unused"}],
                        mix={"max_chars": 700_000, "split_sources": split})
        out = tmp_path / str(split)
        out.mkdir()
        MIX(StepContext(recipe, "mix", out, {"decontam": inputs / "decontam", "cluster": inputs / "cluster"}))
        return {p.name: sorted(d.id for d in read_shards(p)) for p in sorted((out / "train").iterdir())}

    whole, split = run(False), run(True)
    assert list(split) == ["d1.reviews", "d1.speeches"] and list(whole) == ["d1"]
    assert sorted(split["d1.reviews"] + split["d1.speeches"]) == whole["d1"]
    assert all(i.startswith("r") for i in split["d1.reviews"])
    assert not any(i.startswith("r") for i in split["d1.speeches"])
