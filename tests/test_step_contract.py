"""The step contract: a step defined here, with its own recipe section, stats and report template, runs
with the standard corpus and report steps, is reused when unchanged and redone when its config changes;
a step reading a key it did not declare fails; execution-only keys never enter a fingerprint."""

from __future__ import annotations

import json

import pytest
from pydantic import Field

from hare.core.documents import read_shards
from hare.core.io import read_json
from hare.core.step import ConfigView, Stats, Step, StepContext, UndeclaredRead
from hare.corpus.steps import CORPUS
from hare.pipeline import Pipeline
from hare.core.config import Config
from hare.recipe import Recipe
from hare.report.steps import ReportStep
from tests.conftest import nltk_texts


class ExtraConfig(Config):
    """Settings of the extra step."""

    words: int = Field(3, ge=1, description="Words of each held-out document to keep.")


class ExtraRecipe(Recipe):
    extra: ExtraConfig = Field(default_factory=ExtraConfig, description="The extra step.")


class ExtraStats(Stats):
    docs: int
    words: int


class ExtraStep(Step):
    name = "extra"
    help = "the first words of every held-out document"
    after = ("corpus",)
    reads = ("extra",)
    stats = ExtraStats
    report_template = "<h2>Extra step</h2><p>{{ stats.docs }} openings of {{ stats.words }} words</p>"

    def run(self, ctx: StepContext) -> ExtraStats:
        n = ctx.config.extra.words
        docs = [" ".join(d.text.split()[:n]) for d in read_shards(ctx.deps["corpus"] / "heldout")]
        (ctx.out / "openings.json").write_text(json.dumps(docs))
        return ExtraStats(docs=len(docs), words=n)


class NosyStep(ExtraStep):
    name = "nosy"

    def run(self, ctx: StepContext) -> ExtraStats:
        return ExtraStats(docs=ctx.config.train.max_steps, words=0)  # train is not in its reads


@pytest.fixture
def recipe(tmp_path):
    with open(tmp_path / "reviews.jsonl", "w") as f:
        for name, text in nltk_texts("movie_reviews", 60):
            f.write(json.dumps({"id": name, "text": text}) + "\n")
    return ExtraRecipe(name="x", out_dir=str(tmp_path / "runs"), corpus={"heldout_fraction": 0.2},
                       sources=[{"name": "reviews", "kind": "jsonl", "path": str(tmp_path / "reviews.jsonl")}])


def test_a_new_step_runs_is_reused_is_redone_and_is_reported(recipe):
    steps = [CORPUS, ExtraStep(), ReportStep()]
    assert Pipeline(recipe, steps).run() == {"corpus": "ran", "extra": "ran", "report": "ran"}
    run = recipe.run_dir
    stats = read_json(run / "extra" / "stats.json")
    held = sum(1 for _ in read_shards(run / "corpus" / "heldout"))
    assert stats == {"docs": held, "words": 3} and held > 0
    manifest = read_json(run / "extra" / "manifest.json")
    assert manifest["config"] == {"extra": {"words": 3}} and manifest["counts"] == stats
    assert "<h2>Extra step</h2>" in (run / "report.html").read_text() and f"{held} openings of 3 words" in \
        (run / "report.html").read_text()

    assert Pipeline(recipe, steps).run() == {"corpus": "skipped", "extra": "skipped", "report": "skipped"}

    recipe.extra.words = 5
    assert Pipeline(recipe, steps).run() == {"corpus": "skipped", "extra": "ran", "report": "ran"}
    assert read_json(run / "extra" / "stats.json")["words"] == 5
    assert f"{held} openings of 5 words" in (run / "report.html").read_text()


def test_a_step_without_a_template_gets_a_table_of_its_stats(recipe):
    class Plain(ExtraStep):
        name = "plain"
        report_template = None

    Pipeline(recipe, [CORPUS, Plain(), ReportStep()]).run()
    html = (recipe.run_dir / "report.html").read_text()
    assert "<h2>plain</h2>" in html and "<td>words</td>" in html


def test_reading_an_undeclared_key_fails(recipe):
    with pytest.raises(UndeclaredRead, match="step nosy reads recipe key 'train' but does not declare it"):
        Pipeline(recipe, [CORPUS, NosyStep()]).run()
    view = ConfigView(recipe, (("corpus", "clean", "min_words"),), "s")
    assert view.corpus.clean.min_words == 50
    with pytest.raises(UndeclaredRead):
        view.corpus.dedup


def test_execution_only_keys_are_recorded_but_never_fingerprinted(recipe):
    p = Pipeline(recipe, [CORPUS])
    p.run()
    before = read_json(recipe.run_dir / "corpus" / "manifest.json")
    assert before["config"]["execution"] == {} and before["execution"]["execution.workers"] == 0
    recipe.execution.workers, recipe.corpus.minhash.spill_dir = 1, str(recipe.run_dir / "spill")
    assert Pipeline(recipe, [CORPUS]).run() == {"corpus": "skipped"}
    recipe.corpus.clean.min_line_chars = 3  # changes the output
    assert Pipeline(recipe, [CORPUS]).run() == {"corpus": "ran"}


def test_steps_must_come_after_the_steps_they_read():
    from hare.pipeline import PipelineError

    with pytest.raises(PipelineError, match=r"step extra comes after \['corpus'\]"):
        Pipeline(Recipe(name="x", sources=[{"name": "a", "kind": "pydoc"}]), [ExtraStep()])
