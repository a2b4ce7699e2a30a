"""The NumPy cleaning rules decide exactly as the per-word Python rules they replaced
(``clean_reference.py``), and the Gopher rules agree with datatrove's on the same documents."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from hare.core.documents import Document
from hare.filters import clean
from hare.filters.config import CleanConfig
from tests.conftest import ROOT, nltk_texts
from tests.filters import clean_reference as ref

CORPORA = ("movie_reviews", "webtext", "brown", "state_union", "abc", "inaugural")


def _chunks(text: str, size: int) -> list[str]:
    out, buf, n = [], [], 0
    for line in text.split("\n"):
        buf.append(line)
        n += len(line) + 1
        if n >= size:
            out.append("\n".join(buf))
            buf, n = [], 0
    if buf:
        out.append("\n".join(buf))
    return out


def _variant(text: str, rng: random.Random) -> str:
    """Real text bent towards the rules' edges: repeated lines, passages and paragraphs, bullets,
    ellipses, case changes, symbols, non-ASCII letters, links and personal data."""
    lines = text.split("\n")
    words = text.split()
    kind = rng.randrange(10)
    if kind == 0 and lines:  # repeated lines
        k = rng.randrange(1, 4)
        return "\n".join(lines + lines[:k] * rng.randrange(1, 4))
    if kind == 1 and len(words) > 20:  # a passage written again
        a = rng.randrange(len(words) - 10)
        return " ".join(words + words[a:a + rng.randrange(5, 60)] + words[:rng.randrange(0, 30)])
    if kind == 2:
        return "\n".join(rng.choice(("- ", "• ", "* ", "")) + l for l in lines)
    if kind == 3:
        return "\n".join(l + rng.choice(("...", "…", "", " ...")) for l in lines)
    if kind == 4:
        return " ".join(w.upper() if rng.random() < 0.3 else w for w in words)
    if kind == 5:
        return text + " #" * rng.randrange(0, len(words) // 5 + 2)
    if kind == 6:
        return "".join({"a": "ä", "o": "ö", "e": "é", "s": "ſ", "i": "İ"}.get(ch, ch) if rng.random() < 0.3 else ch
                       for ch in text)
    if kind == 7:
        return "\n\n".join([text[:rng.randrange(50, 400)]] * rng.randrange(1, 4) + [text])
    if kind == 8:
        return (text + "\nMail jane.doe@example.org or call (555) 123-4567 from 10.0.0.1; see https://x.org/a"
                " and WWW.example.com.\nPlease enable JavaScript. Our privacy policy applies.")
    return " ".join(rng.sample(words, len(words))) if words else text  # shuffled words


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """About 3,000 real documents of 100 to 6,000 characters, a third of them bent by ``_variant``."""
    rng = random.Random(0)
    docs = []
    for corpus in CORPORA:
        for _, text in nltk_texts(corpus, 60):
            if corpus == "brown":  # POS tags off: "The/at jury/nn" -> "The jury"
                text = "\n".join(" ".join(w.rsplit("/", 1)[0] for w in l.split()) for l in text.split("\n"))
            docs += _chunks(text, rng.choice((100, 400, 1500, 6000)))
    rng.shuffle(docs)
    docs = docs[:2000]
    return docs + [_variant(d, rng) for d in docs[:1000]]


CONFIGS = {
    "default": {},
    "web": {"fineweb_rules": True, "require_complete_ending": True, "min_alpha_word_fraction": 0.8,
            "min_line_chars": 20, "max_non_ascii_fraction": 0.05, "min_english_word_fraction": 0.3},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_verdicts_and_texts_match_the_previous_rules(documents, name):
    cfg = CleanConfig(language_id="wordlist", **CONFIGS[name])
    old, new = ref.Cleaner(cfg), clean.Cleaner.from_config(cfg)
    reasons = set()
    for i, text in enumerate(documents):
        a, b = Document(text, str(i)), Document(text, str(i))
        va, vb = old(a), new(b)
        assert vb == va, (i, text[:300])
        assert b.text == a.text, i
        reasons.add(va[1])
    assert old.removed == new.removed and old.changes == new.changes
    # the documents reach most rules, so the comparison covers them
    assert len(reasons) >= 8, reasons


def test_duplicate_ngram_chars_matches_the_previous_scan(documents):
    rng = random.Random(1)
    for text in documents[::7]:
        words = [w.lower() for w in text.split()]
        if rng.random() < 0.5:  # many repeats, overlapping ones too
            words = words[:40] * 3 + words[20:70] + words[:10]
        for n in range(2, 11):
            assert clean.duplicate_ngram_chars(words, n) == ref.duplicate_ngram_chars(words, n)


def _datatrove_python() -> Path | None:
    """This interpreter when datatrove is installed (the dev extras pin it), else the benchmark's venv."""
    import importlib.util
    import sys

    if importlib.util.find_spec("datatrove") is not None:
        return Path(sys.executable)
    venv = ROOT / "benchmarks" / ".venv-datatrove" / "bin" / "python"
    return venv if venv.exists() else None


