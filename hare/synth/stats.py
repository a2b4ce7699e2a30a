"""The curate step's results (its ``stats.json``: ``CurateStats``), apart from the curation itself
(``hare.synth.curate``, which imports them from here) so that the step is listed (``hare --help``)
without importing numpy and the filters."""

from __future__ import annotations

from pydantic import BaseModel

from hare.core.step import Stats

PARTS = ("d2", "d3")


class PartCuration(BaseModel):
    docs_in: int = 0
    docs_out: int = 0
    chars_out: int = 0
    removed: dict[str, int] = {}
    decontam_ngram: int = 0
    decontam_threshold: float = 0.0
    decontam_matched: int = 0
    decontam_sources: dict[str, int] = {}
    families: dict[str, dict[str, int]] = {}  # template (D2) or task (D3) -> accepted and rejected by reason


class CurateStats(Stats):
    enabled: bool
    parts: dict[str, PartCuration] = {}
    docs_in: int = 0
    docs_out: int = 0

    def counts(self) -> dict[str, int | float]:
        return {"docs_in": self.docs_in, "docs_out": self.docs_out}
