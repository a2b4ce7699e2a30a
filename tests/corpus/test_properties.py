"""Property tests: random bytes and random JSON lines through the readers, random Unicode text with
planted real benchmark items through decontamination."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hare.core.evalsets import load_benchmark
from hare.core.documents import Document
from hare.core.ngrams import EvalText, NgramIndex
from hare.core.text import match_words
from hare.filters.decontam import Decontaminator
from hare.corpus.read import Quarantine, read_source
from hare.corpus.config import SourceConfig
from hare.filters.config import DecontamConfig
from tests.conftest import shared_or_skip
from tests.filters.test_decontam_leaks import encodings

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def _read(path: Path, kind: str = "jsonl") -> tuple[list[Document], Quarantine]:
    q = Quarantine()
    return list(read_source(SourceConfig(name="s", kind=kind, path=str(path)), q)), q


@SETTINGS
@given(data=st.binary(max_size=3000), compress=st.sampled_from(["", ".gz", ".gz-cut"]))
def test_random_bytes_never_raise(tmp_path_factory, data, compress):
    folder = tmp_path_factory.mktemp("bytes")
    if compress:
        packed = gzip.compress(data)
        path = folder / "x.jsonl.gz"
        path.write_bytes(packed[: len(packed) // 2] if compress == ".gz-cut" else packed)
    else:
        path = folder / "x.jsonl"
        path.write_bytes(data)
    docs, q = _read(path)
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data  # a byte-order mark is skipped
    lines = [l for l in body.split(b"\n") if l.strip()]
    assert len(docs) + len(q.records) <= len(lines) + 1
    if not compress:  # everything read is kept or quarantined, and nothing twice
        assert len(docs) + len(q.records) == len(lines) or (
            q.records and q.records[-1]["reason"].startswith("not JSON Lines"))
    assert all(isinstance(d.text, str) for d in docs) and len({d.id for d in docs}) == len(docs)
    (folder / "t").mkdir()
    (folder / "t" / "x.txt").write_bytes(data)
    docs, q = _read(folder / "t", "text")
    assert len(docs) + len(q.records) == 1


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=8)
records = st.dictionaries(st.sampled_from(["text", "id", "other"]), json_values, max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.one_of(records, json_values), min_size=1, max_size=15))
def test_random_json_lines_are_kept_or_quarantined(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("json") / "x.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    docs, q = _read(path)
    if isinstance(rows[0], list):  # a first line that opens an array: the file is not JSON Lines
        assert docs == [] and len(q.records) == 1
        return
    assert len(docs) + len(q.records) == len(rows)  # read = kept + quarantined
    expected = [r["text"] for r in rows if isinstance(r, dict) and isinstance(r.get("text"), str)]
    assert [d.text for d in docs] == expected


@pytest.fixture(scope="module")
def arc_index():
    shared_or_skip("arc")
    from tests.conftest import SHARED

    items = [it for it in load_benchmark("arc_easy", SHARED) if len(match_words(it.text())) >= 15][:200]
    index = NgramIndex(13)
    for it in items:
        index.add(EvalText(it.benchmark, f"{it.split}/{it.id}", it.text()))
    return items, index.finalize()


@SETTINGS
@given(before=st.text(max_size=300), after=st.text(max_size=300), which=st.integers(0, 199),
       how=st.sampled_from(sorted(encodings("x"))))
def test_planted_items_are_found_in_random_unicode_text(arc_index, before, after, which, how):
    items, index = arc_index
    item = items[which]
    text = encodings(item.text())[how]
    doc = Document(f"{before} {text} {after}", "d")
    for policy in ("drop", "cut"):
        dec = Decontaminator.from_config(index, DecontamConfig(ngram=13, policy=policy, threshold=0.0, cut_margin=0,
                                                   max_ngram_doc_frequency=None))
        m = dec.matches(doc)
        dec.count(m)
        kept, rec = dec.decide(doc, m)
        assert rec is not None, how
        if kept is not None:  # what is left holds no n-gram of any item
            assert len(index.lookup(match_words(kept.text))[0]) == 0
