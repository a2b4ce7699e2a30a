import random

import pytest

from hare.corpus.decontam import Decontaminator, EvalText, NgramIndex, cut_spans, words_with_spans
from hare.corpus.document import Document
from hare.evals.benchmarks import load_benchmark
from hare.recipe import DecontamConfig


def build(items, cfg):
    index = NgramIndex(cfg.ngram)
    for it in items:
        index.add(it)
    return Decontaminator(index, cfg)


def run_all(dec, docs):
    matched = [dec.matches(d) for d in docs]
    for m in matched:
        dec.count(m)
    return [dec.decide(d, m) for d, m in zip(docs, matched)]


def variants(text: str, rng: random.Random) -> list[str]:
    words = text.split()
    return [
        text,
        text.upper(),
        "   ".join(words),
        " ".join(w + rng.choice([",", ";", " -", ""]) for w in words),
    ]


@pytest.fixture
def arc_items(shared_data):
    items = [it for it in load_benchmark("arc_challenge", shared_data) if it.split == "test"]
    return [it for it in items if len(words_with_spans(it.text())[0]) >= 20][:60]


def test_planted_items_are_found_in_real_text(arc_items, reviews):
    rng = random.Random(0)
    cfg = DecontamConfig(ngram=13, policy="cut", max_ngram_doc_frequency=None)
    dec = build([EvalText("arc_challenge", it.id, it.text()) for it in arc_items], cfg)
    docs, planted = [], []
    for i, it in enumerate(arc_items):
        for v in variants(it.text(), rng):
            host = reviews[len(docs) % len(reviews)]
            cut = host.find(". ", len(host) // 2) + 2
            docs.append(Document(host[:cut] + v + " " + host[cut:], f"p{len(docs)}"))
            planted.append(it.id)
    clean = [Document(t, f"c{i}") for i, t in enumerate(reviews)]
    results = run_all(dec, docs + clean)
    found = sum(1 for (doc, rec), item_id in zip(results[:len(docs)], planted)
                if rec and any(x["id"] == item_id for x in rec["items"]))
    assert found / len(docs) >= 0.99
    flagged_clean = sum(1 for _, rec in results[len(docs):] if rec)
    assert flagged_clean / len(clean) < 0.001
    # the cut removed the planted item and kept the host text around it
    kept, rec = results[0]
    assert rec["action"] == "cut" and arc_items[0].question not in kept.text
    assert kept.text[:50] == docs[0].text[:50]


def test_drop_policy_uses_the_overlap_rate(reviews):
    cfg = DecontamConfig(ngram=8, policy="drop", threshold=0.5, max_ngram_doc_frequency=None)
    dec = build([EvalText("heldout", "h", reviews[0])], cfg)
    half = reviews[0][: len(reviews[0]) * 3 // 4] + "\n" + reviews[1][:300]
    little = reviews[2] + "\n" + " ".join(reviews[0].split()[:30])
    (a, ra), (b, rb) = run_all(dec, [Document(half, "a"), Document(little, "b")])
    assert a is None and ra["action"] == "dropped" and ra["rate"] > 0.5
    assert b is not None and rb["action"] == "kept_below_threshold" and 0 < rb["rate"] < 0.5


def test_common_ngrams_are_ignored_by_the_frequency_cutoff(reviews):
    boiler = "this review was written for the internet movie database and may be reproduced freely"
    cfg = DecontamConfig(ngram=8, policy="cut", max_ngram_doc_frequency=3)
    dec = build([EvalText("heldout", "h", "intro words " + boiler + " outro")], cfg)
    docs = [Document(t + "\n" + boiler, str(i)) for i, t in enumerate(reviews[:10])]
    assert all(rec is None for _, rec in run_all(dec, docs))


def test_cut_spans_merges_and_applies_margin():
    text = "0123456789" * 5
    out, removed = cut_spans(text, [(10, 15), (14, 20)], margin=2)
    assert removed == 14 and out == text[:8] + "\n" + text[22:]
