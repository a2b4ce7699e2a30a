from hare.filters.clean import Cleaner, GopherQualityFilter, PIIFormatter, URLFormatter
from hare.core.documents import Document
from hare.core.text import normalize_for_dedup, text_hash
from hare.filters.config import CleanConfig


def test_real_reviews_mostly_pass(reviews):
    c = Cleaner.from_config(CleanConfig())
    kept = sum(c(Document(t, str(i)))[0] for i, t in enumerate(reviews))
    assert kept / len(reviews) > 0.95
    assert sum(c.removed.values()) == len(reviews) - kept  # every removal has a reason


def test_each_gopher_rule_names_its_reason(reviews):
    cfg = CleanConfig()
    f = GopherQualityFilter.from_config(cfg)
    base = reviews[0]
    assert f.filter(Document(base, "ok")) is True
    assert f.filter(Document(" ".join(base.split()[:20]), "s")) == (False, "gopher_short_document")
    assert f.filter(Document(base + " #" * 200, "h")) == (False, "gopher_symbol_word_ratio")
    assert f.filter(Document(" ".join(["xq"] * 80), "w")) == (False, "gopher_mean_word_length")
    assert f.filter(Document("\n".join(f"- {l}" for l in base.split("\n") if l.strip()), "b")) == (False, "gopher_bullet_lines")
    assert f.filter(Document(" ".join(["12345 67890"] * 60), "a"))[1] in ("gopher_alpha_words",
                                                                            "gopher_mean_word_length")
    no_stop = " ".join(w for w in base.split() if w.lower() not in {"the", "be", "to", "of", "and", "that",
                                                                        "have", "with"})
    assert f.filter(Document(no_stop, "n")) == (False, "gopher_stop_words")


def test_repetition_and_language_and_lorem(reviews):
    c = Cleaner.from_config(CleanConfig())
    rep = Document("\n".join([reviews[1].split("\n")[0]] * 10 + reviews[1].split("\n")[:3]), "r")
    assert c(rep) == (False, "gopher_duplicate_lines")
    german = Document(" ".join(["Die Katze schläft über dem Sofa während die Kinder spielen und lachen."] * 20), "g")
    assert c(german) == (False, "non_english")
    lorem = Document(reviews[2] + "\nlorem ipsum dolor sit amet", "l")
    assert c(lorem) == (False, "c4_lorem_ipsum")
    assert c.removed == {"gopher_duplicate_lines": 1, "non_english": 1, "c4_lorem_ipsum": 1}


def test_pii_and_links_are_removed():
    text = ("Write to jane.doe@example.org or call (555) 123-4567; the server is 192.168.10.20. "
            "See https://example.com/page?x=1 and www.python.org for more.")
    out = URLFormatter().format(PIIFormatter().format(text))
    assert "jane.doe" not in out and "123-4567" not in out and "192.168" not in out
    assert "https://" not in out and "www.python.org" not in out
    assert out.startswith("Write to email@example.com or call")


def test_boilerplate_lines_are_dropped(reviews):
    c = Cleaner.from_config(CleanConfig())
    d = Document(reviews[3] + "\nPlease enable JavaScript to view the comments.\nRead our privacy policy.", "x")
    assert c(d)[0]
    assert "JavaScript" not in d.text and "privacy policy" not in d.text
    assert c.changes["lines"] == 1


def test_exact_dedup_normalization():
    assert normalize_for_dedup("Hello,  World!\n2024") == "hello world 0000"
    assert text_hash("The cat sat.") == text_hash("the  CAT sat")
    assert text_hash("The cat sat.") != text_hash("The dog sat.")


def test_gopher_ngram_repetition_rules(reviews):
    from hare.filters.clean import GopherRepetitionFilter, duplicate_ngram_chars

    f = GopherRepetitionFilter.from_config(CleanConfig())
    assert all(f.filter(Document(t, "r")) is True for t in reviews[:50])  # real prose passes
    words = reviews[0].split()
    spam = " ".join(words[:150] + ["buy cheap tickets now"] * 40)
    assert f.filter(Document(spam, "s")) == (False, "gopher_top_2gram")
    copy = " ".join(words[:120] + words[:40])  # a 40-word passage written twice, on one line
    assert f.filter(Document(copy, "c"))[1].startswith("gopher_duplicate_")
    assert duplicate_ngram_chars("a b c d e a b c d e".split(), 5) == 5
    assert duplicate_ngram_chars("a b c d e f".split(), 5) == 0
    paras = "\n\n".join([reviews[1][:300]] * 3 + [reviews[2]])
    assert f.filter(Document(paras, "p"))[1] in ("gopher_duplicate_paragraphs", "gopher_duplicate_paragraphs_chars")


def test_fineweb_and_incomplete_rules_are_opt_in(reviews):
    base = reviews[4]
    no_punct = "\n".join(l.rstrip(" .!?") for l in base.split("\n"))
    assert Cleaner.from_config(CleanConfig())(Document(no_punct, "a"))[0]
    assert Cleaner.from_config(CleanConfig(fineweb_rules=True))(Document(no_punct, "a")) == (False, "fineweb_line_punctuation")
    cut = base.rstrip().rsplit(" ", 3)[0].rstrip(" .") + " and then the film goes on to show how the"
    assert Cleaner.from_config(CleanConfig())(Document(cut, "b"))[0]
    assert Cleaner.from_config(CleanConfig(require_complete_ending=True))(Document(cut, "b")) == (False, "incomplete_ending")
    assert Cleaner.from_config(CleanConfig(require_complete_ending=True))(Document(base, "c"))[0]
