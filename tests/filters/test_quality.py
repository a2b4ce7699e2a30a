import numpy as np

from hare.filters.quality import QualityScorer, histogram
from tests.conftest import nltk_texts


def chunks(corpus: str, size: int = 2000) -> list[str]:
    out = []
    for _, text in nltk_texts(corpus):
        out += [text[i:i + size] for i in range(0, len(text) - size, size)]
    return out


def test_scorer_separates_reference_prose_from_chat_text(tmp_path):
    speeches = chunks("state_union")  # reference: edited prose
    web = chunks("webtext")  # raw: forum posts, chat logs, film scripts
    rng = np.random.default_rng(0)
    ref_train, ref_test = speeches[:300], speeches[300:400]
    raw_train, raw_test = web[:300], list(rng.choice(web[300:], 100, replace=False))
    scorer = QualityScorer(seed=0)
    stats = scorer.fit(ref_train, raw_train)
    assert stats["heldout_accuracy"] > 0.9
    s_ref, s_raw = scorer.score(ref_test), scorer.score(raw_test)
    assert s_ref.mean() - s_raw.mean() > 0.5
    assert ((s_ref > 0.5).mean() + (s_raw <= 0.5).mean()) / 2 > 0.9
    words = scorer.explain(ref_train[:100] + raw_train[:100])
    assert words["reference"] and words["raw"] and set(words["reference"]).isdisjoint(words["raw"])
    scorer.save(tmp_path / "q.pkl")
    again = QualityScorer.load(tmp_path / "q.pkl")
    assert np.allclose(again.score(ref_test[:5]), s_ref[:5])
    h = histogram(np.concatenate([s_ref, s_raw]))
    assert len(h) == 20 and sum(h) == 200


def test_scorer_needs_both_sides():
    import pytest

    with pytest.raises(ValueError, match="at least 2 reference"):
        QualityScorer().fit(["a"], ["b", "c"])
