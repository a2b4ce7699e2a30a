"""``hare eval MODEL``: every task on a plain Hugging Face folder, and a hare-trained model with files missing."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from hare.cli import main
from hare.evals.leaderboard import PAPER_ROWS
from hare.evals.tasks import TASKS
from hare.core.io import read_json
from tests.conftest import nltk_texts
from tests.evals.conftest import link_shared


def test_every_task_runs_on_a_plain_hugging_face_folder(hf_model, bench, tmp_path, capsys):
    rc = main(["eval", str(hf_model), "--suite", "all", "--benchmarks-dir", str(bench), "--limit", "2",
               "--batch-size", "4", "--max-length", "384", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    folder = tmp_path / "eval" / "tiny-mistral"
    results = read_json(folder / "lm_eval_results.json")
    res = results["results"]
    for task in TASKS:
        metrics = {k: v for k, v in res[task].items() if "," in k and "_stderr" not in k}
        assert metrics, task
        for key, value in metrics.items():
            assert 0.0 <= value <= 1.0 and not math.isnan(value), (task, key, value)
    # MMLU: 57 subjects, each limited to 2 questions, aggregated as one group
    subjects = [t for t in res if t.startswith("mmlu_")]
    assert len(subjects) == 57 and all(results["n-samples"][t]["effective"] == 2 for t in subjects)
    assert res["mmlu"]["acc,none"] == pytest.approx(sum(res[t]["acc,none"] for t in subjects) / 57)
    assert results["n-shot"]["arc_challenge"] == 25 and results["n-shot"]["hellaswag"] == 10
    assert results["n-shot"]["mmlu_anatomy"] == 5 and results["n-shot"]["gsm8k"] == 5
    assert results["n-shot"]["winogrande"] == 5 and results["n-shot"]["truthfulqa_mc2"] == 0
    # GSM8K generated text and extracted answers with lm-eval's two filters
    assert {"exact_match,strict-match", "exact_match,flexible-extract"} <= set(res["gsm8k"])

    table = (folder / "leaderboard.md").read_text()
    assert table.splitlines()[0] == "| model | size | avg | MMLU | ARC | TQA | Wino | HSwag | GSM8K |"
    mine = table.splitlines()[2]
    assert mine.startswith("| **tiny-mistral** (this evaluation) | ") and "*" not in mine.split("|")[3]
    cells = [float(c) for c in mine.strip().strip("|").split("|")[2:]]  # avg, then the six columns
    assert cells[1:] == pytest.approx([100 * res[t][m] for t, m in (
        ("mmlu", "acc,none"), ("arc_challenge", "acc_norm,none"), ("truthfulqa_mc2", "acc,none"),
        ("winogrande", "acc,none"), ("hellaswag", "acc_norm,none"), ("gsm8k", "exact_match,strict-match"))],
        abs=0.006)
    assert cells[0] == pytest.approx(sum(cells[1:]) / 6, abs=0.01)
    assert "| HARE-1.1B (published) | 1.1B | 40.17 | 35.74 | 38.4 | 42.08 | 59.27 | 57.46 | 8.04 |" in table
    assert table.count("(published)") == len(PAPER_ROWS) + 1  # every row, and the footnote saying what it means
    assert "mc_task.json" in table and "--limit 2" in table and "on a roof. he" in table
    assert "| **tiny-mistral** (this evaluation)" in out  # the table is printed too

    summary = read_json(folder / "summary.json")
    assert summary["params"] > 0 and summary["max_length"] == 384 and not summary["skipped_tasks"]
    # the task folder is self-contained: YAMLs, their hooks and the rows they read
    cfg = yaml.safe_load((folder / "tasks" / "arc_challenge.yaml").read_text())
    assert cfg["dataset_path"] == "json" and all(str(folder) in f for f in cfg["dataset_kwargs"]["data_files"].values())
    assert (folder / "tasks" / "hooks.py").exists()


def test_hare_model_with_missing_files_and_heldout_perplexity(hare_model, shared_data, tmp_path, capsys, caplog):
    bench = link_shared(tmp_path / "bench", shared_data, ["arc", "truthfulqa", "gsm8k"])
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for _, t in nltk_texts("state_union", 3)))
    rc = main(["eval", str(hare_model), "--suite", "leaderboard", "--benchmarks-dir", str(bench), "--limit", "3",
               "--batch-size", "4", "--heldout", str(docs), "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    folder = tmp_path / "eval" / "demo"  # runs/<name>/train/model is named after its run
    # every missing file is named, with the tasks that can still run
    # hare's pipeline exports a context of max(seq_len, 128): too short for GSM8K's 256 generated tokens
    assert "skipped gsm8k: the model's context (128 tokens) is not longer than the 256 tokens" in out
    assert f"skipped mmlu: missing file {bench / 'mmlu'}" in out
    assert f"skipped hellaswag: missing file {bench / 'hellaswag'}" in out
    assert f"skipped winogrande: missing file {bench / 'winogrande'}" in out
    assert "tasks that can still run: arc_challenge, truthfulqa_mc2" in caplog.text
    res = read_json(folder / "lm_eval_results.json")["results"]
    assert set(res) == {"arc_challenge", "truthfulqa_mc2"}
    assert 0 <= res["arc_challenge"]["acc_norm,none"] <= 1 and 0 <= res["truthfulqa_mc2"]["acc,none"] <= 1
    row = (folder / "leaderboard.md").read_text().splitlines()[2].split("|")
    assert row[4].strip() == "–" and row[3].strip().endswith("*")  # MMLU did not run; the average says so
    p = read_json(folder / "perplexity.json")
    assert p["docs"] == 3 and p["tokens"] > 1000 and 0 < p["bits_per_byte"] < 10
    assert p["loss"] == pytest.approx(p["bits_per_byte"] * math.log(2) * p["bytes"] / p["tokens"])
    assert "held-out: 3 documents" in out


def test_perplexity_alone_and_bad_targets(hf_model, tmp_path, capsys):
    (tmp_path / "texts").mkdir()
    for name, text in nltk_texts("inaugural", 2):
        (tmp_path / "texts" / name.split("/")[-1]).write_text(text)
    assert main(["eval", str(hf_model), "--heldout", str(tmp_path / "texts"), "--out-dir", str(tmp_path)]) == 0
    p = read_json(tmp_path / "eval" / "tiny-mistral" / "perplexity.json")
    # an untrained model over a 512-token vocabulary is close to uniform: about ln(512) nats per token
    assert p["docs"] == 2 and p["loss"] == pytest.approx(math.log(512), rel=0.05)
    assert not (tmp_path / "eval" / "tiny-mistral" / "lm_eval_results.json").exists()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "texts")]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "recipe.yaml"), "--limit", "3"]) == 2
    assert "--limit apply to a model folder" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "recipe.yaml")]) == 2  # not a model: the recipe's eval step, which must exist
    assert f"recipe not found: {tmp_path / 'recipe.yaml'}" in capsys.readouterr().err


def test_the_terminal_shows_hares_lines_and_the_log_the_rest(hf_model, bench, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    cmd = [sys.executable, "-m", "hare", "eval", str(hf_model), "--tasks", "arc_easy", "--benchmarks-dir", str(bench),
           "--limit", "4", "--batch-size", "4", "--max-length", "384", "--out-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "arc_easy: acc" in out.stdout and "running lm-evaluation-harness on 1 tasks" in out.stderr
    log = (tmp_path / "eval" / "tiny-mistral" / "log.txt").read_text()
    assert "running lm-evaluation-harness on 1 tasks" in log
    for noise in ("Tokenizing inputs", "Loading weights", "Generating test split"):
        assert noise in log and noise not in out.stderr, noise
    # lm-eval's progress over its requests is shown, as hare's bar, with its count logged at the end
    assert "lm-eval: loglikelihood requests" in out.stderr and "Running loglikelihood requests" not in out.stderr
    assert "lm-eval: loglikelihood requests: 16 request in" in log
