"""The cleaning rules, in the order ``Cleaner`` applies them: formatters rewrite a document's
text, then filters keep it or drop it with a reason (the first that drops it names the reason).

Each entry is a class with a ``name``, ``from_config(cfg)`` (the instance the recipe's
``corpus.clean`` asks for, or None when it is off) and ``format(text)`` or ``filter(doc, view)``.
A rule of your own is one module and one line here; it runs when ``corpus.clean.extra`` names it
(``docs/adding-a-filter.md``).
"""

from __future__ import annotations

from hare.filters.clean import (C4BadContentFilter, EnglishFilter, FineWebQualityFilter, GopherQualityFilter,
                                GopherRepetitionFilter, IncompleteFilter, LineFormatter, PIIFormatter, URLFormatter)
from hare.filters.langid import LanguageFilter

FORMATTERS: list[type] = [LineFormatter, URLFormatter, PIIFormatter]

# Language first (as datatrove's pipelines do): the rules after it are tuned for English.
FILTERS: list[type] = [LanguageFilter, EnglishFilter, GopherRepetitionFilter, GopherQualityFilter, C4BadContentFilter,
                       FineWebQualityFilter, IncompleteFilter]
