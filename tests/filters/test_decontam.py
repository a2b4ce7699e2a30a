import random

import pytest

from hare.core.ngrams import EvalText, NgramIndex
from hare.core.text import words_with_spans
from hare.filters.decontam import Decontaminator, cut_spans
from hare.core.documents import Document
from hare.core.evalsets import load_benchmark
from hare.filters.config import DecontamConfig


def build(items, cfg):
    index = NgramIndex(cfg.ngram)
    for it in items:
        index.add(it)
    return Decontaminator.from_config(index, cfg)


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


BENCHMARKS = ["arc_easy", "arc_challenge", "hellaswag", "mmlu", "gsm8k", "truthfulqa"]


@pytest.fixture(scope="module")
def full_index(shared_data):
    """Every item of every split of the six benchmarks available here, in one 13-gram index."""
    items = {name: load_benchmark(name, shared_data) for name in BENCHMARKS}
    index = NgramIndex(13)
    for name, its in items.items():
        for it in its:
            index.add(EvalText(name, f"{it.split}/{it.id}", it.text()))
    return items, index.finalize()


def test_planted_items_from_every_benchmark_are_found_and_clean_text_is_not(full_index):
    from tests.conftest import nltk_texts

    items, index = full_index
    assert len(index) > 3_000_000 and index.hashes.nbytes + index.first_item.nbytes < 40e6
    rng = random.Random(0)
    hosts = [t for _, t in nltk_texts("movie_reviews")]
    docs, planted = [], []
    for name, its in items.items():
        eligible = [it for it in its if len(words_with_spans(it.text())[0]) >= 13]
        for it in rng.sample(eligible, 25):
            for v in variants(it.text(), rng):
                host = hosts[len(docs) % len(hosts)]
                cut = host.find(". ", len(host) // 2) + 2
                docs.append(Document(host[:cut] + v + " " + host[cut:], f"p{len(docs)}"))
                planted.append((name, it))
    clean = [Document(t, f"c{i}") for i, t in enumerate(hosts)]
    for name, text in nltk_texts("abc") + nltk_texts("webtext"):  # news and web text, in 40-line documents
        lines = text.split("\n")
        clean += [Document("\n".join(lines[j:j + 40]), f"{name}:{j}") for j in range(0, len(lines), 40)]
    dec = Decontaminator.from_config(index, DecontamConfig(ngram=13, policy="cut", max_ngram_doc_frequency=None))
    results = run_all(dec, docs + clean)
    found = [rec is not None for _, rec in results[:len(docs)]]
    assert sum(found) / len(docs) >= 0.99, [p[1].text()[:80] for p, f in zip(planted, found) if not f][:5]
    flagged = [d.id for d, (_, rec) in zip(clean, results[len(docs):]) if rec]
    assert len(flagged) / len(clean) < 0.001, flagged
    # the cut takes the planted item out and keeps the host text around it
    kept, rec = results[0]
    assert rec["action"] == "cut" and planted[0][1].question not in kept.text
    assert kept.text[:50] == docs[0].text[:50]
    assert any(x["source"] == planted[0][0] for x in rec["items"])


def test_real_quotations_are_found(full_index):
    """MMLU's US-history questions quote State of the Union addresses: true overlaps, found."""
    from tests.conftest import nltk_texts

    _, index = full_index
    dec = Decontaminator.from_config(index, DecontamConfig(ngram=13, policy="drop", max_ngram_doc_frequency=None))
    speeches = {n: t for n, t in nltk_texts("state_union")}
    doc = Document(speeches["state_union/1980-Carter.txt"], "carter")
    [(kept, rec)] = run_all(dec, [doc])
    assert rec["example"]["item_source"] == "mmlu" and rec["ngrams"] > 100
    assert "Soviet military power" in rec["example"]["corpus"]
    assert kept is not None and rec["action"] == "kept_below_threshold"  # a long speech, a few quoted passages


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
