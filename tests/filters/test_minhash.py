import json
import random
import tracemalloc

import numpy as np
import pytest
import yaml

from hare.cli import main
from hare.core.documents import shard_paths
from hare.filters.minhash import (MinHasher, NearDuplicateIndex, NpyAppender, Shingler, _union,
                                 candidate_probability, estimated_jaccard, jaccard, shingle_set)
from hare.core.io import read_json, read_jsonl
from hare.filters.config import MinHashConfig
from tests.conftest import nltk_texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """300 real movie reviews and 20 State of the Union addresses."""
    return [t for _, t in nltk_texts("movie_reviews", 300)] + [t for _, t in nltk_texts("state_union", 20)]


def changed_words(text: str, k: int, rng: random.Random) -> str:
    """``k`` words in every 300 replaced (at least ``k``): true Jaccard about 0.9 for k = 2-3."""
    w = text.split()
    for i in rng.sample(range(len(w)), max(k, k * len(w) // 300)):
        w[i] = "blorft"
    return " ".join(w)


def sentence_added(text: str) -> str:
    return text + "\nall in all , it is a film that i would gladly watch a second time with friends ."


def reformatted(text: str) -> str:
    return "  ".join(w.upper() + ";" for w in text.split())  # case, spacing and punctuation changed


def index_of(texts: list[str], tmp_path, **cfg) -> NearDuplicateIndex:
    index = NearDuplicateIndex.from_config(MinHashConfig(**cfg), tmp_path / "spill")
    for t in texts:
        index.add(t)
    return index


def test_planted_near_duplicates_are_found_and_unrelated_documents_are_not(texts, tmp_path):
    rng = random.Random(0)
    docs = list(texts)
    planted = {}
    for i in range(0, 60, 3):
        for k, copy in enumerate((changed_words(texts[i], 3, rng), sentence_added(texts[i + 1]),
                                  reformatted(texts[i + 2]))):
            planted[len(docs)] = i + k
            docs.append(copy)
    near = index_of(docs, tmp_path).find()
    for copy, orig in planted.items():
        assert near.kept[copy] == near.kept[orig] != copy, (copy, orig)
    # Every other pair the index links is a real near-duplicate (the review corpus has a few).
    dup = np.flatnonzero(near.is_duplicate())
    others = [int(d) for d in dup if d not in planted]
    for d in others:
        assert jaccard(shingle_set(docs[d]), shingle_set(docs[int(near.kept[d])])) > 0.7
    assert len(others) < 0.02 * len(texts)
    assert near.stats["duplicates"] == len(dup) == len(planted) + len(others)


def test_without_verification_unrelated_documents_still_do_not_pair(texts, tmp_path):
    near = index_of(texts, tmp_path, threshold=None).find()
    for d in np.flatnonzero(near.is_duplicate()):
        assert jaccard(shingle_set(texts[d]), shingle_set(texts[int(near.kept[d])])) > 0.5
    speeches = range(300, 320)
    assert not any(near.kept[s] < 300 for s in speeches)  # no speech pairs with a review


def test_jaccard_estimate_is_close_to_the_true_jaccard(texts):
    shingler, hasher = Shingler(5), MinHasher(112, seed=1)
    errors = []
    for i in range(40):
        a = texts[i].split()
        keep = int(len(a) * (0.3 + 0.7 * i / 40))  # true Jaccard from about 0.2 to about 0.95
        b = a[:keep] + texts[i + 100].split()[: len(a) - keep]
        ha, hb = shingler(" ".join(a)), shingler(" ".join(b))
        sig = hasher.signatures(np.concatenate([ha, hb]), np.array([0, len(ha)]))
        true = jaccard(set(ha.tolist()), set(hb.tolist()))
        est = float(estimated_jaccard(sig[0], sig[1]))
        sd = (true * (1 - true) / 112) ** 0.5
        assert abs(est - true) <= 4 * sd + 0.01, (true, est)
        errors.append(est - true)
    assert abs(np.mean(errors)) < 0.02  # unbiased


def test_lsh_s_curve_matches_the_documented_values():
    assert candidate_probability(0.5) == pytest.approx(0.053, abs=0.002)
    assert candidate_probability(0.8) == pytest.approx(0.924, abs=0.002)
    assert (1 / 14) ** (1 / 8) == pytest.approx(0.72, abs=0.005)


def test_keep_rule_is_the_first_added_and_deterministic(texts, tmp_path):
    rng = random.Random(1)
    a, b = changed_words(texts[5], 4, rng), sentence_added(texts[5])
    docs = [texts[0], a, texts[1], texts[5], b]
    first = index_of(docs, tmp_path / "1").find()
    again = index_of(docs, tmp_path / "2").find()
    assert np.array_equal(first.kept, again.kept) and np.array_equal(first.jaccard, again.jaccard)
    assert first.kept.tolist() == [0, 1, 2, 1, 1]
    reordered = index_of([docs[i] for i in (4, 3, 1, 0, 2)], tmp_path / "3").find()
    assert reordered.kept.tolist() == [0, 0, 0, 3, 4]


def test_union_matches_a_reference_union_find():
    rng = np.random.default_rng(0)
    n = 2000
    u, v = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    parent = np.arange(n)
    _union(parent, u, v)
    ref = list(range(n))

    def find(x):
        while ref[x] != x:
            x = ref[x]
        return x

    for a, b in zip(u.tolist(), v.tolist()):
        ra, rb = find(a), find(b)
        ref[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(x) for x in range(n)])
    got = parent.copy()
    while not np.array_equal(got[got], got):
        got = got[got]
    assert np.array_equal(got, roots)  # both: every component's root is its smallest member


def find_peak(index: NearDuplicateIndex) -> int:
    index.close()  # the last batch's hashing is adding, not finding
    tracemalloc.start()
    index.find()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_signatures_and_bands_spill_to_disk_and_finding_memory_is_linear(texts, tmp_path):
    docs = [" ".join(w[j:j + 30]) for w in map(str.split, texts) for j in range(0, len(w) - 30, 30)][:4000]
    index = index_of(docs, tmp_path)
    index.close()
    spill = sorted(p.name for p in (tmp_path / "spill").iterdir())
    assert spill == [f"band-{b:03d}.npy" for b in range(14)] + ["signatures.npy"]  # no temporary file left
    sig = np.load(tmp_path / "spill" / "signatures.npy", mmap_mode="r")
    assert sig.shape == (len(docs), 112) and sig.dtype == np.uint32
    band = np.load(tmp_path / "spill" / "band-003.npy")
    assert band.shape == (len(docs),) and np.array_equal(band, index.band_hashes(np.asarray(sig))[:, 3])
    assert index._buf == []
    small = index_of(docs[:1000], tmp_path / "small")
    find_peak(small)  # the first call pays one-time costs (lazy imports, numpy caches)
    per_doc = (find_peak(index) - find_peak(small)) / (len(docs) - 1000)
    assert per_doc < 64  # one band at a time (about 40 bytes a document), never the 448 of a signature


def test_npy_appender_is_atomic(tmp_path):
    w = NpyAppender(tmp_path / "x.npy", np.uint64)
    w.append(np.arange(5, dtype=np.uint64))
    assert not (tmp_path / "x.npy").exists()  # nothing under the real name before close
    w.append(np.arange(3, dtype=np.uint64))
    w.close()
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    y = NpyAppender(tmp_path / "y.npy", np.uint32, (4,))
    with pytest.raises(ValueError):
        y.append(np.zeros((2, 3), np.uint32))
    y.discard()
    w = NpyAppender(tmp_path / "z.npy", np.uint64)
    w.append(np.arange(2, dtype=np.uint64))
    w.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_corpus_step_removes_near_duplicates_across_sources(texts, tmp_path):
    rng = random.Random(2)
    reviews = texts[:120]
    with open(tmp_path / "a.jsonl", "w") as f:
        for i, t in enumerate(reviews):
            f.write(json.dumps({"id": f"a{i}", "text": t}) + "\n")
    copies = {f"b/b{i}": f"a/a{i}" for i in range(0, 40, 4)}  # near-duplicates of source a, in source b
    with open(tmp_path / "b.jsonl", "w") as f:
        for i in range(0, 40, 4):
            f.write(json.dumps({"id": f"b{i}", "text": changed_words(reviews[i], 3, rng)}) + "\n")
        f.write(json.dumps({"id": "b-own", "text": texts[310]}) + "\n")
        f.write(json.dumps({"id": "b-exact", "text": reviews[50].upper()}) + "\n")
    recipe = {"name": "mh", "sources": [{"name": "a", "kind": "jsonl", "path": "a.jsonl", "id_field": "id"},
                                        {"name": "b", "kind": "jsonl", "path": "b.jsonl", "id_field": "id"}],
              "corpus": {"dedup": "minhash", "heldout_fraction": 0.1, "shard_docs": 50}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["corpus", str(tmp_path / "r.yaml"), "--out-dir", str(tmp_path / "runs")]) == 0
    out = tmp_path / "runs" / "mh" / "corpus"
    stats = read_json(out / "stats.json")
    removed = [r for p in shard_paths(out / "removed", "removed") for r in read_jsonl(p)]
    near = {r["id"]: r for r in removed if r["reason"] == "near_duplicate"}
    assert {k: near[k]["metadata"]["duplicate_of"] for k in copies} == copies
    assert all(near[k]["metadata"]["jaccard_estimate"] >= 0.8 for k in copies)
    b = stats["sources"]["b"]
    assert b["removed"] == {"near_duplicate": 10, "exact_duplicate": 1}
    assert b["train"] + b["heldout"] == 1
    kept = {r["id"] for p in shard_paths(out / "train") + shard_paths(out / "heldout") for r in read_jsonl(p)}
    for name, st in stats["sources"].items():
        assert st["docs_in"] + st["quarantined"] == st["train"] + st["heldout"] + sum(st["removed"].values()) \
            + st["quarantined"]
        assert st["chars_in"] == st["chars_out"] + st["chars_removed"]
    s = stats["summary"]
    assert s["read"] == s["train"] + s["heldout"] + s["removed"] + s["quarantined"] == 120 + 12
    assert len(removed) == s["removed"] and len(kept) == s["train"] + s["heldout"]
    assert set(copies.values()) <= kept and not set(copies) & kept
    assert s["removed_by_reason"]["near_duplicate"] == stats["minhash"]["duplicates"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["heldout", "removed", "train"]  # no spill left
    from hare.pipeline import build_report

    report = build_report(tmp_path / "runs" / "mh", "mh")
    assert "<h3>Near-duplicates</h3>" in report and "removed as a near-duplicate of a/a" in report
