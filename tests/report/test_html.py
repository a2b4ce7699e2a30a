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


def test_the_audit_of_a_run_is_a_section_of_its_report(tmp_path):
    from hare.core.io import write_json
    from hare.evals.audit import AuditResult, AuditRow
    from hare.pipeline import build_report

    result = AuditResult(model="m", rewriter="deterministic", n=5, k=5, max_items=3000, clean_subset=True,
                         rows=[AuditRow(benchmark="gsm8k", split="test", items=80, D=23.5, D_rewritten=6.25,
                                        delta=17.25, items_seen_in_training=40, D_clean=1.5)])
    write_json(tmp_path / "audit" / "audit.json", result.model_dump(mode="json"))
    html = build_report(tmp_path, "run")
    assert "<h2>Leakage audit</h2>" in html and "<td>gsm8k</td><td>test</td><td class='n'>80</td>" in html
    assert "<td class='n'>17.25</td>" in html and "Clean subset" in html and "<td class='n'>–</td>" in html
