"""Topic clustering on real text: four corpora should come out as four topics, named by their own words,
and the mix should cover topics by the temperature formula."""

import collections
import importlib.util
import json
import random

import pytest
from pydantic import ValidationError

from hare.corpus.cluster import ClusterError, auto_k, check_embedder, cluster_documents, load_assignments
from hare.core.documents import Document, read_shards, write_shards
from hare.corpus.steps import MIX as run_mix
from hare.corpus.mix import sample_source, topic_shares
from hare.core.io import read_json
from hare.pipeline import StepContext
from hare.corpus.config import ClusterConfig
from hare.recipe import Recipe
from tests.conftest import nltk_texts

CORPORA = ("reviews", "sotu", "science", "rural")


def abc_docs(name: str, n: int, words: int = 250) -> list[str]:
    """ABC news transcripts, consecutive stories joined into documents of about ``words`` words."""
    text = dict(nltk_texts("abc"))[f"abc/{name}.txt"].replace("\r\n", "\n")
    docs, cur = [], []
    for para in text.split("\n\n"):
        cur.append(para)
        if sum(len(p.split()) for p in cur) >= words:
            docs.append("\n\n".join(cur))
            cur = []
            if len(docs) == n:
                break
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Movie reviews, State of the Union speeches, ABC science and ABC rural news; source = corpus."""
    docs = [Document(t, f"r{i}", "reviews") for i, (_, t) in enumerate(nltk_texts("movie_reviews", 80))]
    docs += [Document(t, name, "sotu") for name, t in nltk_texts("state_union", 40)]
    docs += [Document(t, f"s{i}", "science") for i, t in enumerate(abc_docs("science", 80))]
    docs += [Document(t, f"u{i}", "rural") for i, t in enumerate(abc_docs("rural", 80))]
    folder = tmp_path_factory.mktemp("cluster")
    write_shards(docs, folder / "in", shard_docs=100)
    return folder, docs


@pytest.fixture(scope="module")
def clustered(corpus):
    folder, docs = corpus
    cluster_documents(folder / "in", folder / "k4", ClusterConfig(k=4), seed=1234)
    return folder / "k4"


def assignments(out) -> list[dict]:
    return [json.loads(line) for line in (out / "assignments.jsonl").read_text().splitlines()]


def purity(rows: list[dict]) -> float:
    """Share of documents in their cluster's majority corpus."""
    by = collections.defaultdict(collections.Counter)
    for r in rows:
        by[r["cluster"]][r["source"]] += 1
    return sum(c.most_common(1)[0][1] for c in by.values()) / len(rows)


def test_four_corpora_become_four_topics(corpus, clustered):
    _, docs = corpus
    rows = assignments(clustered)
    assert [(r["source"], r["id"]) for r in rows] == [(d.source, d.id) for d in docs]
    assert purity(rows) >= 0.97  # measured: 0.996 (one rural story lands with science)
    # and each corpus lives mostly in one cluster (inverse purity), so no corpus is split in two
    by_source = collections.defaultdict(collections.Counter)
    for r in rows:
        by_source[r["source"]][r["cluster"]] += 1
    assert all(c.most_common(1)[0][1] / sum(c.values()) >= 0.95 for c in by_source.values())
    assert len({c.most_common(1)[0][0] for c in by_source.values()}) == 4
    stats = read_json(clustered / "stats.json")
    assert stats["k"] == 4 and stats["docs"] == len(docs) and stats["sample_docs"] == len(docs)
    assert all(r["distance"] >= 0 for r in rows)


def test_topics_are_named_by_their_corpus_words(clustered):
    topics = read_json(clustered / "topics.json")
    major = {max(t["sources"], key=t["sources"].get): t for t in topics}
    expected = {"reviews": {"film", "movie"}, "sotu": {"congress", "america", "nation", "nations"},
                "science": {"researchers", "scientists", "university", "research"},
                "rural": {"farmers", "growers", "wheat"}}
    for source, words in expected.items():
        assert words & set(major[source]["top_terms"][:5]), (source, major[source]["top_terms"])
        assert major[source]["name"] == ", ".join(major[source]["top_terms"][:3])
    for t in topics:
        assert t["size"] == sum(t["sources"].values())
        ex = t["examples"]
        assert 1 <= len(ex) <= 5 and [e["distance"] for e in ex] == sorted(e["distance"] for e in ex)
        assert all(e["snippet"] for e in ex)
    assert sum(t["size"] for t in topics) == len(assignments(clustered))


def test_same_seed_same_assignments(corpus, clustered):
    folder, _ = corpus
    cluster_documents(folder / "in", folder / "again", ClusterConfig(k=4), seed=1234)
    assert (folder / "again" / "assignments.jsonl").read_bytes() == (clustered / "assignments.jsonl").read_bytes()
    assert read_json(folder / "again" / "topics.json") == read_json(clustered / "topics.json")


def test_fitting_on_a_sample_still_assigns_every_document(corpus):
    folder, docs = corpus
    out = folder / "sampled"
    cluster_documents(folder / "in", out, ClusterConfig(sample_docs=120), seed=7)
    stats = read_json(out / "stats.json")
    assert stats["sample_docs"] == 120 and stats["docs"] == len(docs)
    assert stats["k"] == auto_k(len(docs), 500) == 12  # round(sqrt(280 / 2))
    rows = assignments(out)
    assert len(rows) == len(docs) and purity(rows) >= 0.95  # measured: 0.98 at k = 12, fitted on all documents


