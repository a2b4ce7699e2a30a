"""Teacher-generation throughput: hare's client against a plain sequential ``openai`` loop.

Starts ``transformers serve`` on 127.0.0.1 with a real model folder (default: the packaged
SmolLM2-135M-Instruct), then sends the same ``--requests`` chat requests (D2-like prompts, greedy,
``--tokens`` new tokens each):

- the baseline: one request after another with the ``openai`` client, as a script would;
- hare's ``generate`` with ``HttpBackend`` at concurrency 1, 4 and 16 (a fresh cache each time);
- hare's ``generate`` again over a full cache: requests/s when every answer is cached.

It prints completion tokens/s for each and the ratio to the baseline. ``--continuous-batching``
passes the flag to the server (its paged-attention batching, the setting that lets concurrency pay
off on one server; vLLM and SGLang batch this way by default).

    python benchmarks/synth_throughput.py --requests 32 --tokens 64

``--constrained FILE`` measures schema-constrained generation instead (no server): the local
teacher answers D3's qa, mc and cloze prompts on the first ``--passages`` passages of FILE (JSONL
with a ``text`` or ``context`` field) once under each task's JSON Schema and once without it, with
D3's sampling (temperature 0.7, seeded), and prints per task how many answers are schema-valid on
the first attempt and how many then pass the meaning checks, and the completion tokens/s of both
(``--mc-distractors passage``: hare picks the wrong answers of multiple-choice items).

    python benchmarks/synth_throughput.py --constrained ../shared/data/dolly/dolly-15k-head.jsonl

``--local-engine FILE`` measures the local teacher's engines (no server) on the same greedy
requests: ``--requests`` D2 and D3 prompts built from the real templates on FILE's passages (varied
prompt lengths; answers of up to ``--tokens`` tokens), answered by the ``generate`` engine (batches
of ``model.generate``, the default before the in-flight engine) in batches of 8 and 16, then by the
in-flight engine with ``--rows`` rows in flight, without and with prompt-lookup speculation. It
prints completion tokens/s, the ratio to each ``generate`` run, how many texts are identical to the
batches of 8, and the in-flight engine's shared-prefix and proposal counts. ``--dtype bfloat16``
adds both engines with the model in bfloat16 (``teacher.dtype``), and how many of their texts are
the float32 ones. ``--repeats N`` runs the greedy comparison N rounds, every engine in each, and
prints each engine's median tokens/s and its ratio to the same round's batches of 8 (median and
range): the rounds interleave, so a machine that slows down mid-run slows both sides of a ratio.
``--family-caps`` caps each answer at its family's default (``synth.d2.max_tokens`` 2,048 for the D2
prompts, ``synth.d3.max_tokens`` 384 for D3's) instead of ``--tokens``. With ``--constrained`` too,
the schema-constrained run compares the ``generate`` engine (``--batch-size``) with the in-flight
one (``--rows``) on the same sampled requests.

    python benchmarks/synth_throughput.py --local-engine ../shared/data/dolly/dolly-15k-head.jsonl \\
        --requests 64 --tokens 160
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hare.synth.cache import RequestCache  # noqa: E402
from hare.synth.client import HttpBackend, Request, generate  # noqa: E402
from tests.synth.conftest import Server  # noqa: E402  (the same launcher the tests use)


def prompts(n: int) -> list[str]:
    subjects = ["photosynthesis", "the French revolution", "binary search", "plate tectonics", "contract law",
                "prime numbers", "the water cycle", "supply and demand"]
    return [f"Write a short textbook paragraph for high-school students about {subjects[i % len(subjects)]} "
            f"(part {i})." for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: the packaged SmolLM2-135M-Instruct)")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--continuous-batching", action="store_true")
    ap.add_argument("--constrained", metavar="FILE", help="measure schema-constrained D3 tasks on FILE's passages")
    ap.add_argument("--passages", type=int, default=8)
    ap.add_argument("--mc-distractors", choices=["teacher", "passage"], default="teacher",
                    help="who writes the wrong answers of multiple-choice items (synth.d3.mc_distractors)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--local-engine", metavar="FILE", help="compare the local engines on D2/D3 prompts from FILE")
    ap.add_argument("--rows", type=int, default=64, help="rows in flight of the in-flight engine")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the local engines (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="--local-engine: run the greedy comparison this many rounds (every engine in each) and "
                         "print each engine's median and range, and its ratio to the same round's generate 8")
    ap.add_argument("--family-caps", action="store_true",
                    help="--local-engine: cap each answer at its family's default (synth.d2.max_tokens for D2 "
                         "prompts, synth.d3.max_tokens for D3's) instead of --tokens")
    ap.add_argument("--dtype", nargs="*", default=[], choices=["bfloat16"],
                    help="--local-engine: also run both engines with the model in this precision")
    args = ap.parse_args()
    if args.model is None:
        from hare.core.packaged import smollm2_folder

        args.model = str(smollm2_folder())
    print(header())
    if args.local_engine:
        return local_engine(args)
    if args.constrained:
        return constrained(args)
    work = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    server = Server(Path(args.model), work / "server.log", extra=["--continuous-batching"]
                    if args.continuous_batching else [])
    try:
        texts = prompts(args.requests)
        from openai import OpenAI

        client = OpenAI(base_url=server.url, api_key="none", max_retries=0)
        client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4)  # warm-up: the model is loaded
        t0 = time.perf_counter()
        base_tokens = 0
        for t in texts:
            r = client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": t}],
                                               max_tokens=args.tokens, temperature=0.0)
            base_tokens += r.usage.completion_tokens
        base = base_tokens / (time.perf_counter() - t0)
        print(f"openai sequential loop: {base:.1f} completion tokens/s ({base_tokens} tokens)")
        reqs = [Request.chat(server.model, [("user", t)], max_tokens=args.tokens, temperature=0.0) for t in texts]
        for c in args.concurrency:
            with RequestCache(work / f"c{c}.jsonl") as cache:
                t0 = time.perf_counter()
                _, usage = generate(reqs, HttpBackend([server.url], concurrency=c), cache, desc=f"concurrency {c}")
                rate = usage.completion_tokens / (time.perf_counter() - t0)
            print(f"hare client, concurrency {c:2d}: {rate:.1f} completion tokens/s ({rate / base:.2f}x the loop)")
        with RequestCache(work / f"c{args.concurrency[0]}.jsonl") as cache:
            t0 = time.perf_counter()
            _, usage = generate(reqs * 50, HttpBackend([server.url]), cache, desc="cached")
            dt = time.perf_counter() - t0
        print(f"hare client, every answer cached: {usage.requests / dt:,.0f} requests/s ({usage.sent} sent)")
    finally:
        server.close()


def header() -> str:
    """Date, commit, machine and load: what a quoted figure needs beside it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit or '?'}, {platform.machine()} "
            f"{os.cpu_count()} cores, load average {load}")


