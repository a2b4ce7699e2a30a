"""hare's MinHash estimates Jaccard similarity as well as datasketch's does, on real document pairs."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from hare.core.text import normalize_for_dedup
from hare.filters.minhash import Signer, estimated_jaccard, jaccard, shingle_set
from hare.filters.config import MinHashConfig

datasketch = pytest.importorskip("datasketch", reason="datasketch is a dependency of the dev extras")

NUM_PERM = 256


def _pairs(reviews: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """Pairs over the whole range of similarity: a review and a copy with a share of its words
    replaced, a review and an overlapping window of it, two different reviews."""
    out = []
    for i, text in enumerate(reviews[:150]):
        words = text.split()
        kind = i % 3
        if kind == 0:
            rate = rng.choice((0.005, 0.02, 0.05, 0.1, 0.2))
            b = [rng.choice(words) if rng.random() < rate else w for w in words]
            out.append((text, " ".join(b)))
        elif kind == 1:
            cut = rng.randrange(len(words) // 4, len(words) // 2)
            out.append((" ".join(words[:len(words) - cut // 2]), " ".join(words[cut // 2:])))
        else:
            out.append((text, reviews[150 + i % 50]))
    return out


def test_minhash_estimates_agree_with_datasketch(reviews):
    rng = random.Random(0)
    pairs = _pairs(reviews, rng)
    signer = Signer.from_config(MinHashConfig(bands=32, rows=8, seed=1))  # 256 permutations, as datasketch below
    ours, theirs, exact = [], [], []
    for a, b in pairs:
        sa, sb = shingle_set(a), shingle_set(b)
        exact.append(jaccard(sa, sb))
        sig = signer([a, b])
        ours.append(float(estimated_jaccard(sig[0], sig[1])))
        # datasketch on the same shingles: the normalized text's word 5-grams, as bytes
        m = []
        for text in (a, b):
            w = normalize_for_dedup(text).split()
            mh = datasketch.MinHash(num_perm=NUM_PERM, seed=1)
            mh.update_batch([" ".join(w[i:i + 5]).encode() for i in range(len(w) - 4)])
            m.append(mh)
        theirs.append(m[0].jaccard(m[1]))
    ours, theirs, exact = map(np.array, (ours, theirs, exact))
    assert exact.min() < 0.1 and exact.max() > 0.9 and ((exact > 0.3) & (exact < 0.8)).sum() >= 20
    sigma = np.sqrt(exact * (1 - exact) / NUM_PERM)  # standard error of a 256-permutation estimate
    assert (np.abs(ours - exact) <= 4.5 * sigma + 0.01).all()
    assert (np.abs(theirs - exact) <= 4.5 * sigma + 0.01).all()
    err_ours, err_theirs = np.abs(ours - exact).mean(), np.abs(theirs - exact).mean()
    assert err_ours <= 1.25 * err_theirs + 0.005, (err_ours, err_theirs)
    assert abs((ours - exact).mean()) < 0.01  # unbiased, as datasketch's
    assert np.abs(ours - theirs).mean() <= 2 * math.sqrt(0.25 / NUM_PERM)
