"""The tokenize and teacher steps' results (their ``stats.json``: ``TokenizeStats``, ``TeacherStats``) and
a packed part's ``index.json`` (``PartIndex``), apart from the work (``hare.train.pack``,
``hare.train.teacher``, which import them from here) so that the steps are listed (``hare --help``)
without importing numpy."""

from __future__ import annotations

from pydantic import BaseModel

from hare.core.step import Stats


class PartIndex(BaseModel):
    """``<part>/index.json``: one packed data part."""

    dtype: str
    num_tokens: int
    num_docs: int
    seq_len: int
    num_sequences: int
    eos_id: int
    vocab_size: int
    unused_tail_tokens: int


class TokenizeStats(Stats):
    parts: dict[str, PartIndex]
    num_tokens: int
    num_docs: int
    vocab_size: int

    def counts(self) -> dict[str, int | float]:
        return {"num_tokens": self.num_tokens, "num_docs": self.num_docs, "vocab_size": self.vocab_size,
                "parts": len(self.parts)}


class TeacherPart(Stats):
    windows: int
    seq_len: int
    top_k: int
    bytes: int
    bytes_per_token: float
    seconds: float
    mean_loss: float  # the teacher's cross-entropy over the part, nats per token


class TeacherStats(Stats):
    enabled: bool = True
    teacher: str = ""
    parts: dict[str, TeacherPart] = {}
    tokens: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int | float]:
        return {"tokens": self.tokens, "bytes": self.bytes, "seconds": self.seconds}
