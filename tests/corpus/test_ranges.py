"""Byte-range reading of one big JSON Lines file: the same documents, ids, quarantine and outputs as
reading it whole."""

from __future__ import annotations

import json

import yaml

from hare.cli import main
from hare.core.io import read_json
from hare.corpus.ranges import JsonlRange, part_from_json, read_range, split_part
from hare.corpus.read import Quarantine, read_source
from hare.corpus.config import SourceConfig
from tests.conftest import nltk_texts


def _big_file(path, n: int = 300) -> None:
    """Real reviews, one per line, with blank lines, a broken line and records without a text string."""
    lines = [json.dumps({"text": t}) for _, t in nltk_texts("movie_reviews", n)]
    lines.insert(11, "")
    lines.insert(40, '{"text": "unterminated')
    lines.insert(77, json.dumps({"body": "no text field"}))
    lines.insert(150, json.dumps({"text": 7}))
    lines.insert(151, "   ")
    path.write_text("\n".join(lines))  # no line break after the last line


def test_ranges_read_what_the_whole_file_reads(tmp_path):
    path = tmp_path / "big.jsonl"
    _big_file(path)
    src = SourceConfig(name="b", kind="jsonl", path=str(path))
    whole_q, parts_q = Quarantine(), Quarantine()
    whole = [(d.id, d.text) for d in read_source(src, whole_q)]
    for max_bytes in (1, 5_000, 37_123, 200_000):
        ranges = split_part(src, max_bytes)
        assert all(isinstance(r, JsonlRange) for r in ranges) and len(ranges) > 1
        assert ranges[0].start == 0 and ranges[-1].end == path.stat().st_size
        assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
        raw = path.read_bytes()
        assert all(raw[r.start - 1:r.start] == b"\n" for r in ranges[1:])  # every range starts a line
        assert [part_from_json(r.model_dump_json()) for r in ranges] == ranges
        parts_q = Quarantine()
        got = [(d.id, d.text) for r in ranges for d in read_range(r, parts_q)]
        assert got == whole, max_bytes
        assert parts_q.records == whole_q.records and len(whole_q.records) == 3
    assert split_part(src, path.stat().st_size) == [src]  # small enough: read whole
    assert split_part(src, 0) == [src]


def test_corpus_step_output_is_the_same_read_whole_or_in_ranges(tmp_path):
    _big_file(tmp_path / "big.jsonl", 200)
    out = {}
    for name, split in (("whole", 0), ("ranges", 60_000)):
        recipe = {"name": name, "sources": [{"name": "b", "kind": "jsonl", "path": "big.jsonl"}],
                  "corpus": {"dedup": "minhash", "shard_docs": 40, "split_file_bytes": split,
                             "clean": {"language_id": "wordlist"}}, "execution": {"workers": 2}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
        assert main(["corpus", str(tmp_path / f"{name}.yaml"), "--out-dir", str(tmp_path / "runs")]) == 0
        out[name] = tmp_path / "runs" / name / "corpus"
    assert len(split_part(SourceConfig(name="b", kind="jsonl", path=str(tmp_path / "big.jsonl")), 60_000)) > 3

    def files(run, folder):
        return sorted(p.name for p in (run / folder).iterdir()) if (run / folder).is_dir() else []

    for folder in ("train", "heldout", "removed"):
        a = files(out["whole"], folder)
        assert a == files(out["ranges"], folder) and (a or folder == "removed")
        for f in a:
            assert (out["whole"] / folder / f).read_bytes() == (out["ranges"] / folder / f).read_bytes(), (folder, f)
    assert (out["whole"] / "quarantine.jsonl").read_bytes() == (out["ranges"] / "quarantine.jsonl").read_bytes()
    sw, sr = read_json(out["whole"] / "stats.json"), read_json(out["ranges"] / "stats.json")
    shards = sw["summary"].pop("shards"), sr["summary"].pop("shards")  # input shards: each range ends one
    assert sw["summary"] == sr["summary"] and sw["summary"]["quarantined"] == 3 and shards[1] > shards[0]
