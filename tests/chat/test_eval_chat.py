"""``hare eval --apply-chat-template``: lm-eval renders the prompts with the model's chat template."""

from __future__ import annotations

from hare.cli import main
from hare.core.io import read_json
from tests.evals.conftest import link_shared


def test_eval_applies_the_chat_template(tiny_chat, shared_data, tmp_path, capsys, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    rendered = []
    real = HFLM.apply_chat_template

    def spy(self, *a, **kw):  # lm-eval's own method runs; the test only keeps what it rendered
        out = real(self, *a, **kw)
        rendered.append(out)
        return out

    monkeypatch.setattr(HFLM, "apply_chat_template", spy)
    bench = link_shared(tmp_path / "bench", shared_data, ["arc"])
    rc = main(["eval", str(tiny_chat), "--tasks", "arc_easy", "--benchmarks-dir", str(bench), "--limit", "2",
               "--batch-size", "2", "--max-length", "384", "--apply-chat-template", "--out-dir", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    assert len(rendered) == 2  # one prompt per item
    for prompt in rendered:
        assert prompt.startswith("<round_start>system\nYou are a helpful assistant.<round_end>\n<round_start>user\n")
        assert prompt.endswith("<round_start>assistant\n")
    results = read_json(tmp_path / "eval" / tiny_chat.name / "lm_eval_results.json")
    assert 0 <= results["results"]["arc_easy"]["acc,none"] <= 1
