"""Log-likelihood throughput and memory: hare's evaluation backend against lm-eval's ``HFLM``.

The same model (default: the packaged SmolLM2-135M-Instruct), the same items (ARC-Challenge
25-shot, HellaSwag 10-shot, MMLU 5-shot; ``--limit`` items per task, per MMLU subject), lm-eval's
own tasks and metrics. Each side runs each task in a process of its own, so that its peak resident
memory (``ru_maxrss``) is its own. Throughput is requests over the seconds spent in the model's
``loglikelihood`` (task building and model loading are the same on both sides and left out).
Prints, per task, requests/s of each side and the ratio, peak memory, the metrics side by side and
the largest difference between the two sides' per-request log-likelihoods. ``--repeats N`` runs
the two sides in turn N times and keeps each side's fastest run, so that a burst of load on a
shared machine weighs on one run rather than on the ratio.

    python benchmarks/eval_throughput.py --benchmarks-dir DIR --limit 10 [--batch-size 4] [--max-batch-tokens 8192]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = {"arc_challenge": ["arc_challenge"], "hellaswag": ["hellaswag"], "mmlu": ["mmlu"]}


def worker(args: argparse.Namespace) -> None:
    """One side on one task: prints one JSON line."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hare.evals.backend import HareLM
    from hare.evals.tasks import prepare_tasks

    work = Path(args.work)
    ready, skipped = prepare_tasks(TASKS[args.task], args.benchmarks_dir, work)
    if not ready:
        raise SystemExit(f"{args.task}: {skipped}")
    if args.task == "mmlu" and args.mmlu_subjects:  # the first subjects, alphabetically
        ready = sorted(p.stem for p in (work / "tasks").glob("mmlu_*.yaml"))[:args.mmlu_subjects]
    common = {"pretrained": args.model, "dtype": "float32", "device": "cpu", "batch_size": args.batch_size}
    lm = HareLM(**common, max_batch_tokens=args.max_batch_tokens) if args.side == "hare" else HFLM(**common)
    timed = {"seconds": 0.0, "requests": 0}
    score = lm.loglikelihood

    def loglikelihood(requests, disable_tqdm=False):
        t0 = time.perf_counter()
        out = score(requests, disable_tqdm=disable_tqdm)
        timed["seconds"] += time.perf_counter() - t0
        timed["requests"] += len(requests)
        return out

    lm.loglikelihood = loglikelihood
    out = lm_eval.simple_evaluate(model=lm, tasks=ready, task_manager=TaskManager(include_path=str(work / "tasks"),
                                                                                 include_defaults=False),
                                  limit=args.limit, log_samples=True, bootstrap_iters=0)
    res = out["results"][args.task] if args.task in out["results"] else _mean(out["results"], ready)
    lls = {f"{t}/{s['doc_id']}": [r[0][0] for r in s["resps"]] for t, ss in out["samples"].items() for s in ss}
    print(json.dumps({"metrics": {k: v for k, v in res.items() if "," in k and "_stderr" not in k},
                      "requests": timed["requests"], "seconds": timed["seconds"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "lls": lls}))


def _mean(results: dict, tasks: list[str]) -> dict:
    """The subjects' metrics averaged (the leaderboard's MMLU), when only some subjects ran."""
    keys = [k for k in results[tasks[0]] if "," in k and "_stderr" not in k]
    return {k: sum(results[t][k] for t in tasks) / len(tasks) for k in keys}


def run_side(side: str, task: str, args: argparse.Namespace, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--task", task, "--model", args.model, "--work",
           str(work / side / task), "--limit", str(args.limit), "--batch-size", str(args.batch_size),
           "--max-batch-tokens", str(args.max_batch_tokens), "--mmlu-subjects", str(args.mmlu_subjects)]
    if args.benchmarks_dir:
        cmd += ["--benchmarks-dir", args.benchmarks_dir]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{side} {task} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the packaged SmolLM2-135M-Instruct)")
    ap.add_argument("--benchmarks-dir", default=None, help="benchmark files (default: the local Hugging Face cache)")
    ap.add_argument("--tasks", default="arc_challenge,hellaswag,mmlu")
    ap.add_argument("--limit", type=int, default=10, help="items per task (per MMLU subject)")
    ap.add_argument("--batch-size", type=int, default=4, help="HFLM's batch size (hare's sizes generation only)")
    ap.add_argument("--max-batch-tokens", type=int, default=8192, help="hare's token budget per forward pass")
    ap.add_argument("--mmlu-subjects", type=int, default=0, help="MMLU: only the first N subjects (0: all 57)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side, in turn; the fastest counts")
    ap.add_argument("--worker", choices=["hare", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model is None:
        from hare.core.packaged import smollm2_folder

        args.model = str(smollm2_folder())
    if args.worker:
        args.side = args.worker
        return worker(args)

    print(f"model {args.model}, --limit {args.limit}, HFLM batch size {args.batch_size}, "
          f"hare max_batch_tokens {args.max_batch_tokens}, fastest of {args.repeats} run(s) a side", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            runs = [run_side(s, task, args, Path(tmp) / str(r)) for r in range(args.repeats) for s in ("hf", "hare")]
            hf, hare = (min(runs[i::2], key=lambda r: r["seconds"]) for i in (0, 1))
            rate = {s: r["requests"] / r["seconds"] for s, r in (("hf", hf), ("hare", hare))}
            diff = max(abs(a - b) for k in hf["lls"] for a, b in zip(hf["lls"][k], hare["lls"][k]))
            print(f"\n{task}: {hf['requests']} requests" + (f" ({args.mmlu_subjects} subjects)" if task == "mmlu"
                                                             and args.mmlu_subjects else ""))
            print(f"  HFLM  {rate['hf']:7.2f} requests/s ({hf['seconds']:.1f} s)   peak RSS "
                  f"{hf['peak_rss_mb']:7.0f} MB")
            print(f"  hare  {rate['hare']:7.2f} requests/s ({hare['seconds']:.1f} s)   peak RSS "
                  f"{hare['peak_rss_mb']:7.0f} MB")
            print(f"  ratio {rate['hare'] / rate['hf']:.2f}x requests/s")
            for k in sorted(hf["metrics"]):
                same = "same" if hf["metrics"][k] == hare["metrics"][k] else "DIFFERENT"
                print(f"  {k:20s} HFLM {hf['metrics'][k]:.4f}  hare {hare['metrics'][k]:.4f}  {same}")
            print(f"  largest per-request log-likelihood difference {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
