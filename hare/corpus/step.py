"""The corpus step: read every source, clean, drop exact duplicates, hold out the evaluation slice.

Outputs (in the step folder):
  train/shard-*.jsonl.zst     documents kept for training (before decontamination)
  heldout/shard-*.jsonl.zst   the held-out evaluation documents
  removed/removed-*.jsonl.zst every removed document with its reason
  quarantine.jsonl            malformed input records: file, line, reason
  stats.json                  per source: documents and characters in, removed by reason, out
For every source: read = kept + held out + removed (by reason) + quarantined.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter

from hare.corpus.clean import Cleaner
from hare.corpus.document import ShardWriter
from hare.corpus.read import Quarantine, read_source
from hare.io import write_json, write_jsonl
from hare.progress import progress

log = logging.getLogger("hare.corpus")

_PUNCT_RE = re.compile(r"[^\w\s]")
_SPACE_RE = re.compile(r"\s+")


def normalize_for_dedup(text: str) -> str:
    """Lowercase, punctuation removed, digits folded to 0, whitespace collapsed (datatrove's simplification)."""
    text = _PUNCT_RE.sub("", text.lower())
    text = re.sub(r"\d", "0", text)
    return _SPACE_RE.sub(" ", text).strip()


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(normalize_for_dedup(text).encode(), digest_size=16).digest()


def heldout_draw(doc_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the document id and the seed: the held-out split is stable."""
    h = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def run_corpus(ctx) -> dict:
    r = ctx.recipe
    cfg = r.corpus
    q = Quarantine()
    cleaner = Cleaner(cfg.clean)
    seen: set[bytes] = set()
    stats: dict[str, dict] = {}
    shard = cfg.shard_docs
    with ShardWriter(ctx.out / "train", shard) as train, ShardWriter(ctx.out / "heldout", shard) as held, \
            ShardWriter(ctx.out / "removed", shard, prefix="removed") as removed:
        for src in r.sources:
            st = {"docs_in": 0, "chars_in": 0, "removed": Counter(), "chars_removed": 0, "train": 0,
                  "heldout": 0, "chars_out": 0}
            for doc in progress(read_source(src, q, cfg.max_line_bytes), desc=f"clean {src.name}", unit="doc"):
                st["docs_in"] += 1
                st["chars_in"] += len(doc.text)
                keep, reason = cleaner(doc)
                if keep and cfg.dedup == "exact":
                    h = text_hash(doc.text)
                    if h in seen:
                        keep, reason = False, "exact_duplicate"
                    seen.add(h)
                if not keep:
                    st["removed"][reason] += 1
                    st["chars_removed"] += len(doc.text)
                    removed.write({**doc.to_record(), "reason": reason})
                    continue
                st["chars_out"] += len(doc.text)
                if heldout_draw(doc.id, r.seed) < cfg.heldout_fraction:
                    st["heldout"] += 1
                    held.write(doc)
                else:
                    st["train"] += 1
                    train.write(doc)
            st["quarantined"] = q.counts.get(src.name, 0)
            st["removed"] = dict(st["removed"].most_common())
            stats[src.name] = st
            log.info("source %s: %d read, %d train, %d held out, %d removed, %d quarantined", src.name,
                     st["docs_in"], st["train"], st["heldout"], sum(st["removed"].values()), st["quarantined"])
    write_jsonl(ctx.out / "quarantine.jsonl", q.records)
    total_removed: Counter[str] = Counter()
    for st in stats.values():
        total_removed.update(st["removed"])
    summary = {
        "read": sum(s["docs_in"] for s in stats.values()) + len(q.records),
        "train": sum(s["train"] for s in stats.values()),
        "heldout": sum(s["heldout"] for s in stats.values()),
        "removed": sum(total_removed.values()),
        "quarantined": len(q.records),
        "removed_by_reason": dict(total_removed.most_common()),
        "formatter_changes": cleaner.changes,
        "chars_in": sum(s["chars_in"] for s in stats.values()),
        "chars_out": sum(s["chars_out"] for s in stats.values()),
    }
    write_json(ctx.out / "stats.json", {"summary": summary, "sources": stats})
    if summary["train"] == 0:
        raise RuntimeError("the corpus step kept no training documents; see stats.json for the reasons")
    return summary
