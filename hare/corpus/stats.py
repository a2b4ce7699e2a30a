"""The results of the corpus, cluster and mix steps (their ``stats.json``: ``CorpusStats``,
``ClusterStats``, ``MixStats``) and the topics of ``topics.json`` (``Topic``). They live apart from
the work (``hare.corpus.build``, ``hare.corpus.cluster``, ``hare.corpus.mix``, which import them from
here), so that the step classes, which name them, are listed (``hare --help``) without importing the
work and numpy."""

from __future__ import annotations

from pydantic import BaseModel

from hare.core.step import Stats, numbers


class QualityHistogram(BaseModel):
    before: list[int]
    after: list[int]
    mean_before: float | None = None
    mean_after: float | None = None


class SourceStats(BaseModel):
    docs_in: int
    chars_in: int
    removed: dict[str, int]
    chars_removed: int
    train: int
    heldout: int
    chars_out: int
    quarantined: int
    quality: QualityHistogram | None = None


class CorpusSummary(BaseModel):
    read: int
    train: int
    heldout: int
    removed: int
    quarantined: int
    removed_by_reason: dict[str, int]
    formatter_changes: dict[str, int]
    chars_in: int
    chars_out: int
    shards: int


class MinHashStats(BaseModel):
    documents: int
    candidate_pairs: int
    rejected_pairs: int
    linked_pairs: int
    duplicates: int
    clusters: int


class HeldoutAgreement(BaseModel):
    """The annotator classifier's rounded predictions against the teacher's grades it was not fitted on."""

    n: int
    accuracy: float
    mae: float
    pearson: float | None = None
    spearman: float | None = None
    f1: float
    threshold: float


class AnnotatorFit(BaseModel):
    features: str
    train: int
    alpha: float
    heldout: HeldoutAgreement
    baseline_accuracy: float  # of always answering the most common training grade
    baseline_grade: int


class QualityInfo(BaseModel):
    """The quality scorer: in reference mode, its training sides, held-out accuracy and weightiest
    terms; in annotator mode, the teacher's grades (counts of 0..5, in all and per source) and the
    classifier's agreement with them."""

    mode: str = "reference"
    reference_docs: int | None = None
    raw_docs: int | None = None
    heldout_accuracy: float | None = None
    terms: dict[str, list[str]] | None = None
    teacher: str | None = None
    annotations: int | None = None
    graded: int | None = None
    grades: list[int] | None = None
    grades_by_source: dict[str, list[int]] | None = None
    requests_sent: int | None = None
    requests_cached: int | None = None
    classifier: AnnotatorFit | None = None
    min_score: float
    max_score: float


class CorpusStats(Stats):
    summary: CorpusSummary
    sources: dict[str, SourceStats]
    minhash: MinHashStats | None = None
    quality: QualityInfo | None = None

    def counts(self) -> dict[str, int | float]:
        return numbers(self.summary)


class TopicExample(BaseModel):
    id: str
    source: str
    distance: float
    snippet: str


class Topic(BaseModel):
    """One cluster of ``topics.json``."""

    cluster: int
    name: str
    size: int
    chars: int
    top_terms: list[str]
    sources: dict[str, int]
    examples: list[TopicExample]


class ClusterStats(Stats):
    enabled: bool
    docs: int | None = None
    sample_docs: int | None = None
    k: int | None = None
    k_rule: str | None = None
    embedder: str | None = None
    model_path: str | None = None
    dims: int | None = None
    explained_variance: float | None = None
    vocabulary: int | None = None
    mean_distance: float | None = None
    empty_clusters: int | None = None
    size_min: int | None = None
    size_median: float | None = None
    size_max: int | None = None
    seconds: dict[str, float] | None = None
    docs_per_s: float | None = None

    def counts(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {"docs": self.docs or 0, "clusters": self.k or 0}
        if self.docs:
            out["sample_docs"] = self.sample_docs or 0
        return out


class SourceMix(BaseModel):
    weight: float
    docs_available: int
    chars_available: int
    docs: int
    chars: int
    epochs: float
    share: float
    part: str


class PartMix(BaseModel):
    docs: int
    chars: int


class TopicMix(BaseModel):
    """One topic before (every decontaminated document) and after sampling."""

    name: str = ""
    docs_before: int
    chars_before: int
    docs_after: int
    chars_after: int
    share_after: float


class MixStats(Stats):
    sources: dict[str, SourceMix]
    parts: dict[str, PartMix]
    docs: int
    chars: int
    cluster_temperature: float | None = None
    clusters: dict[str, TopicMix] | None = None

    def counts(self) -> dict[str, int | float]:
        return {"docs": self.docs, "chars": self.chars}
