from hare.evals.leaderboard import PAPER_ROWS, markdown_table
from hare.report.html import markdown_to_html


def test_leaderboard_markdown_renders_as_a_table():
    results = {"results": {"arc_challenge": {"acc_norm,none": 0.3}, "hellaswag": {"acc_norm,none": 0.25}}}
    md = markdown_table("demo", 1_787_008, results, ["limited to 20 items per task"])
    out = markdown_to_html(md)
    assert out.count("<tr>") == 2 + len(PAPER_ROWS)  # header, this model, the published rows
    assert "demo (this evaluation)" in out and "1.8M" in out and f"{PAPER_ROWS[3][0]} (published)" in out
    assert "limited to 20 items per task" in out and "not measured here" in out
    assert "---" not in out
