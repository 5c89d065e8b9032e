"""README.md stays a newcomer's page, and every relative link in it and in docs/*.md leads somewhere.

A relative link (`[text](path)`, `![alt](path)`, `[text](path#anchor)`, `[text](#anchor)`) must name a file in the
repository; an anchor must be a heading of the page it points into, slugged as GitHub does (lower case, punctuation
dropped, spaces to hyphens, `-1`, `-2` for repeats). Links inside code (fenced blocks, inline spans) are text, not
links. Every page under docs/ is reachable from the README. The lab notes with measured figures live in docs/, so
the README is capped in length.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from orca_utils.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 320

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[^\n]*$", re.S | re.M)
_SPAN = re.compile(r"`[^`\n]*(?:\n[^`\n]*)?`")               # an inline code span, possibly wrapped once
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(?:<([^>]+)>|([^)\s]+))(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The page without its code: fenced blocks and inline code spans blanked."""
    return _SPAN.sub("``", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Targets of the page's Markdown links and images, in order, code left out."""
    return [m.group(1) or m.group(2) for m in _LINK.finditer(_prose(text))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)        # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, text: str | None = None) -> list[str]:
    """One line per link of `page` that does not resolve; external links (scheme:) are not followed."""
    text = page.read_text(encoding="utf-8") if text is None else text
    problems = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):            # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        if not path_part:                                              # an anchor on this very page
            if anchor not in anchors(text):
                problems.append(f"{target}: no heading #{anchor} on this page")
            continue
        dest = (page.parent / path_part).resolve()
        if REPO_ROOT.resolve() not in dest.parents and dest != REPO_ROOT.resolve():
            problems.append(f"{target}: points outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor:
            if dest.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(page):
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(REPO_ROOT)}: " + "; ".join(problems)


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached or not page.is_file() or page.suffix != ".md":
            continue
        reached.add(page)
        for target in links(page.read_text(encoding="utf-8")):
            path_part = target.partition("#")[0]
            if path_part and not re.match(r"^[a-z][a-z0-9+.-]*:", path_part, re.I):
                todo.append((page.parent / path_part).resolve())
    orphans = [p.name for p in DOCS.glob("*.md") if p.resolve() not in reached]
    assert not orphans, f"docs pages no link leads to from README.md: {orphans}"


def test_the_readme_is_at_most_320_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, (f"README.md has {n} lines (at most {MAX_README_LINES}): move lab notes and "
                                   f"measured figures to a page under docs/ and link it")


def test_links_are_read_from_prose_only():
    text = ("See [a](docs/a.md) and ![b](docs/figures/b.png \"t\") and [c](<docs/c d.md>), [[x] y](z.md#h).\n"
            "`[not](a link)` here\n```\n[also](not.md)\n```\n")
    assert links(text) == ["docs/a.md", "docs/figures/b.png", "docs/c d.md", "z.md#h"]


def test_slugs_follow_github():
    text = ("# 05 AGIEval and 06 BBH\n## Results of `make demo` (earlier)\n## Notes\n## Notes\n"
            "```\n# not a heading\n```\n")
    assert anchors(text) == {"05-agieval-and-06-bbh", "results-of-make-demo-earlier", "notes", "notes-1"}


def test_a_broken_link_or_anchor_is_caught():
    page = DOCS / "page_under_test.md"                       # never written: the text is passed in
    text = ("[ok](../README.md#architecture) [self](#here) [gone](nosuchfile.md) [bad](../README.md#nosuch) "
            "[out](../../elsewhere.md) [web](https://example.org/x) [none](#nowhere)\n# Here\n")
    problems = broken_links(page, text)
    assert [p.split(":")[0] for p in problems] == ["nosuchfile.md", "../README.md#nosuch", "../../elsewhere.md",
                                                     "#nowhere"]
