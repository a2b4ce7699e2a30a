"""The paper's results table: a model's Open LLM Leaderboard scores beside the published rows.

Columns and metrics are the Open LLM Leaderboard v1's, as the HARE paper reports them: MMLU
5-shot acc, ARC-Challenge 25-shot acc_norm, TruthfulQA 0-shot mc2, Winogrande 5-shot acc,
HellaSwag 10-shot acc_norm, GSM8K 5-shot exact match (strict "#### <number>" extraction); the
average is their plain mean; scores are percentages.
"""

from __future__ import annotations

import math

# column -> (lm-eval task, metric key in lm-eval's results)
COLUMNS: dict[str, tuple[str, str]] = {
    "MMLU": ("mmlu", "acc,none"),
    "ARC": ("arc_challenge", "acc_norm,none"),
    "TQA": ("truthfulqa_mc2", "acc,none"),
    "Wino": ("winogrande", "acc,none"),
    "HSwag": ("hellaswag", "acc_norm,none"),
    "GSM8K": ("gsm8k", "exact_match,strict-match"),
}

# Published in the HARE paper (arXiv 2406.11410, its comparison with small models); not measured
# by hare. Columns: size, avg, MMLU, ARC, TQA, Wino, HSwag, GSM8K.
PAPER_ROWS: list[tuple[str, str, float, float, float, float, float, float, float]] = [
    ("Phi-1.5", "1.3B", 47.69, 43.89, 52.9, 40.89, 72.22, 63.79, 12.43),
    ("Qwen1.5", "1.8B", 46.55, 46.71, 37.88, 39.43, 60.3, 61.42, 33.59),
    ("StableLM2", "1.6B", 45.25, 38.95, 43.34, 36.78, 64.56, 70.45, 17.44),
    ("HARE-1.1B", "1.1B", 40.17, 35.74, 38.4, 42.08, 59.27, 57.46, 8.04),
    ("H2O-Danube", "1.8B", 39.12, 25.94, 39.42, 33.86, 64.48, 69.58, 1.44),
    ("OpenELM", "1.1B", 38.47, 27.05, 36.69, 33.86, 63.22, 65.71, 1.21),
    ("Csg-wukong", "1B", 37.78, 25.33, 37.71, 42.79, 56.67, 58.93, 5.23),
    ("Cosmo", "1B", 36.59, 26.69, 38.57, 38.15, 55.49, 55.13, 5.53),
    ("TinyLlama-3T", "1.1B", 36.42, 26.04, 33.87, 37.32, 59.51, 60.31, 1.44),
    ("GPT2-XL", "1.6B", 34.31, 26.55, 30.29, 38.53, 58.01, 51.39, 1.06),
]


def scores(results: dict) -> dict[str, float | None]:
    """Percent score of each column from lm-eval's results (None where the task did not run)."""
    res = results.get("results", {})
    out: dict[str, float | None] = {}
    for col, (task, metric) in COLUMNS.items():
        v = res.get(task, {}).get(metric)
        out[col] = 100.0 * v if isinstance(v, (int, float)) and not math.isnan(v) else None
    return out


def format_size(n_params: int | None) -> str:
    if not n_params:
        return "?"
    if n_params >= 1e9:
        return f"{n_params / 1e9:.1f}B"
    return f"{n_params / 1e6:.1f}M" if n_params >= 1e6 else f"{n_params / 1e3:.0f}K"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(name: str, n_params: int | None, results: dict, notes: list[str] | None = None) -> str:
    """The paper's table with the model's row first and the published rows below, marked as such."""
    s = scores(results)
    got = [v for v in s.values() if v is not None]
    avg = f"{sum(got) / len(got):.2f}" if got else "–"
    if got and len(got) < len(s):
        avg += "*"
    lines = [_row(["model", "size", "avg", *COLUMNS]), _row(["---"] * (3 + len(COLUMNS))),
             _row([f"**{name}** (this evaluation)", format_size(n_params), avg,
                   *[f"{v:.2f}" if v is not None else "–" for v in s.values()]])]
    for model, size, *vals in PAPER_ROWS:
        lines.append(_row([f"{model} (published)", size, *[f"{v:g}" for v in vals]]))
    foot = ["", "Rows marked (published) are the numbers printed in the HARE paper (arXiv 2406.11410), "
                "not measured here."]
    if got and len(got) < len(s):
        foot.append(f"\\* mean of the {len(got)} of {len(s)} columns that ran (– did not run); not comparable "
                    "with the published averages.")
    foot += [f"- {n}" for n in notes or []]
    return "\n".join(lines + foot) + "\n"
