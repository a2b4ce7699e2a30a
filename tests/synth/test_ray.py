"""The d2 step with ``execution.executor: ray``: Ray Data actors send the requests to a real server on
127.0.0.1, the outputs are the local executor's, and a re-run sends only what the cache lacks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hare.core.io import read_json
from hare.pipeline import Pipeline
from hare.recipe import load_recipe
from tests.synth.test_steps import recipe


def _outputs(step: Path) -> dict[str, bytes]:
    """The files later steps read (shards of generations, the rejected ones), byte for byte."""
    files = sorted(step.glob("generated/*")) + [step / "rejected.jsonl"]
    return {str(p.relative_to(step)): p.read_bytes() for p in files}


def _stats(step: Path) -> dict:
    """The step's stats without the timings (they differ from run to run)."""
    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in ("seconds", "completion_tokens_per_s")}
        return d
    return strip(read_json(step / "stats.json"))


@pytest.mark.slow
def test_ray_executor_gives_the_local_outputs_and_resumes_from_the_cache(tiny_server, tmp_path, shared_data, caplog):
    pytest.importorskip("ray")
    caplog.set_level(logging.INFO, logger="hare.synth.client")
    path = recipe(tmp_path, {"endpoints": [tiny_server.url], "model": tiny_server.model, "concurrency": 2}, "ray",
                  shared_data)
    rec = load_recipe(path)
    rec.synth.d2.docs_per_topic = 6  # 12 requests: several batches over two actors
    step = rec.run_dir / "d2"
    before = tiny_server.received()
    Pipeline(rec).run(["d2"])
    sent = tiny_server.received() - before
    local, local_stats = _outputs(step), _stats(step)
    assert sent == local_stats["requests"] == 12 and local_stats["usage"]["sent"] == 12

    # One local Ray for the two runs that send through it (a start costs seconds on 2 cores); the
    # backend joins it, as it joins a cluster, and leaves it running.
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        _ray_runs(rec, step, local, local_stats, tiny_server, tmp_path, caplog)
        assert ray.is_initialized()
    finally:
        ray.shutdown()


def _ray_runs(rec, step, local, local_stats, tiny_server, tmp_path, caplog):
    on_ray = rec.model_copy(deep=True)
    on_ray.execution.executor, on_ray.execution.teacher_actors = "ray", 2
    on_ray.synth.cache_dir = str(tmp_path / "ray-cache")  # empty: every request goes through the actors
    cache = tmp_path / "ray-cache" / "d2.jsonl"

    before = tiny_server.received()
    Pipeline(on_ray).run(["d2"], force=["d2"])
    assert tiny_server.received() - before == 12
    assert _outputs(step) == local and _stats(step) == local_stats
    assert len(cache.read_text().splitlines()) == 12
    log = caplog.text
    assert '"backend": "ray", "actors": 2' in log and '"concurrency_per_actor": 1' in log
    manifest = read_json(step / "manifest.json")
    assert manifest["config"]["execution"] == {}  # how requests are sent is not fingerprinted

    # A run cut short: five answers kept. The next run sends the seven others, and nothing more.
    cache.write_text("".join(cache.read_text().splitlines(keepends=True)[:5]))
    before = tiny_server.received()
    Pipeline(on_ray).run(["d2"], force=["d2"])
    assert tiny_server.received() - before == 7
    assert _outputs(step) == local
    s = read_json(step / "stats.json")["usage"]
    assert (s["sent"], s["cached"], s["ok"]) == (7, 5, 12)

    before = tiny_server.received()
    Pipeline(on_ray).run(["d2"], force=["d2"])
    assert tiny_server.received() - before == 0 and read_json(step / "stats.json")["usage"]["cached"] == 12
    assert _outputs(step) == local


def test_requests_and_results_cross_to_the_actors_unchanged():
    from hare.synth.client import Request, Result
    from hare.synth.ray_backend import request_from_json, request_to_json, result_from_json

    for r in (Request.chat("m", [("system", "Be brief."), ("user", "Hi ü")], max_tokens=7, seed=3, stop=("\n",),
                           tag="d2"),
              Request(model="m", prompt="Once upon a time", temperature=0.5, top_p=0.9)):
        back = request_from_json(request_to_json(r))
        assert back == r and back.key() == r.key() and back.tag == r.tag
    import json

    res = Result("k", ok=False, attempts=3, seconds=1.5, error="http_400: bad")
    assert result_from_json(json.dumps(res.__dict__)) == res


def test_ray_backend_shares_the_endpoint_concurrency_and_names_a_missing_teacher(monkeypatch):
    from hare.synth.config import TeacherConfig
    from hare.synth.ray_backend import RayBackend
    from hare.synth.teacher import TeacherError

    t = TeacherConfig(endpoints=["http://a/v1", "http://b/v1"], model="m", concurrency=10)
    b = RayBackend(t, actors=4)
    assert (b.actors, b.per_actor, b.batch_size()) == (4, 3, 3 * 2 * 4)
    assert RayBackend(t).actors == 2  # one per endpoint
    assert RayBackend(TeacherConfig(local="/models/x")).actors == 1
    assert RayBackend(t).remote_args() == {"num_cpus": 0.25}
    assert RayBackend(TeacherConfig(local="/m", device="cuda:1")).remote_args() == {"num_cpus": 1, "num_gpus": 1}
    keyed = TeacherConfig(endpoints=["http://a/v1"], model="m", api_key_env="HARE_TEST_KEY")
    monkeypatch.setenv("HARE_TEST_KEY", "secret")
    assert RayBackend(keyed).remote_args()["runtime_env"] == {"env_vars": {"HARE_TEST_KEY": "secret"}}
    with pytest.raises(TeacherError, match="set endpoints"):
        RayBackend(TeacherConfig())
