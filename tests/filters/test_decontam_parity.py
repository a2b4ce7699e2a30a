"""The batched decontamination scan (``Decontaminator.matches_many``: many documents in one numpy
pass) finds exactly the matches, and makes exactly the decisions, of the scan it replaced
(tests/filters/decontam_reference.py, one document at a time), on real text (NLTK corpora) with
real benchmark items planted in it: verbatim, re-cased, re-spaced, re-punctuated, in Unicode forms,
split across two neighbouring documents, quoted in several documents, and as whole documents."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hare.core.documents import Document
from hare.core.evalsets import load_benchmark
from hare.core.ngrams import EvalText, NgramIndex
from hare.filters.decontam import Decontaminator, scan_batches
from tests.conftest import nltk_texts, shared_or_skip
from tests.filters.decontam_reference import ReferenceDecontaminator, words_with_spans as reference_spans

FULL_WIDTH = {c: chr(ord(c) - 0x21 + 0xFF01) for c in map(chr, range(0x21, 0x7F))}


def variant(text: str, kind: int, rng: random.Random) -> str:
    words = text.split()
    return [
        text,
        text.upper(),
        "  \n ".join(words),
        " ".join(w + rng.choice([",", ";", ":", "", " -"]) for w in words),
        "“" + text.replace("e", "é").replace("'", "’") + "”",
        "".join(FULL_WIDTH.get(c, c) for c in text),
        "\u00a0".join(w[:1] + "\u200b" + w[1:] for w in words),
    ][kind]


@pytest.fixture(scope="module")
def items() -> list[EvalText]:
    data = shared_or_skip()
    return [EvalText(b, f"{it.split}/{it.id}", it.text()) for b in ("arc_easy", "arc_challenge", "gsm8k", "truthfulqa")
            for it in load_benchmark(b, data) if b != "gsm8k" or it.split == "test"]


@pytest.fixture(scope="module")
def indexes(items):
    """One index per (n, min_item_words), built when first asked for."""
    built: dict[tuple[int, int], NgramIndex] = {}

    def get(n: int, min_item_words: int) -> NgramIndex:
        if (n, min_item_words) not in built:
            index = built[n, min_item_words] = NgramIndex(n, min_item_words)
            for it in items:
                index.add(it)
        return built[n, min_item_words]
    return get


@pytest.fixture(scope="module")
def docs(items) -> list[Document]:
    rng = random.Random(0)
    pieces = []
    for corpus, limit in (("brown", 80), ("webtext", None), ("movie_reviews", 150), ("abc", None)):
        for _, text in nltk_texts(corpus, limit):
            if corpus == "brown":
                text = " ".join(w.rsplit("/", 1)[0] for w in text.split())
            pieces += [text[i:i + 4000] for i in range(0, min(len(text), 40000), 4000)]
    rng.shuffle(pieces)
    texts = pieces[:360]
    assert len(texts) == 360
    long_items = [it.text for it in items if len(it.text.split()) >= 20]
    for k in range(0, 240, 3):  # planted in the middle, in one of the forms a web page may carry it
        t = texts[k]
        texts[k] = t[:len(t) // 2] + " " + variant(rng.choice(long_items), k % 7, rng) + " " + t[len(t) // 2:]
    for k in range(241, 300, 4):  # an item's first half ends a document, its second half starts the next
        words = rng.choice(long_items).split()
        texts[k] = texts[k] + " " + " ".join(words[:len(words) // 2])
        texts[k + 1] = " ".join(words[len(words) // 2:]) + " " + texts[k + 1]
    quoted = rng.sample(long_items, 3)
    for k in range(300, 330):  # the same few items quoted in many documents (the frequency cutoff)
        texts[k] = texts[k][:1000] + " " + quoted[k % 3] + " " + texts[k][1000:]
    texts += [it.text for it in rng.sample(items, 40)]  # whole items, long and short
    texts += ["", " ", "---", "x" * 5000, " ".join(texts[5:8]), "Ünïcödé Straße ﬁnal " + long_items[0],
              long_items[1] + "\x00" + long_items[2], long_items[3].replace(" ", "_")]
    return [Document(t, str(k), "web") for k, t in enumerate(texts)]


def _decisions(dec, docs, matched):
    for m in matched:
        dec.count(m)
    return [dec.decide(d, m) for d, m in zip(docs, matched)]


@pytest.mark.parametrize("n, min_item_words, policy, cutoff", [
    (13, 8, "cut", 2), (13, 13, "drop", None), (8, 4, "drop", 3), (8, 4, "cut", None)])
def test_the_batched_scan_matches_and_decides_as_the_reference(indexes, docs, n, min_item_words, policy, cutoff):
    index = indexes(n, min_item_words)
    settings = dict(policy=policy, threshold=0.05, cut_margin=20, max_ngram_doc_frequency=cutoff)
    ref = ReferenceDecontaminator(index, **settings)
    new = Decontaminator(index, **settings)
    expected = [ref.matches(d) for d in docs]
    got = new.matches_many(docs)
    assert got == expected
    assert [new.matches(d) for d in docs[:50]] == expected[:50]
    assert sum(1 for m in expected if m) >= 100  # the planted items are there to be found
    assert _decisions(new, docs, got) == _decisions(ref, docs, expected)


def test_matches_are_the_same_in_batches_of_any_size(indexes, docs):
    dec = Decontaminator(indexes(13, 8))
    whole = dec.matches_many(docs)
    for size in (1, 7, 1000, 50000):
        got = [m for batch in scan_batches(docs, size) for m in dec.matches_many(batch)]
        assert got == whole, size


def test_spans_of_words_are_the_reference_spans(docs):
    from hare.core.text import words_with_spans
    for d in docs:
        assert words_with_spans(d.text) == reference_spans(d.text)


def test_the_table_finds_what_a_binary_search_finds(indexes):
    from tests.filters.decontam_reference import find
    rng = np.random.default_rng(0)
    for table in indexes(8, 4).tables.values():
        present = table.hashes[rng.integers(0, len(table.hashes), 5000)]
        near = np.concatenate([present + np.uint64(1), present - np.uint64(1)])
        edges = np.array([0, 1, 2 ** 63, 2 ** 64 - 1], dtype=np.uint64)
        h = np.concatenate([present, near, rng.integers(0, 2 ** 63, 5000, dtype=np.uint64) * np.uint64(2), edges])
        assert np.array_equal(table.find(h), find(table, h))
        assert (table.find(present) >= 0).all()
    assert np.array_equal(NgramIndex(3).tables[3].find(edges), np.full(4, -1))
