import gzip
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from hare.corpus.pydoc_render import _render_module
from hare.corpus.read import Quarantine, read_source, source_parts, split_pydoc
from hare.corpus.config import SourceConfig


def test_jsonl_quarantines_every_kind_of_bad_record_with_file_and_line(tmp_path):
    p = tmp_path / "a.jsonl"
    lines = [
        json.dumps({"text": "good one", "id": 1}).encode(),
        b'{"text": "broken',
        json.dumps({"body": "no text field"}).encode(),
        json.dumps({"text": 42}).encode(),
        b'{"text": "bad \xff utf8"}',
        json.dumps({"text": "x" * 500}).encode(),
        json.dumps([1, 2]).encode(),
        json.dumps({"text": "good two"}).encode(),
    ]
    p.write_bytes(b"\n".join(lines) + b"\n")
    q = Quarantine()
    src = SourceConfig(name="s", kind="jsonl", path=str(p), id_field="id")
    docs = list(read_source(src, q, max_line_bytes=200))
    assert [d.text for d in docs] == ["good one", "good two"]
    assert docs[0].id == "s/1" and docs[1].id == "s/a.jsonl:8" and docs[0].source == "s"
    reasons = {r["line"]: r["reason"] for r in q.records}
    assert set(reasons) == {2, 3, 4, 5, 6, 7}
    assert "bad JSON" in reasons[2]
    assert "'text' is missing" in reasons[3]
    assert "is a int" in reasons[4]
    assert "invalid UTF-8" in reasons[5]
    assert "longer than 200" in reasons[6]
    assert "not an object" in reasons[7]
    assert all(r["file"] == str(p) for r in q.records)
    assert len(docs) + len(q.records) == len(lines)  # nothing silently dropped


def test_compressed_jsonl_folder(tmp_path):
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "from gzip"}) + "\n")
    with open(tmp_path / "b.jsonl.zst", "wb") as raw:
        with zstandard.ZstdCompressor().stream_writer(raw) as w:
            w.write((json.dumps({"text": "from zstd"}) + "\n").encode())
    docs = list(read_source(SourceConfig(name="s", kind="jsonl", path=str(tmp_path)), Quarantine()))
    assert [d.text for d in docs] == ["from gzip", "from zstd"]


def test_parquet_reader_quarantines_nulls(tmp_path):
    pq.write_table(pa.table({"content": ["one", None, "three"], "key": ["a", "b", "c"]}), tmp_path / "x.parquet")
    q = Quarantine()
    src = SourceConfig(name="p", kind="parquet", path=str(tmp_path), text_field="content", id_field="key")
    docs = list(read_source(src, q))
    assert [(d.id, d.text) for d in docs] == [("p/a", "one"), ("p/c", "three")]
    assert q.records[0]["line"] == 2 and "null" in q.records[0]["reason"]


def test_text_folder_one_document_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe bad")
    q = Quarantine()
    docs = list(read_source(SourceConfig(name="t", kind="text", path=str(tmp_path)), q))
    assert [d.text for d in docs] == ["alpha"] and len(q.records) == 1


def test_limit(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps({"text": str(i)}) + "\n" for i in range(10)))
    assert len(list(read_source(SourceConfig(name="s", kind="jsonl", path=str(p), limit=3), Quarantine()))) == 3


def test_pydoc_split_gives_description_classes_and_functions():
    name, text, err = _render_module("json")
    assert err is None
    docs = dict(split_pydoc(name, text))
    assert "json" in docs and "JavaScript Object Notation" in docs["json"]
    assert docs["json.JSONDecoder"].startswith("class json.JSONDecoder(")
    funcs = docs["json#functions"]
    assert funcs.startswith("Functions of json") and "json.dumps(obj" in funcs and "json.loads(s" in funcs
    assert "Serialize ``obj``" in funcs
    # inherited sections repeat the base class: they are not part of a class's document
    assert "inherited from" not in docs["json.JSONDecodeError"] and "-----" not in docs["json.JSONDecodeError"]
    # the inheritance tree at the top of CLASSES is not a document
    assert not any(k.startswith("json.builtins") for k in docs)


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"content": ["one", None, "three"], "k": [1, 2, 3]}),
                               "test": datasets.Dataset.from_dict({"content": ["t"], "k": [9]})})
    dd.save_to_disk(str(tmp_path / "ds"))
    q = Quarantine()
    src = SourceConfig(name="h", kind="hf", path=str(tmp_path / "ds"), text_field="content", id_field="k")
    docs = list(read_source(src, q))
    assert [(d.id, d.text) for d in docs] == [("h/1", "one"), ("h/3", "three")]
    assert q.records[0]["line"] == 2 and "null" in q.records[0]["reason"]
    test = SourceConfig(name="h", kind="hf", path=str(tmp_path / "ds"), text_field="content", split="test")
    assert [d.text for d in read_source(test, Quarantine())] == ["t"]


