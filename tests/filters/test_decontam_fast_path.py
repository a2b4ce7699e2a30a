"""The decontamination scan's numpy path (``NgramIndex.lookup_text``: words split and coded without
Python per word) finds exactly what the word-by-word path (``lookup`` of ``match_words``) finds, on
the real benchmark items and real text with items planted in it, ASCII or not."""

from __future__ import annotations

import random
import zipfile

import numpy as np

from hare.core.evalsets import load_benchmark
from hare.core.ngrams import EvalText, NgramIndex
from hare.core.text import MATCH_WORD_RE, ascii_word_keys, match_form, match_words
from tests.conftest import shared_or_skip


def texts(n: int) -> list[str]:
    """~4 KB pieces of the Brown corpus (real English)."""
    with zipfile.ZipFile(shared_or_skip("nltk_corpora", "brown.zip")) as z:
        names = [x for x in z.namelist() if not x.endswith("/") and "/c" in x][:n]
        raw = [z.read(x).decode("utf-8", "replace") for x in names]
    return [" ".join(w.rsplit("/", 1)[0] for w in t.split())[:4000] for t in raw]


def test_the_numpy_scan_finds_what_the_word_by_word_scan_finds():
    data = shared_or_skip()
    items = [EvalText(b, f"{it.split}/{it.id}", it.text()) for b in ("arc_easy", "arc_challenge", "mmlu")
             for it in load_benchmark(b, data)]
    index = NgramIndex(8, min_item_words=4)
    for it in items:
        index.add(it)
    index.finalize()
    rng = random.Random(0)
    docs = texts(60)
    for k in range(0, len(docs), 2):  # items planted, re-cased, with accents and curly quotes around them
        it = rng.choice(items).text
        docs[k] = docs[k][:900] + " " + (it.upper() if k % 4 else it) + " Café “naïve” " + docs[k][900:]
    docs += ["", "   ", "---", "Ünïcödé Straße ﬁnal " + items[0].text, items[1].text, "x" * 5000]
    found = 0
    for text in docs:
        fast = index.lookup_text(text)
        slow = index.lookup(match_words(text))
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
        found += len(fast[0]) > 0
    assert found >= 30  # the planted items are found, by both


def test_word_hashes_are_the_words_own_wherever_they_stand():
    form = match_form("The  river's 2nd bend; the RIVER bends. __x_y__ café")[0]
    words = MATCH_WORD_RE.findall(form) if form.isascii() else None
    if words is None:
        form = match_form("The  river's 2nd bend; the RIVER bends. __x_y__")[0]
        words = MATCH_WORD_RE.findall(form)
    h = ascii_word_keys(form)
    assert len(h) == len(words)
    alone = [int(ascii_word_keys(w)[0]) for w in words]
    assert h.tolist() == alone and alone[1] == alone[6]  # "river" twice: one hash
    assert len(set(alone)) == len(set(words))


def test_words_added_after_a_lookup_are_known_to_the_next():
    index = NgramIndex(3)
    index.add(EvalText("b", "1", "alpha beta gamma delta"))
    index.finalize()
    assert len(index.lookup_text("x alpha beta gamma y")[0]) == 1
    index.add(EvalText("b", "2", "epsilon zeta eta theta"))
    index.finalize()
    assert len(index.lookup_text("epsilon zeta eta")[0]) == 1


def test_words_of_any_length_are_keyed_apart_and_found():
    long = "a" * 70
    words = ["x", "ab", "abcdefgh", "abcdefghi", "abcdefghij" * 2, "abcdefghij" * 2 + "k", long, long + "b", "a" * 64,
             "a" * 65, "0" * 8, "00000000" + "1"]
    keys = ascii_word_keys(" ".join(words))
    assert len(set(keys.tolist())) == len(words)
    assert keys.tolist() == [int(ascii_word_keys(w)[0]) for w in words]
    index = NgramIndex(3)
    index.add(EvalText("b", "1", f"the {long} and {'abcdefghij' * 2} words"))
    index.finalize()
    pos, _ = index.lookup_text(f"Of THE {long.upper()}, AND {'abcdefghij' * 2} WORDS!")
    assert pos.tolist() == [1, 2, 3]
    assert len(index.lookup_text(f"the {long}b and {'abcdefghij' * 2} words")[0]) == 1
