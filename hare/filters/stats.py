"""The decontam step's results (its ``stats.json``: ``DecontamStats``), apart from the work
(``hare.filters.decontam``, which imports them from here) so that the step is listed (``hare --help``)
without importing numpy and the n-gram index."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from hare.core.step import Stats


class BenchmarkOverlap(BaseModel):
    items_indexed: int
    items_found: int = 0
    documents: dict[str, int] = {}  # training documents that matched its items, by action


class DecontamStats(Stats):
    docs_in: int
    docs_out: int
    docs_dropped: int
    docs_cut: int
    chars_in: int
    chars_out: int
    actions: dict[str, int]
    ngram: int
    policy: str
    parts: dict[str, dict[str, Any]]
    index_ngrams: int
    index_filter_fill: float = 0.0
    short_items_indexed: int = 0
    ignored_common_ngrams: int
    ignored_benchmark_ngrams: list[dict] = []  # the most frequent ones; every one is in matches.jsonl
    benchmarks: dict[str, BenchmarkOverlap]
    missing_benchmarks: dict[str, str]