def test_hf_name_not_in_the_cache_says_how_to_allow_the_hub(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    src = SourceConfig(name="h", kind="hf", path="no-such-org/no-such-dataset")
    with pytest.raises(ValueError, match="allow_hub: true"):
        list(read_source(src, Quarantine()))


def test_a_source_read_file_by_file_gives_the_same_documents_and_quarantine(tmp_path):
    (tmp_path / "j" / "sub").mkdir(parents=True)
    for k, folder in enumerate(["j", "j", "j/sub"]):
        with open(tmp_path / folder / f"part-{k}.jsonl", "w") as f:
            f.write(json.dumps({"text": f"doc {k} a"}) + "\n" + '{"text": broken\n')
            f.write(json.dumps({"text": f"doc {k} b"}) + "\n")
    (tmp_path / "j" / "notes.md").write_text("not a JSONL file")
    (tmp_path / "t").mkdir()
    for k in range(3):
        (tmp_path / "t" / f"{k}.txt").write_text(f"text file {k}")
    for src in [SourceConfig(name="j", kind="jsonl", path=str(tmp_path / "j")),
                SourceConfig(name="t", kind="text", path=str(tmp_path / "t")),
                SourceConfig(name="g", kind="jsonl", path=str(tmp_path / "j" / "*.jsonl"))]:
        whole, parts = Quarantine(), Quarantine()
        docs = [(d.id, d.text) for d in read_source(src, whole)]
        split = [(d.id, d.text) for part in source_parts(src) for d in read_source(part, parts)]
        assert docs == split and whole.records == parts.records and len(source_parts(src)) > 1
    limited = SourceConfig(name="j", kind="jsonl", path=str(tmp_path / "j"), limit=2)
    assert source_parts(limited) == [limited]  # a limit counts across files: read as one


def test_pydoc_documents_carry_no_environment_and_no_memory_addresses(monkeypatch):
    """``cgi.parse(environ=os.environ)`` would print this machine's environment, and default objects
    their addresses: the documents must be the same on every machine and every run."""
    import hare.corpus.read as read

    monkeypatch.setattr(read, "pydoc_modules", lambda: ["cgi", "configparser", "logging", "pyexpat", "xml.parsers.expat"])
    monkeypatch.setenv("HARE_TEST_SECRET", "do-not-train-on-me")
    src = SourceConfig(name="pydoc", kind="pydoc")
    first = [(d.id, d.text) for d in read_source(src, Quarantine())]
    texts = "\n".join(t for _, t in first)
    assert "cgi.parse(" in texts and "environ=environ({})" in texts
    assert "do-not-train-on-me" not in texts and not re.search(r" at 0x[0-9a-f]{4,}", texts)
    assert [(d.id, d.text) for d in read_source(src, Quarantine())] == first


def test_pydoc_documents_do_not_depend_on_what_the_reading_process_imported(monkeypatch, tmp_path):
    """Read here (a test runner with torch imported and logging handlers added) and in a plain
    interpreter, the pydoc documents are the same: the workers never inherit this process's state."""
    import json
    import logging
    import subprocess
    import sys

    import torch  # noqa: F401 - its classes subclass object and it patches inspect.getfile

    import hare.corpus.read as read
    from tests.conftest import ROOT

    modules = ["builtins", "inspect", "logging"]
    monkeypatch.setattr(read, "pydoc_modules", lambda: modules)
    handler = logging.NullHandler()
    logging.getLogger("hare.test").addHandler(handler)
    try:
        here = [[d.id, d.text] for d in read_source(SourceConfig(name="pydoc", kind="pydoc"), Quarantine())]
    finally:
        logging.getLogger("hare.test").removeHandler(handler)
    plain = subprocess.run(
        [sys.executable, "-c", "import json, sys; import hare.corpus.read as r; r.pydoc_modules = lambda: sys.argv[1:]; "
         "print(json.dumps([[d.id, d.text] for d in r.read_source(r.SourceConfig(name='pydoc', kind='pydoc'), "
         "r.Quarantine())]))", *modules], capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert here == json.loads(plain.stdout)
    texts = "\n".join(t for _, t in here)
    assert "logging.shutdown(" in texts and "AbsBackward0" not in texts and "_patched_getfile" not in texts


def test_pydoc_documents_do_not_depend_on_where_python_lives(tmp_path):
    """Rendered by the same Python found at another path (another virtual environment, another
    machine), the pages are the same: default arguments that print this installation's paths
    (``platform.architecture(executable=sys.executable)``) show neutral names instead."""
    import json
    import os
    import subprocess
    import sys

    from hare.corpus import pydoc_render

    other = tmp_path / "elsewhere" / "bin" / "python3"
    other.parent.mkdir(parents=True)
    os.symlink(sys.executable, other)
    pages = []
    for python in (sys.executable, str(other)):
        out = subprocess.run([python, "-I", pydoc_render.__file__, "1"], input=json.dumps(["platform"]).encode(),
                             capture_output=True, env={}, check=True, timeout=120)
        pages.append(json.loads(out.stdout.splitlines()[0])[1])
    assert pages[0] == pages[1]
    assert "architecture(executable='<python>'" in pages[0] and str(tmp_path) not in pages[1]
