"""Leaks that plain lowercased matching misses: Unicode encodings of an item, short items, an item
quoted on many pages; and a bit filter that stays sparse at any size. Real ARC and MMLU items
planted in real movie reviews."""

from __future__ import annotations

import math
import random
import unicodedata

import pytest

from hare.core.evalsets import load_benchmark
from hare.core.documents import Document
from hare.core.ngrams import EvalText, NgramIndex, filter_bits
from hare.core.text import match_words, words_with_spans
from hare.filters.decontam import Decontaminator, ignored_ngrams
from hare.filters.config import DecontamConfig
from tests.conftest import nltk_texts


@pytest.fixture(scope="module")
def arc(shared_data):
    return [it for it in load_benchmark("arc_challenge", shared_data) if len(match_words(it.text())) >= 20]


@pytest.fixture(scope="module")
def hosts():
    return [t for _, t in nltk_texts("movie_reviews", 200)]


def _index(items, n=13, min_item_words=8) -> NgramIndex:
    index = NgramIndex(n, min_item_words)
    for it in items:
        index.add(EvalText(it.benchmark, f"{it.split}/{it.id}", it.text()))
    return index.finalize()


def _run(dec: Decontaminator, docs: list[Document]):
    matched = [dec.matches(d) for d in docs]
    for m in matched:
        dec.count(m)
    return [dec.decide(d, m) for d, m in zip(docs, matched)]


