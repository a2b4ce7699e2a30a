"""Real-world bad input: damaged compressed files, byte-order marks, nulls, files that are not JSON
Lines, folders of the wrong files, name clashes across subfolders. Nothing crashes a step, nothing
is lost silently, and a command that cannot go on says why in one line."""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
from pathlib import Path

import pytest
import yaml
import zstandard

from hare.cli import main
from hare.core.io import RecordError, jsonl_lines, read_jsonl, read_rows
from hare.corpus.read import Quarantine, read_source, source_parts
from hare.corpus.config import SourceConfig
from tests.conftest import shared_or_skip


def _gsm8k_lines(split: str = "test") -> list[bytes]:
    return shared_or_skip("gsm8k", f"{split}.jsonl").read_bytes().splitlines(keepends=True)


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".gz":
        return gzip.compress(data)
    if suffix == ".bz2":
        return bz2.compress(data)
    return zstandard.ZstdCompressor(level=3).compress(data)


@pytest.mark.parametrize("suffix", [".gz", ".zst", ".bz2"])
def test_truncated_compressed_file_keeps_the_records_before_the_damage(tmp_path, suffix):
    lines = _gsm8k_lines("train" if suffix == ".bz2" else "test")  # bz2 blocks hold 900 kB
    packed = _compress(b"".join(lines), suffix)
    path = tmp_path / f"gsm8k.jsonl{suffix}"
    path.write_bytes(packed[: len(packed) // 2])
    q = Quarantine()
    docs = list(read_source(SourceConfig(name="g", kind="jsonl", path=str(path), text_field="question"), q))
    assert 100 < len(docs) < len(lines)
    # every record read is the file's own, in order, up to the damage
    assert [d.text for d in docs] == [json.loads(l)["question"] for l in lines[: len(docs)]]
    [bad] = q.records
    assert bad["file"] == str(path) and bad["line"] in (len(docs) + 1, len(docs) + 2)
    assert "truncated" in bad["reason"] and "byte" in bad["reason"]
    offset = int(bad["reason"].split("after byte ")[1].split()[0])
    assert offset >= sum(len(l) for l in lines[: len(docs)])
    # without on_error the same damage raises, naming the file and line
    with pytest.raises(RecordError, match="truncated"):
        list(jsonl_lines(path))


def test_byte_order_mark_null_text_and_missing_field(tmp_path):
    lines = _gsm8k_lines()[:5]
    path = tmp_path / "bom.jsonl"
    rows = [json.loads(l) for l in lines]
    rows[2]["question"] = None
    del rows[3]["question"]
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    q = Quarantine()
    docs = list(read_source(SourceConfig(name="g", kind="jsonl", path=str(path), text_field="question"), q))
    assert [d.id for d in docs] == ["g/bom.jsonl:1", "g/bom.jsonl:2", "g/bom.jsonl:5"]
    assert docs[0].text == rows[0]["question"]
    reasons = {r["line"]: r["reason"] for r in q.records}
    assert reasons == {3: "field 'question' is null, not a string", 4: "field 'question' is missing"}


def test_a_json_array_file_is_reported_once_as_not_json_lines(tmp_path):
    rows = [json.loads(l) for l in _gsm8k_lines()[:20]]
    pretty = tmp_path / "array.json"
    pretty.write_text(json.dumps(rows, indent=2))
    obj = tmp_path / "object.jsonl"
    obj.write_text(json.dumps(rows[0], indent=2))
    for path in (pretty, obj):
        q = Quarantine()
        assert list(read_source(SourceConfig(name="g", kind="jsonl", path=str(path), text_field="question"), q)) == []
        [bad] = q.records
        assert bad["line"] == 1 and bad["reason"].startswith("not JSON Lines") and "jq -c" in bad["reason"]
    # read_rows (benchmarks) reads a JSON array as rows
    assert list(read_rows(pretty)) == rows


def test_ids_are_unique_across_subfolders(tmp_path):
    lines = _gsm8k_lines()
    for sub, chunk in (("a", lines[:30]), ("b", lines[30:60])):
        (tmp_path / "src" / sub).mkdir(parents=True)
        (tmp_path / "src" / sub / "part-0.jsonl").write_bytes(b"".join(chunk))
    (tmp_path / "src" / "part-0.jsonl").write_bytes(b"".join(lines[60:70]))
    src = SourceConfig(name="g", kind="jsonl", path=str(tmp_path / "src"), text_field="question")
    whole = [d.id for d in read_source(src, Quarantine())]
    by_part = [d.id for part in source_parts(src) for d in read_source(part, Quarantine())]
    assert len(set(whole)) == len(whole) == 70 and by_part == whole
    assert "g/a/part-0.jsonl:1" in whole and "g/b/part-0.jsonl:1" in whole and "g/part-0.jsonl:1" in whole


def test_a_folder_of_other_files_is_an_error_that_says_what_it_holds(tmp_path):
    for name in ("ARC-Easy-test.jsonl", "ARC-Easy-train.jsonl"):
        shutil.copy(shared_or_skip("arc", name), tmp_path / name)
    from hare.core.io import DataError

    with pytest.raises(DataError, match=r"holds no parquet files .* but 2 \.jsonl"):
        source_parts(SourceConfig(name="arc", kind="parquet", path=str(tmp_path)))


def test_parquet_without_the_text_column_and_damaged_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from hare.core.io import DataError

    rows = [json.loads(l) for l in _gsm8k_lines()[:50]]
    path = tmp_path / "g.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=r"g.parquet: no column 'text' \(columns: question, answer\)"):
        list(read_source(SourceConfig(name="g", kind="parquet", path=str(path)), Quarantine()))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    q = Quarantine()
    assert list(read_source(SourceConfig(name="g", kind="parquet", path=str(bad), text_field="question"), q)) == []
    assert len(q.records) == 1 and "not a readable Parquet file" in q.records[0]["reason"]


def test_damaged_benchmark_file_names_file_and_row(tmp_path):
    lines = _gsm8k_lines()
    path = tmp_path / "test.jsonl.gz"
    packed = gzip.compress(b"".join(lines[:200]))
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(RecordError, match=r"test.jsonl.gz:\d+: file damaged or truncated"):
        list(read_rows(path))
    csv = tmp_path / "x_test.csv"
    csv.write_bytes(b"question,answer\n\xff\xfe bad,1\n")
    with pytest.raises(RecordError, match=r"x_test.csv:1: cannot be read \(UnicodeDecodeError"):
        list(read_rows(csv))


def _recipe(folder: Path, sources: list[dict], name: str = "r") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "sources": sources,
                                    "corpus": {"dedup": "exact", "heldout_fraction": 0.0},
                                    "execution": {"workers": 1}}))
    return path


