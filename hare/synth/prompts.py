"""Prompt templates: text files shipped in ``hare/synth/templates/`` that a recipe may override.

Templates are plain text with ``$name`` placeholders (``string.Template``: JSON braces in an
example need no escaping, and nothing in a template is ever evaluated). A folder named by
``synth.templates_dir`` is laid out the same way; a file found there replaces the packaged file of
the same relative path, and new files there add template variants. Every generation records the
template it was made from, and the template's text is part of the prompt, hence of the cache key:
editing one template re-sends only the requests made from it.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml

PACKAGED = Path(__file__).parent / "templates"


class TemplateError(ValueError):
    """A template is missing or names a placeholder that is not given; the message names the file."""


class Templates:
    """The packaged templates overlaid by a user folder."""

    def __init__(self, user_dir: str | Path | None = None):
        self.roots = [Path(user_dir).expanduser()] if user_dir else []
        self.roots.append(PACKAGED)

    def path(self, rel: str) -> Path | None:
        for root in self.roots:
            p = root / rel
            if p.is_file():
                return p
        return None

    def exists(self, rel: str) -> bool:
        return self.path(rel) is not None

    def text(self, rel: str) -> str:
        p = self.path(rel)
        if p is None:
            raise TemplateError(f"template {rel} not found in {', '.join(str(r) for r in self.roots)}")
        return p.read_text(encoding="utf-8")

    def yaml(self, rel: str) -> dict[str, Any]:
        p = self.path(rel)
        if p is None:
            raise TemplateError(f"template {rel} not found in {', '.join(str(r) for r in self.roots)}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise TemplateError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise TemplateError(f"{p}: expected a mapping")
        return data

    def variants(self, folder: str) -> list[str]:
        """The ``.txt`` templates of a folder (packaged and user's, by name), as relative paths."""
        names: set[str] = set()
        for root in self.roots:
            if (root / folder).is_dir():
                names.update(p.name for p in (root / folder).glob("*.txt"))
        return [f"{folder}/{n}" for n in sorted(names)]

    def render(self, rel: str, **values: Any) -> str:
        try:
            return string.Template(self.text(rel)).substitute(values).strip()
        except KeyError as e:
            raise TemplateError(f"template {self.path(rel)}: placeholder ${e.args[0]} is not one of "
                                f"{', '.join('$' + k for k in sorted(values))}") from None
        except ValueError as e:
            raise TemplateError(f"template {self.path(rel)}: {e} (write a literal $ as $$)") from None
