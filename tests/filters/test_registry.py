"""A cleaning rule of your own: one class and one registry entry, turned on by ``corpus.clean.extra``
(docs/adding-a-filter.md), in its registry place, with its reason counted."""

from __future__ import annotations

import pytest

from hare.core.documents import Document
from hare.filters import registry
from hare.filters.clean import Cleaner, Filter, Formatter
from hare.filters.config import CleanConfig


class DigitFilter(Filter):
    name = "digits"

    def __init__(self, max_fraction: float = 0.3):
        self.max_fraction = max_fraction

    def filter(self, doc: Document, view=None):
        if sum(c.isdigit() for c in doc.text) > self.max_fraction * max(1, len(doc.text)):
            return False, "too_many_digits"
        return True


class Shout(Formatter):
    name = "shout"

    def format(self, text: str) -> str:
        return text.upper()


PROSE = ("The river runs past the old mill, and the children walk along its bank every morning on their way to "
         "school. In spring the water rises over the stones near the bridge, and the miller opens the sluice to "
         "keep his wheel from flooding. Fishermen come from the town below with long rods and baskets of bread; "
         "they sit in the shade of the willows until the light fades. When autumn arrives, leaves drift down the "
         "current in slow spirals, gathering against the weir where ducks search for seeds between the reeds. "
         "Old stories say a bell was lost there during a storm, and some people claim they still hear it ring.")


def test_a_rule_of_your_own_runs_in_its_registry_place_when_the_recipe_names_it(monkeypatch):
    monkeypatch.setattr(registry, "FILTERS", [*registry.FILTERS, DigitFilter])
    monkeypatch.setattr(registry, "FORMATTERS", [*registry.FORMATTERS, Shout])
    off = Cleaner.from_config(CleanConfig(language_id="wordlist"))
    assert not any(isinstance(f, (DigitFilter, Shout)) for f in off.filters + off.formatters)  # off unless named
    cleaner = Cleaner.from_config(CleanConfig(language_id="wordlist", extra={"digits": {"max_fraction": 0.05},
                                                                             "shout": {}}))
    assert isinstance(cleaner.filters[-1], DigitFilter) and cleaner.filters[-1].max_fraction == 0.05
    numbers = Document(PROSE + " ".join(str(1000 + i) for i in range(60)), "n")
    assert cleaner(numbers) == (False, "too_many_digits") and cleaner.removed == {"too_many_digits": 1}
    prose = Document(PROSE, "p")
    assert cleaner(prose) == (True, None) and prose.text == PROSE.upper()
    assert cleaner.changes["shout"] == 2  # formatters run before the filters: the dropped document was rewritten too


def test_a_name_in_no_registry_fails_when_the_recipe_is_read():
    with pytest.raises(ValueError, match=r"no formatter or filter named \['nope'\] in hare/filters/registry.py"):
        CleanConfig(extra={"nope": {}})


def test_every_registered_rule_builds_from_the_default_config():
    cfg = CleanConfig(language_id="wordlist")
    for cls in (*registry.FORMATTERS, *registry.FILTERS):
        assert isinstance(cls.name, str) and hasattr(cls, "from_config")
        rule = cls.from_config(cfg)
        assert rule is None or isinstance(rule, cls)