def _plant(host: str, text: str) -> str:
    cut = host.find(". ", len(host) // 2) + 2
    return host[:cut] + text + " " + host[cut:]


FULL_WIDTH = {c: chr(ord(c) - 0x21 + 0xFF01) for c in map(chr, range(0x21, 0x7F))}


def encodings(text: str) -> dict[str, str]:
    """The same item as web pages carry it."""
    return {
        "full-width": "".join(FULL_WIDTH.get(c, c) for c in text),
        "zero-width characters, no-break spaces": "\u00a0".join(w[:1] + "\u200b" + w[1:] for w in text.split(" "))
        .replace("e", "e\u200d"),
        "soft hyphens": " ".join(w[:2] + "\u00ad" + w[2:] if len(w) > 4 else w for w in text.split(" ")),
        "ligatures": text.replace("fi", "\ufb01").replace("fl", "\ufb02"),
        "decomposed accents": unicodedata.normalize("NFD", text.replace("e", "\u00e9")),
        "title case and dotted capitals": text.title().replace("I", "\u0130"),
    }


def test_an_item_is_found_however_it_is_encoded_and_cut_cleanly(arc, hosts):
    rng = random.Random(0)
    items = rng.sample(arc, 10)
    # the index is built from accented items too, so that decomposed text has something to match
    index = _index(items + [type(it)(it.benchmark, it.split, it.id + "-e", it.question.replace("e", "\u00e9"),
                                     it.choices, it.answer) for it in items])
    dec = Decontaminator.from_config(index, DecontamConfig(ngram=13, policy="cut", cut_margin=0, max_ngram_doc_frequency=None))
    docs, planted = [], []
    for it in items:
        for how, text in encodings(it.text()).items():
            # the host starts with a dotted capital I, whose lowercase is two code points
            docs.append(Document("\u0130stanbul. " + _plant(hosts[len(docs) % len(hosts)], text), f"d{len(docs)}"))
            planted.append((how, it))
    for (how, it), doc, (kept, rec) in zip(planted, docs, _run(dec, docs)):
        assert rec is not None and rec["action"] == "cut", how
        # no n-gram of any item is left, and the host text before the item is intact
        assert len(index.lookup(match_words(kept.text))[0]) == 0, how
        assert kept.text.startswith("\u0130stanbul. "), how
        host = hosts[docs.index(doc) % len(hosts)]
        assert kept.text[len("\u0130stanbul. "):][:200] == host[:200], how


def test_word_spans_map_back_to_the_original_text():
    text = "\u0130stanbul \uff26\uff55\uff4c\uff4c caf\u0065\u0301 Stra\u00dfe \ufb01ne zero\u200bwidth"
    words, spans = words_with_spans(text)
    assert words == ["istanbul", "full", "cafe", "strasse", "fine", "zerowidth"]
    assert [text[a:b] for a, b in spans] == ["\u0130stanbul", "\uff26\uff55\uff4c\uff4c", "caf\u0065\u0301",
                                             "Stra\u00dfe", "\ufb01ne", "zero\u200bwidth"]
    assert match_words(text) == words


def test_short_items_are_indexed_whole(shared_data, hosts):
    short = [it for it in load_benchmark("mmlu", shared_data) if 8 <= len(match_words(it.text())) < 13][:40]
    assert len(short) == 40
    docs = [Document(_plant(hosts[i], it.text()), f"s{i}") for i, it in enumerate(short)]
    cfg = DecontamConfig(ngram=13, max_ngram_doc_frequency=None, threshold=0.0)
    found = [rec for _, rec in _run(Decontaminator.from_config(_index(short), cfg), docs)]
    assert all(rec is not None for rec in found)
    assert all(rec["example"]["matched_words"] == len(match_words(it.text())) for rec, it in zip(found, short))
    # not indexed below min_item_words (13 here: the behaviour of an index of 13-grams only)
    assert all(rec is None for _, rec in _run(Decontaminator.from_config(_index(short, min_item_words=13), cfg), docs))
    clean = [Document(h, f"c{i}") for i, h in enumerate(hosts[40:])]
    assert all(rec is None for _, rec in _run(Decontaminator.from_config(_index(short), cfg), clean))


def test_an_item_quoted_on_many_pages_is_removed_from_each_and_ignored_ngrams_are_listed(arc, hosts):
    quoted, partial = arc[0], arc[1]
    part_words = partial.question.split()[:14]
    assert len(match_words(" ".join(part_words))) >= 13
    docs = [Document(_plant(hosts[i], quoted.text()), f"q{i}") for i in range(12)]
    docs += [Document(_plant(hosts[20 + i], " ".join(part_words)), f"p{i}") for i in range(12)]
    index = _index(arc[:50])
    cfg = DecontamConfig(ngram=13, policy="drop", threshold=0.0, max_ngram_doc_frequency=10)
    dec = Decontaminator.from_config(index, cfg)
    results = _run(dec, docs)
    # the whole item, on 12 pages (more than the cutoff): removed from every one
    assert all(kept is None and rec["action"] == "dropped" for kept, rec in results[:12])
    # a phrase of another item on 12 pages: ordinary text to the cutoff, so kept
    assert all(kept is not None and rec is None for kept, rec in results[12:])
    records = [rec for _, rec in results if rec]
    ignored = ignored_ngrams({13: index}, {13: dec.doc_freq}, 10, records)
    assert all("_whole_hashes" not in r for r in records)
    by_item = {}
    for r in ignored:
        by_item.setdefault(r["item_id"], []).append(r)
    q, p = by_item[f"{quoted.split}/{quoted.id}"], by_item[f"{partial.split}/{partial.id}"]
    assert all(r["documents"] == 12 and r["documents_where_item_found_whole"] == 12 for r in q)
    assert len(q) == len(match_words(quoted.text())) - 12  # every n-gram of the item
    assert len(p) == 2 and all(r["documents"] == 12 and r["documents_where_item_found_whole"] == 0 for r in p)
    assert p[0]["ngram"] in " ".join(match_words(partial.question)) and p[0]["items_holding"] == 1


def test_the_bit_filter_is_sized_from_the_number_of_ngrams(arc):
    index = _index(arc)
    assert index.filter_bits == filter_bits(len(index.hashes))
    assert index.filter_fill() < 0.035
    for ngrams in (10**3, 10**6, 10**8, 10**9):  # GPT-3's fixed 2^27 bits would be 53 % full at 10^8
        bits = filter_bits(ngrams)
        assert 1 - math.exp(-ngrams / 2**bits) < 0.035 and 2**bits <= max(64 * ngrams, 2**16)
