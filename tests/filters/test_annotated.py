"""The annotator's classifier (``hare.filters.annotated``) on labelled text whose grade is known, its
agreement measures, its saved form and the rubric; the config's annotator keys."""

from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest

from hare.filters.annotated import AnnotatedScorer, AnnotatorError, agreement, load_rubric
from hare.filters.quality import QualityScorer, load_scorer

LESSON = ("the cell divides by mitosis so each new cell holds a copy of the chromosomes while photosynthesis turns "
          "light water and carbon dioxide into sugar and oxygen and the equation balances the atoms on both sides "
          "because mass is conserved in a chemical reaction").split()
CHATTER = ("lol ok see you tomorrow haha my cat is so funny buy now cheap deals click here free shipping best price "
           "omg cant wait for the weekend party tonight who is coming message me").split()


def graded_texts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Texts of 80 words whose grade g (0..5) is how many fifths of their words come from a lesson."""
    rng = random.Random(seed)
    texts, grades = [], []
    for _ in range(n):
        g = rng.randint(0, 5)
        texts.append(" ".join(rng.choice(LESSON) if rng.random() < g / 5 else rng.choice(CHATTER) for _ in range(80)))
        grades.append(g)
    return texts, grades


def embeddings_or_skip() -> None:
    from hare.core.packaged import PackagedModelMissing, minilm_folder

    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers is not installed")
    try:
        minilm_folder()
    except PackagedModelMissing as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("kind", ["hashed", "embeddings"])
def test_the_classifier_learns_known_grades_and_beats_the_most_common_grade(kind, tmp_path):
    if kind == "embeddings":
        embeddings_or_skip()
    texts, grades = graded_texts(240)
    scorer = AnnotatedScorer(kind, max_chars=2000, seed=3)
    fit = scorer.fit(texts, grades, holdout_fraction=0.25, threshold=3)
    h = fit["heldout"]
    assert fit["train"] == 180 and h["n"] == 60
    assert h["spearman"] > 0.8 and h["accuracy"] > fit["baseline_accuracy"] + 0.3 and h["f1"] > 0.8
    s = scorer.score(texts)
    assert s.min() >= 0 and s.max() <= 1
    assert np.corrcoef(s, grades)[0, 1] > 0.8
    # saved as plain arrays and loaded back (through the loader the corpus workers use) to the same scores
    scorer.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert str(z["kind"]) == "annotator" and str(z["features"]) == kind
    back = load_scorer(tmp_path / "s.npz")
    assert isinstance(back, AnnotatedScorer) and np.allclose(back.score(texts[:20]), s[:20], atol=1e-5)


def test_shuffled_grades_give_no_agreement():
    texts, grades = graded_texts(240)
    shuffled = grades[:]
    random.Random(1).shuffle(shuffled)
    fit = AnnotatedScorer("hashed", seed=3).fit(texts, shuffled, holdout_fraction=0.25)
    assert abs(fit["heldout"]["spearman"]) < 0.35


def test_agreement_counts_rounded_predictions():
    a = agreement(np.array([0, 1, 3, 4, 5]), np.array([0.4, 1.6, 2.6, 4.0, 4.9]), threshold=3)
    assert a["accuracy"] == 0.8  # 1.6 rounds to 2
    assert a["f1"] == 1.0 and a["n"] == 5 and a["threshold"] == 3
    assert a["mae"] == pytest.approx((0.4 + 0.6 + 0.4 + 0 + 0.1) / 5, abs=1e-4)
    flat = agreement(np.array([2, 2, 2]), np.array([1.0, 2.0, 3.0]), threshold=3)
    assert flat["spearman"] is None and flat["pearson"] is None  # undefined for a constant side
    # F1 of grade >= 3: one of two true positives found, one false alarm
    assert agreement(np.array([3, 4, 1]), np.array([3.2, 1.0, 3.4]), 3)["f1"] == 0.5


def test_reference_scorers_still_load_through_the_same_loader(tmp_path):
    q = QualityScorer(seed=0)
    texts, _ = graded_texts(40)
    q.fit(texts[:20], texts[20:])
    q.save(tmp_path / "q.npz")
    assert isinstance(load_scorer(tmp_path / "q.npz"), QualityScorer)


def test_too_few_grades_and_bad_grades_fail_clearly():
    with pytest.raises(AnnotatorError, match="at least 4"):
        AnnotatedScorer("hashed").fit(["a", "b", "c"], [1, 2, 3])
    with pytest.raises(ValueError, match="0..5"):
        AnnotatedScorer("hashed").fit(["a"] * 6, [1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match="neither"):
        AnnotatedScorer("tfidf")


def test_the_rubric_needs_exactly_its_document_placeholder(tmp_path):
    assert "$document" in load_rubric() and "5th point" in load_rubric()
    for text, ok in [("Grade: $document", True), ("Grade this", False), ("$document for $grade", False),
                     ("costs $ 5: $document", False), ("costs $$5: ${document}", True)]:
        (tmp_path / "r.txt").write_text(text)
        if ok:
            assert load_rubric(tmp_path / "r.txt") == text
        else:
            with pytest.raises(AnnotatorError, match="r.txt"):
                load_rubric(tmp_path / "r.txt")
    with pytest.raises(AnnotatorError, match="cannot read"):
        load_rubric(tmp_path / "missing.txt")


def test_the_annotator_keys_leave_the_fingerprint_of_other_recipes_alone():
    from hare.core.config import config_dump
    from hare.filters.config import QualityConfig

    assert set(config_dump(QualityConfig())) == {"enabled", "reference_sources", "reference_path", "sample_docs",
                                                 "min_score", "max_score"}
    assert QualityConfig().model_dump()["mode"] == "reference"  # hare validate shows every key
    q = QualityConfig(mode="annotator", teacher={"packaged": "smollm2", "threads": 2}, features="hashed",
                      cache_dir="/tmp/x")
    dumped = config_dump(q)
    assert dumped["mode"] == "annotator" and dumped["features"] == "hashed"
    assert "threads" not in dumped["teacher"] and "cache_dir" not in dumped  # how it runs, not what it gives
    assert QualityConfig.model_validate(q.model_dump()) == q
    with pytest.raises(ValueError, match="min_score 0.7 is above max_score 0.5"):
        QualityConfig(min_score=0.7, max_score=0.5)


def test_annotator_mode_takes_the_synth_teacher_or_fails_without_one():
    from hare.recipe import Recipe

    base = {"name": "r", "sources": [{"name": "a", "kind": "pydoc"}],
            "corpus": {"quality": {"enabled": True, "mode": "annotator"}}}
    with pytest.raises(ValueError, match="needs a teacher"):
        Recipe.model_validate(base)
    r = Recipe.model_validate({**base, "synth": {"teacher": {"packaged": "smollm2"}}})
    assert r.corpus.quality.teacher.packaged == "smollm2"
    own = Recipe.model_validate({**base, "corpus": {"quality": {"enabled": True, "mode": "annotator",
                                                                "teacher": {"local": "/models/m"}}},
                                 "synth": {"teacher": {"packaged": "smollm2"}}})
    assert own.corpus.quality.teacher.local == "/models/m" and own.corpus.quality.teacher.packaged is None