# datatrove's two Gopher filters over JSON lines on stdin, with words split on whitespace as hare
# splits them (datatrove's English splitter is spaCy's tokenizer, which makes punctuation words of
# its own); one JSON verdict per document on stdout.
_DATATROVE_SCRIPT = """
import json, sys
import datatrove.pipeline.filters.gopher_quality_filter as q
import datatrove.pipeline.filters.gopher_repetition_filter as r
from datatrove.data import Document
q.split_into_words = r.split_into_words = lambda text, language: text.split()
rep, qual = r.GopherRepetitionFilter(), q.GopherQualityFilter(max_non_alpha_words_ratio=0.8)
for line in sys.stdin:
    doc = Document(text=json.loads(line), id="x")
    out = []
    for f in (rep, qual):
        v = f.filter(doc)
        out.append(True if v is True else v[1])
    print(json.dumps(out))
"""


@pytest.mark.slow
def test_gopher_rules_agree_with_datatrove(documents):
    """Where hare's and datatrove's Gopher rules are defined alike they decide alike. The known
    differences (README, "Choices where the paper is silent"): datatrove measures repeated lines and
    n-grams against all characters of the text, hare against the characters of the lines or words;
    datatrove splits paragraphs on blank lines only and counts lines without stripping them;
    datatrove's word count and mean length leave out words made only of punctuation; datatrove's
    top-n-gram rule also counts an n-gram that occurs once, which only matters below Gopher's 50 words
    (documents the quality rules drop anyway), so documents that short are left out here."""
    python = _datatrove_python()
    if python is None:
        pytest.skip("datatrove is absent: `pip install -e .[dev]` installs it")
    docs = [d for d in documents if len(d.split()) >= 50][:1500]
    res = subprocess.run([str(python), "-c", _DATATROVE_SCRIPT], input="\n".join(json.dumps(d) for d in docs),
                         capture_output=True, text=True, check=True, timeout=300)
    theirs = [json.loads(l) for l in res.stdout.splitlines()]
    assert len(theirs) == len(docs)
    cfg = CleanConfig(min_alpha_word_fraction=0.8)
    rep, qual = clean.GopherRepetitionFilter.from_config(cfg), clean.GopherQualityFilter.from_config(cfg)
    agree = {"repetition": 0, "quality": 0}
    for text, (t_rep, t_qual) in zip(docs, theirs):
        doc = Document(text, "x")
        agree["repetition"] += (rep.filter(doc) is True) == (t_rep is True)
        agree["quality"] += (qual.filter(doc) is True) == (t_qual is True)
    share = {k: v / len(docs) for k, v in agree.items()}
    print("keep/drop agreement with datatrove:", share)
    assert share["repetition"] >= 0.95 and share["quality"] >= 0.95, share


def test_ascii_normalization_is_the_regular_expressions_one(documents):
    """``normalize_for_dedup``'s one-pass ASCII path gives what its regular expressions give."""
    from hare.core.text import _DIGIT_RE, _PUNCT_RE, _SPACE_RE, normalize_for_dedup

    def by_regex(t: str) -> str:
        return _SPACE_RE.sub(" ", _DIGIT_RE.sub("0", _PUNCT_RE.sub("", t.lower()))).strip()

    rng = random.Random(2)
    samples = ["".join(map(chr, range(128))), "\x1c a\x1fb \x0b\x0c\r\n C3PO_x-y ... 42"]
    samples += ["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(60))) for _ in range(3000)]
    for t in samples + documents:
        assert normalize_for_dedup(t) == by_regex(t), repr(t[:80])
