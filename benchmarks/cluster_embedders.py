"""Topic clustering: all-MiniLM-L6-v2 (``cluster.embedder: minilm``) against TF-IDF + SVD (LSA).

The input is four real corpora from the NLTK data (the shared data folder): 80 movie reviews, 40
State of the Union speeches, 80 ABC science and 80 ABC rural news documents (consecutive stories
joined to about 250 words), the set tests/corpus/test_cluster.py clusters. Each embedder clusters
them into k = 4 topics with hare's cluster step code; the script prints, per embedder, purity (share
of documents in their cluster's majority corpus), inverse purity (share of each corpus in its main
cluster), documents/s of the whole step (start-up of the model included) and the seconds per phase.

    python benchmarks/cluster_embedders.py
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
import zipfile
from pathlib import Path

from hare.core.documents import Document, write_shards
from hare.core.io import read_json
from hare.corpus.cluster import cluster_documents
from hare.corpus.config import ClusterConfig

HERE = Path(__file__).resolve().parent


def texts(data: Path, corpus: str) -> dict[str, str]:
    with zipfile.ZipFile(data / "nltk_corpora" / f"{corpus}.zip") as z:
        return {n: z.read(n).decode("utf-8", errors="replace") for n in z.namelist()
                if not n.endswith("/") and "README" not in n}


def abc_docs(text: str, n: int, words: int = 250) -> list[str]:
    docs, cur = [], []
    for para in text.replace("\r\n", "\n").split("\n\n"):
        cur.append(para)
        if sum(len(p.split()) for p in cur) >= words:
            docs.append("\n\n".join(cur))
            cur = []
            if len(docs) == n:
                break
    return docs


def corpora(data: Path) -> list[Document]:
    docs = [Document(t, f"r{i}", "reviews") for i, t in enumerate(list(texts(data, "movie_reviews").values())[:80])]
    docs += [Document(t, n, "sotu") for n, t in list(texts(data, "state_union").items())[:40]]
    abc = texts(data, "abc")
    docs += [Document(t, f"s{i}", "science") for i, t in enumerate(abc_docs(abc["abc/science.txt"], 80))]
    docs += [Document(t, f"u{i}", "rural") for i, t in enumerate(abc_docs(abc["abc/rural.txt"], 80))]
    return docs


def scores(rows: list[dict]) -> tuple[float, float]:
    by_cluster, by_source = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for r in rows:
        by_cluster[r["cluster"]][r["source"]] += 1
        by_source[r["source"]][r["cluster"]] += 1
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / len(rows)
    inverse = sum(c.most_common(1)[0][1] for c in by_source.values()) / len(rows)
    return purity, inverse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--embedders", nargs="+", default=["tfidf-svd", "minilm"])
    ap.add_argument("--max-doc-chars", type=int, default=2000, help="characters embedded per document")
    a = ap.parse_args()
    docs = corpora(a.data)
    with tempfile.TemporaryDirectory(prefix="cluster-embedders-") as tmp:
        work = Path(tmp)
        write_shards(docs, work / "in", shard_docs=100)
        print(f"{len(docs)} documents: " + ", ".join(f"{k} {v}" for k, v in
                                                       collections.Counter(d.source for d in docs).items()))
        print(f"{'embedder':12}{'purity':>8}{'inverse':>9}{'docs/s':>9}{'wall s':>8}  phases (s)")
        for name in a.embedders:
            out = work / name
            t0 = time.perf_counter()
            cluster_documents(work / "in", out, ClusterConfig(k=4, embedder=name, max_doc_chars=a.max_doc_chars),
                              seed=1234)
            wall = time.perf_counter() - t0
            rows = [json.loads(l) for l in (out / "assignments.jsonl").read_text().splitlines()]
            p, inv = scores(rows)
            st = read_json(out / "stats.json")
            print(f"{name:12}{p:8.3f}{inv:9.3f}{len(docs) / wall:9.1f}{wall:8.1f}  {st['seconds']}")


if __name__ == "__main__":
    main()
