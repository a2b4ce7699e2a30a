"""The docs hold together: every relative link in README.md and docs/*.md leads to a file that
exists, every docs page is in the README's index, and every ``hare <command>`` the docs show in
code names a command of ``hare.cli.commands()``, with options that command has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hare.cli import build_parser, commands
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(```+|~~~+)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$", re.M | re.S)
SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target) and ![alt](target), with an optional "title"; and reference definitions [x]: target
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
# `hare` as a word (not hare/..., hare.x, hare_x or hare-x), then a word that could be a command.
COMMAND = re.compile(r"(?<![\w./-])hare[ \t]+([a-z][a-z0-9-]*)(?![\w./])")
COMMENT = re.compile(r"(?:^|\s)#.*$", re.M)  # a shell, Python or YAML comment in a code block


def code_and_prose(text: str) -> tuple[list[str], str]:
    """The text's code (fenced blocks, comments dropped, and inline spans) and its prose (without them)."""
    code = [COMMENT.sub("", m.group(2)) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    code += [m.group(2) for m in SPAN.finditer(prose)]
    return code, SPAN.sub("", prose)


def dangling_links(path: Path, text: str | None = None) -> list[str]:
    """The relative links of a Markdown file (given, or read) that lead to no file."""
    text = path.read_text(encoding="utf-8") if text is None else text
    _, prose = code_and_prose(text)
    bad = []
    for target in LINK.findall(prose) + REFERENCE.findall(prose):
        if re.match(r"(?i)(https?:|mailto:)", target):
            continue
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).exists():
            bad.append(target)
    return bad


def unknown_commands(text: str, known: set[str]) -> list[str]:
    """The ``hare <word>`` of a Markdown text's code whose word is no command."""
    code, _ = code_and_prose(text)
    return [f"hare {w}" for block in code for w in COMMAND.findall(block) if w not in known]


def unknown_options(text: str, options: dict[str, set[str]]) -> list[str]:
    """The ``--option`` of a ``hare <command>`` line of a Markdown text's code that the command lacks
    (``options``: command -> its options)."""
    bad = []
    for block in code_and_prose(text)[0]:
        for line in block.splitlines():
            for m in COMMAND.finditer(line):
                if m.group(1) not in options:
                    continue
                rest = line[m.end():].split("|", 1)[0]
                bad += [f"hare {m.group(1)} {o}" for o in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)
                        if o not in options[m.group(1)] | {"--help", "--debug"}]
    return bad


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert dangling_links(path) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_hare_command_shown_exists(path):
    assert unknown_commands(path.read_text(encoding="utf-8"), set(commands())) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_option_shown_exists(path):
    subs = build_parser()._subparsers._group_actions[0].choices
    options = {name: {o for a in sp._actions for o in a.option_strings} for name, sp in subs.items()}
    assert unknown_options(path.read_text(encoding="utf-8"), options) == []


def test_the_readme_indexes_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for t in LINK.findall(code_and_prose(readme)[1])}
    missing = [p.name for p in DOCS[1:] if p.resolve() not in linked]
    assert missing == []


def test_the_checks_catch_what_they_must(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    text = ("[ok](there.md) [ok](there.md#part) [ok](#top) [web](https://example.com/x.md) "
            "[mail](mailto:a@b.c) ![img](gone.png) [bad](missing.md#part) `[not a link](nowhere.md)`\n"
            "[ref]: missing-ref.md\n")
    assert dangling_links(page, text) == ["gone.png", "missing.md#part", "missing-ref.md"]
    known = {"run", "eval"}
    text = ("Run `hare eval MODEL` or `hare evaluate MODEL`; hare/corpus/read.py, `hare.core.io`.\n"
            "```bash\nhare run my.yaml      # the hare backend\npython -m hare trian my.yaml\n"
            "torchrun -m hare train x\n```\n"
            "In prose hare bogus is not code.\n")
    assert unknown_commands(text, known) == ["hare trian", "hare train", "hare evaluate"]
    options = {"eval": {"--limit"}}
    assert unknown_options("`hare eval M --limit 3 --limt 3` and `hare run --x`\n", options) == ["hare eval --limt"]
