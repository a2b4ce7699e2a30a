"""The study's statistics over seeds: means with 95 % intervals, paired differences, tokens to a target.

With N seeds per arm (model initialization and data order), a number's interval is the Student-t
95 % interval of its mean over the seeds (mean ± t(0.975, N−1)·s/√N), as DataDecide (Magnusson et al.
2025) reports its seed spread. A comparison with the baseline is paired by seed (seed s of an arm
against seed s of the baseline: the same initialization and order of their own data), and a
difference is called only when its interval excludes zero; otherwise it is "not distinguishable".
One seed gives no interval, and nothing is called.
"""

from __future__ import annotations

import math
from statistics import mean, stdev

LEVEL = 0.95


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile (``scipy.stats.t.ppf``)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def interval(values: list[float]) -> dict:
    """``{"mean", "lo", "hi", "n", "values"}``; lo and hi are None for fewer than two values."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "values": []}
    m = mean(vals)
    if len(vals) < 2:
        return {"mean": m, "lo": None, "hi": None, "n": 1, "values": vals}
    half = t_quantile(len(vals) - 1) * stdev(vals) / math.sqrt(len(vals))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": len(vals), "values": vals}


def verdict(diff: dict, lower_is_better: bool) -> str:
    """What a paired difference (arm − baseline) says: "better", "worse" or "not distinguishable"."""
    if diff["lo"] is None:
        return "one seed: no interval"
    if diff["hi"] < 0 or diff["lo"] > 0:
        return "better" if (diff["hi"] < 0) == lower_is_better else "worse"
    return "not distinguishable"


def tokens_to_reach(curve: list[dict], key: str, target: float, lower_is_better: bool = True) -> float | None:
    """Tokens at which ``curve`` first reaches ``target`` on ``key`` (linear between evaluations)."""
    prev = None
    for p in curve:
        v = p.get(key)
        if v is None:
            continue
        if (v <= target) if lower_is_better else (v >= target):
            if prev is None or prev[key] == v:
                return float(p["tokens"])
            f = (prev[key] - target) / (prev[key] - v)
            return prev["tokens"] + f * (p["tokens"] - prev["tokens"])
        prev = p
    return None


def lower_is_better(metric: str) -> bool:
    return not metric.endswith(("/acc", "/correct_prob"))
