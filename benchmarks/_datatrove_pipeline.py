"""datatrove's side of ``corpus_throughput.py``; runs in the datatrove venv, not hare's.

The standard four-stage MinHash recipe of datatrove's ``examples/minhash_deduplication.py``, with
the Gopher filters in front of stage 1 (as FineWeb's pipeline filters before it deduplicates):

  1. JsonlReader -> GopherRepetitionFilter -> GopherQualityFilter -> JsonlWriter(filtered/)
     -> MinhashDedupSignature                          (one task per input file)
  2. MinhashDedupBuckets                               (one task per band)
  3. MinhashDedupCluster                               (one task)
  4. JsonlReader(filtered/) -> MinhashDedupFilter -> JsonlWriter(output/)
                                                       (one task per filtered file)

Stage 4 reads the filtered files back because MinHash names documents by their index in the
stream its signature step saw. Every writer uses zstd at level 3, hare's codec and level (fsspec's
own zstd writer uses level 10). Writes ``result.json`` in ``--work``: seconds per stage and each
step's counters from the executors' ``stats.json``.

    python _datatrove_pipeline.py --input DIR --work DIR --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import fsspec.compression
import zstandard


def _zstd_level3(infile, mode="rb"):
    if "r" in mode:
        return zstandard.ZstdDecompressor().stream_reader(infile)
    return zstandard.ZstdCompressor(level=3).stream_writer(infile)


# At import time, so that worker processes (which import this file again) use it too.
fsspec.compression.register_compression("zstd", _zstd_level3, "zst", force=True)


def step_stats(logging_dir: Path) -> list[dict]:
    """Each step's name and counters (``total``, ``forwarded``, ``dropped_<reason>``, ...)."""
    out = []
    for step in json.loads((logging_dir / "stats.json").read_text()):
        counts = {k: (v["total"] if isinstance(v, dict) else v) for k, v in step["stats"].items()}
        out.append({"name": step["name"], "stats": counts})
    return out


def main() -> None:
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.typeshelper import Languages

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, required=True, help="folder of .jsonl.zst files")
    ap.add_argument("--work", type=Path, required=True, help="empty folder for every output")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()

    tasks = len(list(a.input.glob("*.jsonl.zst")))
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    w, logs = a.work, a.work / "logs"
    stages = {
        "filter+signatures": LocalPipelineExecutor(
            pipeline=[
                JsonlReader(str(a.input), glob_pattern="*.jsonl.zst"),
                GopherRepetitionFilter(),
                GopherQualityFilter(),
                JsonlWriter(str(w / "filtered"), compression="zstd"),
                MinhashDedupSignature(output_folder=str(w / "signatures"), config=cfg, language=Languages.english),
            ],
            tasks=tasks, workers=a.workers, logging_dir=str(logs / "1")),
        "buckets": LocalPipelineExecutor(
            pipeline=[MinhashDedupBuckets(input_folder=str(w / "signatures"), output_folder=str(w / "buckets"),
                                          config=cfg)],
            tasks=cfg.num_buckets, workers=a.workers, logging_dir=str(logs / "2")),
        "cluster": LocalPipelineExecutor(
            pipeline=[MinhashDedupCluster(input_folder=str(w / "buckets"), output_folder=str(w / "remove_ids"),
                                          config=cfg)],
            tasks=1, logging_dir=str(logs / "3")),
        "dedup+write": LocalPipelineExecutor(
            pipeline=[
                JsonlReader(str(w / "filtered"), glob_pattern="*.jsonl.zst"),
                MinhashDedupFilter(input_folder=str(w / "remove_ids")),
                JsonlWriter(str(w / "output"), compression="zstd"),
            ],
            tasks=tasks, workers=a.workers, logging_dir=str(logs / "4")),
    }
    seconds, steps = {}, {}
    for k, (name, executor) in enumerate(stages.items(), 1):
        t0 = time.perf_counter()
        executor.run()
        seconds[name] = time.perf_counter() - t0
        steps[name] = step_stats(logs / str(k))
        if k == 1 and len(list((w / "filtered").glob("*.jsonl.zst"))) != tasks:
            # a task that kept nothing writes no file, and stage 4 would pair files and ranks wrongly
            raise SystemExit("a task kept no documents; use fewer, larger input files")
    (w / "result.json").write_text(json.dumps({"seconds": seconds, "steps": steps}, indent=1))


if __name__ == "__main__":
    main()
