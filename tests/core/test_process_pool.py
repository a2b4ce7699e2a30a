"""Local worker pools never wait forever: a worker that dies ends the work with an error naming it."""

from __future__ import annotations

import os
import time

import pytest

from hare.core.execution import WorkerDied, ordered_map, process_pool


def _square(x: int) -> int:
    return x * x


def _die_at(x: int) -> int:
    if x == 3:
        os._exit(7)  # as the out-of-memory killer would end it
    return x


def _fail_at_start() -> None:
    os._exit(1)  # as a worker that cannot import its code does


@pytest.mark.parametrize("start", ["forkserver", "spawn"])
def test_ordered_map_keeps_the_order_and_reads_items_lazily(start):
    seen = []

    def items():
        for i in range(20):
            seen.append(i)
            yield i

    with process_pool(2, "squares", start=start) as pool:
        out = ordered_map(pool, _square, items(), window=3)
        assert next(out) == 0 and len(seen) <= 4  # no more than the window ahead
        assert list(out) == [i * i for i in range(1, 20)]


def test_a_worker_killed_during_a_task_is_an_error_not_a_hang():
    t = time.monotonic()
    with pytest.raises(WorkerDied, match="the test's work: a worker process died"):
        with process_pool(2, "the test's work", start="spawn") as pool:
            list(ordered_map(pool, _die_at, range(8), window=4))
    assert time.monotonic() - t < 60


def test_workers_that_die_at_start_are_an_error_not_workers_started_forever():
    """multiprocessing.Pool replaces a worker that dies in its initializer, forever."""
    with pytest.raises(WorkerDied, match="failed at start"):
        with process_pool(2, "the test's work", initializer=_fail_at_start) as pool:
            list(ordered_map(pool, _square, range(4), window=2))
