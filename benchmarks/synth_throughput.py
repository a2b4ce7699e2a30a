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
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

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
    args = ap.parse_args()
    if args.model is None:
        from hare.core.packaged import smollm2_folder

        args.model = str(smollm2_folder())
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


if __name__ == "__main__":
    main()