def engine_requests(path: str, model: str, n: int, tokens: int, schema: bool = False, temperature: float = 0.0,
                    family_caps: bool = False) -> list[Request]:
    """``n`` requests: D2 prompts (each style and audience in turn) and D3 prompts (qa, mc, cloze) on
    the passages of ``path``, cut to lengths from 200 to 1,000 characters so prompt lengths vary. Each
    answer is capped at ``tokens``, or with ``family_caps`` at its family's default cap
    (``synth.d2.max_tokens``, ``synth.d3.max_tokens``)."""
    import json
    import random

    from hare.model.constrain import schema_text
    from hare.synth.config import D2Config, D3Config
    from hare.synth.d3 import plan_task
    from hare.synth.prompts import Templates

    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    texts = [str(r.get("text") or r.get("context") or "") for r in rows]
    texts = [t for t in texts if len(t) >= 400]
    tpl = Templates(None)
    d2_cap, d3_cap = (D2Config().max_tokens, D3Config().max_tokens) if family_caps else (tokens, tokens)
    categories, audiences = tpl.yaml("d2/categories.yaml"), tpl.yaml("d2/audiences.yaml")
    styles = [p.split("/")[-1][:-4] for p in tpl.variants("d2") if "." not in p.split("/")[-1][:-4]]
    out = []
    for i in range(n):
        passage = texts[i % len(texts)][:200 + 800 * ((i * 37) % 11) // 10]
        rng = random.Random(i)
        task = ("qa", "mc", "cloze")[i % 3]
        plan = plan_task(task, passage, tpl, rng) or plan_task("qa", passage, tpl, rng)  # D3's own prompts
        task_schema = plan[2]
        d3 = schema or i % 2
        if d3:
            prompt = plan[1]
        else:
            spec = categories["web"]
            prompt = tpl.render(f"d2/{styles[i % len(styles)]}.txt", subject=spec["subject"],
                                note=spec.get("note", ""), audience=list(audiences.values())[i % len(audiences)],
                                topic=passage.split(".")[0][:60], seed=passage)
        out.append(Request.chat(model, [("user", prompt)], max_tokens=d3_cap if d3 else d2_cap, temperature=temperature,
                                top_p=0.95 if temperature else 1.0, seed=i,
                                schema=schema_text(task_schema) if schema else None))
    return out


def label(run: tuple) -> str:
    """A run of ``local_engine`` (engine, rows or batch size, proposals, dtype) as printed."""
    engine, size, speculate, dtype = run
    return (f"{engine} {size} rows" + (f", {speculate} proposals" if engine == "inflight" else "")
            + (f", {dtype}" if dtype != "float32" else ""))


def measure(backend, run: tuple, reqs: list, rates: dict, texts: dict) -> None:
    """One run of ``local_engine`` on ``reqs``: its tokens/s into ``rates`` and texts into ``texts``
    (both keyed by run), printed with its ratios to the ``generate`` runs of ``rates`` so far, how
    many texts are the first run's, and the in-flight engine's counts."""
    from tqdm import tqdm

    engine, size, speculate, dtype = run
    backend.engine, backend.batch_size, backend.speculate = engine, size, speculate
    got: dict[str, Any] = {}
    bar = tqdm(total=len(reqs), desc=label(run), unit="req", leave=False)  # a run at 2,048 tokens takes minutes

    def done(r, res) -> None:
        got[r.key()] = res
        bar.set_postfix_str(f"{sum(x.completion_tokens for x in got.values())} tokens", refresh=False)
        bar.update()

    t0 = time.perf_counter()
    backend.run(reqs, done)
    dt = time.perf_counter() - t0
    bar.close()
    tokens = sum(x.completion_tokens for x in got.values())
    rates[run] = tokens / dt
    texts[run] = {k: x.text for k, x in got.items()}
    first = next(iter(rates))
    same = sum(texts[first][k] == t for k, t in texts[run].items())
    ratios = ", ".join(f"{rates[run] / rates[k]:.2f}x {k[0]} {k[1]}" + (f" {k[3]}" if k[3] != dtype else "")
                       for k in rates if k[0] == "generate" and k != run and (k[3] in (dtype, "float32")))
    print(f"  {label(run):29s}: {rates[run]:6.1f} completion tokens/s ({tokens} tokens in {dt:.1f} s)"
          f"{'; ' + ratios if ratios else ''}; texts identical to {first[0]} {first[1]}: {same}/{len(reqs)}")
    if dtype != "float32" and engine == "inflight":
        own = next(k for k in rates if k[3] == dtype and k[0] == "generate")
        print(f"  {'':29s}  texts identical to generate {own[1]} {dtype}: "
              f"{sum(texts[own][k] == t for k, t in texts[run].items())}/{len(reqs)}")
    if engine == "inflight":
        st = backend.stats
        print(f"  {'':29s}  prompt tokens reused from a shared prefix {st.reused_tokens}/{st.prompt_tokens} "
              f"({st.reused_tokens / max(1, st.prompt_tokens):.0%}); proposals kept {st.accepted}/{st.proposed} "
              f"({st.accepted / max(1, st.proposed):.0%}); {st.steps} decode steps")


def local_engine(args) -> None:
    from hare.synth.client import LocalBackend

    backends = {d: LocalBackend(args.model, batch_size=8, engine="generate", threads=args.threads, dtype=d)
                for d in ("float32", *args.dtype)}
    backend = backends["float32"]
    # (engine, rows or batch size, proposals per step, dtype): the generate engine, then the in-flight
    # one without speculation and with it, then both in each other precision.
    runs = [("generate", 8, 0, "float32"), ("generate", 16, 0, "float32"), ("inflight", args.rows, 0, "float32"),
            ("inflight", args.rows, 8, "float32")]
    runs += [r for d in args.dtype for r in (("generate", 8, 0, d), ("inflight", args.rows, 8, d))]
    cases = [("greedy", engine_requests(args.local_engine, args.model, args.requests, args.tokens,
                                        family_caps=args.family_caps))]
    if args.constrained:
        runs_c = [("generate", args.batch_size, 0, "float32"), ("inflight", args.rows, 8, "float32")]
        cases.append(("under the D3 schemas, sampled", engine_requests(
            args.local_engine, args.model, args.requests, args.tokens, schema=True, temperature=0.7,
            family_caps=args.family_caps)))
    for name, reqs in cases:
        lengths = sorted(len(backend.tok(backend.prompt_text(q), add_special_tokens=False).input_ids) for q in reqs)
        caps = "/".join(str(c) for c in sorted({q.max_tokens for q in reqs}))
        print(f"{name}: {len(reqs)} requests, prompts of {lengths[0]} to {lengths[-1]} tokens "
              f"(median {lengths[len(lengths) // 2]}), up to {caps} new tokens"
              f"{' (each family at its default cap)' if args.family_caps else ''}")
        texts: dict[tuple, dict[str, str]] = {}
        rates: dict[tuple, float] = {}
        history: dict[tuple, list[tuple[float, float]]] = {}  # per run: (tokens/s, ratio to generate 8) a round
        rounds = args.repeats if name == "greedy" else 1
        for rnd in range(rounds):
            if rounds > 1:
                print(f"  round {rnd + 1} of {rounds}")
            rates.clear()  # a round's ratios are to the runs of that round
            for run in (runs if name == "greedy" else runs_c):
                measure(backends[run[3]], run, reqs, rates, texts)
                first = next(iter(rates))
                history.setdefault(run, []).append((rates[run], rates[run] / rates[first]))
        if rounds > 1:
            print(f"  over {rounds} rounds (each run's ratio to generate 8 of its own round): median, min-max")
            for run, h in history.items():
                r, x = sorted(a for a, _ in h), sorted(b for _, b in h)
                print(f"  {label(run):29s}: {statistics.median(r):6.1f} tokens/s ({r[0]:.1f}-{r[-1]:.1f}); "
                      f"{statistics.median(x):.2f}x generate 8 ({x[0]:.2f}-{x[-1]:.2f}x)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def constrained(args) -> None:
    import json
    import random
    from collections import Counter

    from hare.synth.client import LocalBackend
    from hare.model.constrain import schema_text
    from hare.synth.d3 import judge, plan_task
    from hare.synth.prompts import Templates

    rows = [json.loads(line) for line in Path(args.constrained).read_text(encoding="utf-8").splitlines()]
    texts = [str(r.get("text") or r.get("context") or "")[:500] for r in rows]
    texts = [t for t in texts if len(t) >= 400][:args.passages]
    tpl = Templates(None)
    backend = LocalBackend(args.model, batch_size=args.batch_size)
    jobs = []
    for i, passage in enumerate(texts):
        for task in ("qa", "mc", "cloze"):
            planned = plan_task(task, passage, tpl, random.Random(f"{i}-{task}"), args.mc_distractors)
            if planned is not None:  # a cloze item needs a whole sentence
                rel, prompt, schema = planned
                jobs.append((task, passage, prompt, i, schema, rel.startswith("d3/mc_term/")))
    rates = {}
    for mode in ("schema", "free"):
        reqs = [Request.chat(args.model, [("user", prompt)], max_tokens=160, temperature=0.7, top_p=0.95, seed=i,
                             schema=schema_text(schema) if mode == "schema" else None)
                for task, _, prompt, i, schema, _ in jobs]
        with RequestCache(Path(tempfile.mkdtemp(prefix="synth-schema-")) / "c.jsonl") as cache:
            t0 = time.perf_counter()
            results, usage = generate(reqs, backend, cache, desc=mode)
            rates[mode] = usage.completion_tokens / (time.perf_counter() - t0)
        tally: dict[str, Counter] = {}
        for (task, passage, _, i, _, hare_distractors), res in zip(jobs, results):
            c = tally.setdefault(task, Counter())
            _, why, valid = judge(task, res.text, passage, random.Random(i) if hare_distractors else None)
            c["requests"] += 1
            c["length"] += res.finish_reason == "length"
            c["valid"] += valid
            c["sound"] += why is None
        print(f"{'under the schema' if mode == 'schema' else 'without it'}: {rates[mode]:.1f} completion tokens/s")
        for task, c in tally.items():
            print(f"  {task:5s} {c['requests']:3d} requests: schema-valid on the first attempt {c['valid']:3d} "
                  f"({c['valid'] / c['requests']:.0%}), then pass the meaning checks {c['sound']:3d} "
                  f"({c['sound'] / c['requests']:.0%}); cut at the token cap {c['length']}")
        valid = sum(c["valid"] for c in tally.values()) / sum(c["requests"] for c in tally.values())
        print(f"  all: {valid:.1%} schema-valid on the first attempt (goal: 95 % under the schema)")
    print(f"tokens/s under the schema: {rates['schema'] / rates['free']:.2f}x the same requests without it")


if __name__ == "__main__":
    main()