def test_auto_k():
    assert auto_k(817, 500) == 20 and auto_k(3, 500) == 2 and auto_k(10**8, 500) == 500


def test_topic_shares_formula():
    chars = {0: 100, 1: 400, 2: 1600}
    assert topic_shares(chars, 1.0) == pytest.approx({0: 100 / 2100, 1: 400 / 2100, 2: 1600 / 2100})
    assert topic_shares(chars, 2.0) == pytest.approx({0: 1 / 7, 1: 2 / 7, 2: 4 / 7})  # sqrt: 10, 20, 40
    assert topic_shares(chars, 1e9) == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 1 / 3})
    assert topic_shares({0: 5, 1: 0}, 3.0) == {0: 1.0}  # a topic with no text gets nothing


def mix_ctx(tmp_path, docs, cluster_dir, max_chars, temperature=1.0, sources=("all",)):
    """The mix step's context over ``docs`` as the decontaminated training set."""
    write_shards(docs, tmp_path / "decontam" / "train")
    recipe = Recipe(name="t", sources=[{"name": s, "kind": "jsonl", "path": "unused"} for s in sources],
                    mix={"max_chars": max_chars, "cluster_temperature": temperature})
    out = tmp_path / f"mix-{temperature}"
    out.mkdir()
    return StepContext(recipe, "mix", out, {"decontam": tmp_path / "decontam", "cluster": cluster_dir})


@pytest.mark.parametrize("temperature", [1.0, 3.0, 1e6])
def test_mix_covers_topics_by_temperature(tmp_path, corpus, temperature):
    folder, docs = corpus
    # one source holding all four corpora; topics differ in size by ~8x (speeches are long)
    one = [Document(d.text, d.id, "all") for d in docs]
    out = folder / "one-source"
    if not out.exists():
        write_shards(one, folder / "one-in")
        cluster_documents(folder / "one-in", out, ClusterConfig(k=4), seed=1234)
    ctx = mix_ctx(tmp_path, one, out, 1_500_000, temperature)
    run_mix(ctx)
    stats = read_json(ctx.out / "stats.json")
    topic = load_assignments(out)
    longest = collections.defaultdict(int)
    for d in one:
        c = topic[(d.source, d.id)]
        longest[c] = max(longest[c], len(d.text))
    clusters = stats["clusters"]
    shares = topic_shares({int(c): v["chars_before"] for c, v in clusters.items()}, temperature)
    goal, got, over = 0.0, 0, 0
    for c in sorted(shares):
        # whole documents are drawn until the running target is reached: at most one document over it
        goal += 1_500_000 * shares[c]
        got += clusters[str(c)]["chars_after"]
        over = max(over, longest[c])
        assert round(goal) <= got < round(goal) + over, (c, clusters, goal)
    after = [v["chars_after"] for v in clusters.values()]
    before = [v["chars_before"] for v in clusters.values()]
    assert max(before) / min(before) > 5
    if temperature == 1e6:
        assert max(after) / min(after) < 1.1  # uniform
    if temperature == 1.0:
        assert max(after) / min(after) > 5  # as found
    written = list(read_shards(ctx.out / "train"))
    assert sum(len(d.text) for d in written) == stats["chars"] == sum(after)


def test_mix_without_clusters_samples_as_before(tmp_path, corpus):
    _, docs = corpus
    off = tmp_path / "cluster-off"
    off.mkdir()
    ctx = mix_ctx(tmp_path, docs, off, 400_000, sources=CORPORA)
    run_mix(ctx)
    stats = read_json(ctx.out / "stats.json")
    assert "clusters" not in stats
    rng = random.Random(1234)
    expected = collections.Counter()
    for s in CORPORA:  # sources in read order, each by the plain source sampler with the run's seed
        expected.update(d.id for d in sample_source([d for d in docs if d.source == s], 100_000, rng))
    assert collections.Counter(d.id for d in read_shards(ctx.out / "train")) == expected


def test_sentence_transformers_fails_early_and_clearly(tmp_path):
    with pytest.raises(ValidationError, match="model_path"):
        ClusterConfig(embedder="sentence-transformers")
    cfg = ClusterConfig(embedder="sentence-transformers", model_path=str(tmp_path / "no-such-model"))
    installed = importlib.util.find_spec("sentence_transformers") is not None
    with pytest.raises(ClusterError, match="not a local model folder" if installed else "pip install"):
        check_embedder(cfg)
    # before any data is read: the input folder does not even exist
    with pytest.raises(ClusterError):
        cluster_documents(tmp_path / "missing", tmp_path / "out", cfg, seed=0)


def test_empty_corpus(tmp_path):
    (tmp_path / "in").mkdir()
    assert cluster_documents(tmp_path / "in", tmp_path / "out", ClusterConfig(), seed=0) == {"docs": 0, "clusters": 0}
    assert (tmp_path / "out" / "assignments.jsonl").read_text() == ""


def test_disabled_step_writes_no_topics_and_the_mix_ignores_topics(tmp_path):
    from hare.corpus.steps import CLUSTER as run_cluster

    recipe = Recipe(name="t", sources=[{"name": "a", "kind": "jsonl", "path": "unused"}], cluster={"enabled": False})
    ctx = StepContext(recipe, "cluster", tmp_path, {"decontam": tmp_path / "missing"})
    assert run_cluster(ctx) == {"docs": 0, "clusters": 0}
    assert read_json(tmp_path / "stats.json") == {"enabled": False}
    assert load_assignments(tmp_path) is None
