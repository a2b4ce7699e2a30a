"""The teacher's requests sent from the actors of a Ray cluster (``execution.executor: ray``).

``RayBackend`` is a ``Backend`` like the others, so ``generate`` still answers from the request
cache first, writes every answer to it as it comes back, counts usage and shows progress: only the
sending moves. The pending requests become a Ray Dataset; ``map_batches`` hands them, a batch at a
time, to a pool of actors (``execution.teacher_actors``), each holding the teacher's own backend (an HTTP
client to every endpoint, or the local model). An actor sends its batch with the client's bounded
async concurrency and returns the answers; the driver streams them back (``iter_rows``) and
``generate`` caches each one. This is the shape of Ray Data's LLM batch inference (a stateful
stage whose actors keep an engine or an HTTP session, fed by a streaming dataset), without its
vLLM dependency.

Which actor answers which request never changes an answer's place in the outputs: ``generate``
orders the results by the requests, whoever sent them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import asdict
from typing import Any, Callable

import numpy as np

from hare.core.execution import ray_map, ray_session
from hare.synth.client import Backend, Request, Result
from hare.synth.teacher import TeacherError

log = logging.getLogger("hare.synth.ray_backend")

# Rows per actor call, in multiples of the requests an actor keeps in flight: large enough that the
# wait for a batch's slowest answer is a small part of it, small enough that answers reach the cache
# (and a killed run keeps them) a batch at a time.
BATCH_ROUNDS = 4
# An actor that sends HTTP requests mostly waits: a fraction of a CPU leaves the cores to the rest.
HTTP_ACTOR_CPUS = 0.25


def request_to_json(r: Request) -> str:
    return json.dumps(asdict(r), ensure_ascii=False)


def request_from_json(text: str) -> Request:
    d = json.loads(text)
    if d["messages"] is not None:
        d["messages"] = tuple((role, content) for role, content in d["messages"])
    d["stop"] = tuple(d["stop"])
    return Request(**d)


def result_from_json(text: str) -> Result:
    return Result(**json.loads(text))


class _RayGenerator:
    """The Ray Data callable class: each actor makes the teacher's backend once and answers batches."""

    def __init__(self, teacher_json: str, seed: int, concurrency: int):
        from hare.synth.config import TeacherConfig
        from hare.synth.teacher import make_backend

        cfg = TeacherConfig.model_validate_json(teacher_json)
        cfg.concurrency = concurrency  # this actor's share of the requests in flight per endpoint
        if cfg.device.startswith("cuda"):
            cfg.device = "cuda"  # the GPU Ray gave this actor, the only one it sees
        self.backend = make_backend(cfg, seed)

    def __call__(self, batch: dict) -> dict:
        requests = [request_from_json(str(s)) for s in batch["request"]]
        answers: dict[str, Result] = {}
        self.backend.run(requests, lambda req, res: answers.__setitem__(req.key(), res))
        return {"result": np.array([json.dumps(answers[r.key()].__dict__, ensure_ascii=False) for r in requests],
                                   dtype=object)}


class RayBackend(Backend):
    """The teacher's backend run by ``actors`` Ray actors; Ray Data feeds them the requests.

    With endpoints, every actor holds a client to all of them, and the teacher's ``concurrency``
    (requests in flight per endpoint) is shared among the actors, so an endpoint carries the same
    load whichever executor sends. With a local model, every actor loads it (one GPU each when the
    teacher's device is CUDA). Without ``address`` a local Ray instance is started on first use and
    stopped by ``close`` (at the end of the step); hare must be installed on every node of a cluster."""

    name = "ray"

    def __init__(self, teacher, seed: int = 0, actors: int = 0, address: str | None = None):
        if not (teacher.endpoints or teacher.local or teacher.packaged):
            # Said here, before any actor starts, as the local executor says it.
            raise TeacherError("synth.teacher: set endpoints (and model), local (a model folder) or packaged: smollm2")
        self.teacher = teacher
        self.seed = seed
        self.http = bool(teacher.endpoints)
        self.actors = actors or (len(teacher.endpoints) if self.http else 1)
        self.address = address
        # Each actor's share of the per-endpoint concurrency (at least one request in flight).
        self.per_actor = max(1, math.ceil(teacher.concurrency / self.actors)) if self.http else 1
        self._session: contextlib.ExitStack | None = None  # the Ray session, opened on first use, closed by close

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "actors": self.actors, "address": self.address,
                "teacher": "http" if self.http else "local", "endpoints": list(self.teacher.endpoints),
                "concurrency_per_actor": self.per_actor}

    def batch_size(self) -> int:
        if self.http:
            return self.per_actor * len(self.teacher.endpoints) * BATCH_ROUNDS
        return self.teacher.batch_size * BATCH_ROUNDS

    def remote_args(self) -> dict[str, Any]:
        """What each actor asks of Ray: a little CPU to send HTTP, a GPU or cores for a local model,
        and the API key's variable from this process's environment (the nodes need not have it)."""
        if self.http:
            out: dict[str, Any] = {"num_cpus": HTTP_ACTOR_CPUS}
        elif self.teacher.device.startswith("cuda"):
            out = {"num_cpus": 1, "num_gpus": 1}
        else:
            out = {"num_cpus": max(1, self.teacher.threads)}
        name = self.teacher.api_key_env
        if name and os.environ.get(name):
            out["runtime_env"] = {"env_vars": {name: os.environ[name]}}
        return out

    def run(self, requests: list[Request], done: Callable[[Request, Result], None]) -> None:
        if not requests:
            return
        if self._session is None:
            self._session = contextlib.ExitStack()
            self._session.enter_context(ray_session(self.address, "synth: the ray executor"))
        by_key = {r.key(): r for r in requests}
        size = self.batch_size()
        blocks = max(1, math.ceil(len(requests) / size))
        # No more actors than batches: a short re-ask round does not load a local model eight times.
        rows = ray_map([{"request": request_to_json(r)} for r in requests], _RayGenerator,
                       (self.teacher.model_dump_json(), self.seed, self.per_actor), batch_size=size,
                       concurrency=min(self.actors, blocks), blocks=blocks, **self.remote_args())
        for row in rows:  # streamed: each answer reaches the cache as its batch comes back
            res = result_from_json(str(row["result"]))
            done(by_key[res.key], res)

    def close(self) -> None:
        """Stop the local Ray instance this backend started (a cluster it joined keeps running)."""
        if self._session is not None:
            self._session.close()
            self._session = None
