"""LSH buckets: the clusters equal those of verifying every candidate pair, not a chain through the
bucket; checked on a hand-made bucket and against all-pairs verification on planted real text."""

from __future__ import annotations

import random

import numpy as np

from hare.filters.minhash import NearDuplicateIndex, Signer, estimated_jaccard
from hare.filters.config import MinHashConfig
from tests.conftest import nltk_texts


def _components(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """For every document the smallest index of its connected component (a plain union-find)."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])


def _verified_pairs(index: NearDuplicateIndex, sigs: np.ndarray, threshold: float, chain: bool = False):
    """Candidate pairs above ``threshold``: all pairs of each bucket, or (``chain``) each member with
    the bucket's first member and its predecessor only."""
    out = []
    bands = index.band_hashes(sigs)
    for b in range(bands.shape[1]):
        buckets: dict[int, list[int]] = {}
        for i, h in enumerate(bands[:, b].tolist()):
            buckets.setdefault(h, []).append(i)
        for members in buckets.values():
            if chain:
                cand = [(members[0], m) for m in members[1:]] + list(zip(members[1:-1], members[2:]))
            else:
                cand = [(a, c) for k, a in enumerate(members) for c in members[k + 1:]]
            out += [(a, c) for a, c in cand if estimated_jaccard(sigs[a:a + 1], sigs[c:c + 1])[0] >= threshold]
    return out


def test_a_pair_inside_a_bucket_is_linked_whatever_lies_between(tmp_path):
    cfg = MinHashConfig(bands=2, rows=4, threshold=0.8)
    shared = [1, 2, 3, 4]  # band 0: all four documents in one bucket
    sigs = np.array([shared + [9, 10, 11, 12],     # A
                     shared + [5, 6, 7, 8],        # B
                     shared + [13, 14, 15, 16],    # X
                     shared + [5, 6, 7, 99]],      # C: B ~ C = 7/8, unlike A and X
                    dtype=np.uint32)
    index = NearDuplicateIndex.from_config(cfg, tmp_path / "spill")
    index.add_signatures(sigs)
    near = index.find()
    assert near.kept.tolist() == [0, 1, 2, 1]
    assert abs(float(near.jaccard[3]) - 0.875) < 1e-6
    # a chain through the bucket (first member and predecessor) would have missed B ~ C
    assert _components(4, _verified_pairs(index, sigs, 0.8, chain=True)).tolist() == [0, 1, 2, 3]


def test_clusters_equal_all_pairs_verification_on_planted_templates(tmp_path):
    """Real reviews behind shared boilerplate (many documents in one bucket), with copies changed
    by varying amounts around the threshold."""
    rng = random.Random(0)
    reviews = [t.split()[:220] for _, t in nltk_texts("movie_reviews", 120)]
    boiler = [t.split()[:120] for _, t in nltk_texts("movie_reviews", 124)[120:]]
    docs = []
    for i, words in enumerate(reviews):
        base = boiler[i % 4] + words[: rng.randrange(10, 80)]
        docs.append(base)
        for _ in range(rng.randrange(0, 4)):
            copy = list(base)
            for j in rng.sample(range(len(copy)), rng.randrange(1, len(copy) // 6)):
                copy[j] = rng.choice(["blorft", "zib", "quux", "wug"])
            docs.append(copy)
    order = list(range(len(docs)))
    rng.shuffle(order)
    texts = [" ".join(docs[k]) for k in order]
    cfg = MinHashConfig(bands=10, rows=2, threshold=0.75)  # wide bands: big buckets
    sigs = Signer.from_config(cfg)(texts)
    index = NearDuplicateIndex.from_config(cfg, tmp_path / "spill")
    index.add_signatures(sigs)
    near = index.find()
    expected = _components(len(texts), _verified_pairs(index, sigs, 0.75))
    assert near.kept.tolist() == expected.tolist()
    assert near.is_duplicate().sum() > 50
    # the planted set is one where a chain through each bucket gives other clusters
    chain = _components(len(texts), _verified_pairs(index, sigs, 0.75, chain=True))
    assert (chain != expected).sum() >= 10
    assert near.stats["candidate_pairs"] <= sum(1 for _ in _verified_pairs(index, sigs, -1.0))