def test_corpus_step_finishes_on_damaged_input_and_streams_the_quarantine(tmp_path, capsys):
    lines = _gsm8k_lines()
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "b").mkdir(parents=True)
    packed = gzip.compress(b"".join(lines[:400]))
    (tmp_path / "in" / "a" / "part-0.jsonl.gz").write_bytes(packed[: len(packed) * 3 // 4])
    (tmp_path / "in" / "b" / "part-0.jsonl.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + b"".join(lines[400:600])))
    recipe = _recipe(tmp_path, [{"name": "g", "kind": "jsonl", "path": "in", "text_field": "question"}])
    assert main(["corpus", str(recipe), "--out-dir", str(tmp_path / "runs")]) == 0
    step = tmp_path / "runs" / "r" / "corpus"
    stats = json.loads((step / "stats.json").read_text())["summary"]
    quarantine = list(read_jsonl(step / "quarantine.jsonl"))
    assert stats["quarantined"] == len(quarantine) == 1
    assert quarantine[0]["file"].endswith("a/part-0.jsonl.gz") and "truncated" in quarantine[0]["reason"]
    assert stats["read"] == stats["train"] + stats["heldout"] + stats["removed"] + stats["quarantined"]
    assert stats["read"] - 1 == 200 + 296  # every record of b (the BOM one included), a's up to the damage
    ids = [r["id"] for p in sorted(step.rglob("*.jsonl.zst")) for r in read_jsonl(p)]
    assert len(ids) == stats["read"] - 1
    assert {"g/a/part-0.jsonl.gz:1", "g/b/part-0.jsonl.gz:1"} <= set(ids) and len(set(ids)) == len(ids)


def test_cli_one_line_errors_and_exit_codes(tmp_path, capsys):
    lines = _gsm8k_lines()
    # a source whose every record is quarantined: a data error (1), naming the source and the first reason
    (tmp_path / "g.jsonl").write_bytes(b"".join(lines[:20]))
    recipe = _recipe(tmp_path, [{"name": "g", "kind": "jsonl", "path": "g.jsonl"}])
    assert main(["corpus", str(recipe), "--out-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "source 'g'" in err and "gave no documents" in err and "field 'text' is missing" in err
    # Parquet without the column (raised in a worker process): one line, status 1
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([json.loads(l) for l in lines[:20]]), tmp_path / "g.parquet")
    recipe = _recipe(tmp_path, [{"name": "p", "kind": "parquet", "path": "g.parquet"}], "p")
    assert main(["corpus", str(recipe), "--out-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "no column 'text' (columns: question, answer)" in err and "Traceback" not in err
    # a recipe that is not UTF-8: a usage error (2)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\nsources: []\n".encode("latin-1"))
    assert main(["validate", str(bad)]) == 2
    assert "not a UTF-8 text file" in capsys.readouterr().err
    # --debug shows the traceback instead
    with pytest.raises(Exception, match="gave no documents"):
        main(["corpus", str(_recipe(tmp_path, [{"name": "g", "kind": "jsonl", "path": "g.jsonl"}], "d")),
              "--out-dir", str(tmp_path / "runs"), "--debug"])


def test_eval_on_a_file_or_a_folder_without_weights(tmp_path, capsys):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 64)
    assert main(["eval", str(weights)]) == 2
    assert "not a model folder" in capsys.readouterr().err
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    assert main(["eval", str(folder), "--limit", "1"]) == 2
    assert "config.json but no weights" in capsys.readouterr().err
    assert main(["audit", str(folder)]) == 2
    assert "config.json but no weights" in capsys.readouterr().err
