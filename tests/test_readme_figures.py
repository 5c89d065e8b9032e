"""Every image the README shows is a file in the repository (a relative path, committed under docs/figures/, small),
and each is captioned with the model, teacher and data behind it, a stand-in never named as the paper's model."""
from __future__ import annotations

import re

from orca_utils.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
MAX_BYTES = 150_000
_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*(?:<([^>]+)>|([^)\s]+))(?:\s+\"[^\"]*\")?\s*\)"    # ![alt](path "title")
                    r"|<img\s[^>]*src=[\"']([^\"']+)[\"']", re.I)                        # <img src="path">


def _images(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _IMAGE.finditer(text)]


def test_the_image_pattern_finds_markdown_and_html_images():
    text = '![a](docs/figures/a.png) x <img src="docs/b.png" width=3> ![c](<docs/c d.png> "t")'
    assert _images(text) == ["docs/figures/a.png", "docs/b.png", "docs/c d.png"]


def test_every_image_the_readme_references_exists_in_the_repo():
    text = README.read_text()
    images = _images(text)
    assert len(images) >= 2, "the README's Figures section shows figures"
    for src in images:
        assert not re.match(r"^[a-z]+://", src), f"{src}: link a committed file, not a remote one"
        path = (README.parent / src).resolve()
        assert path.is_file(), f"README references {src}, which is not in the repository"
        assert REPO_ROOT.resolve() in path.parents, f"{src} points outside the repository"
        assert path.stat().st_size < MAX_BYTES, f"{src}: {path.stat().st_size} bytes; keep README images small"


def test_each_readme_figure_says_which_model_teacher_and_data_made_it():
    lines = README.read_text().splitlines()
    for i, line in enumerate(lines):
        if not _images(line):
            continue
        rest = lines[i + 1:]
        while rest and not rest[0].strip():                  # the caption: the paragraph under the image
            rest = rest[1:]
        caption = " ".join(rest[:next((k for k, ln in enumerate(rest) if not ln.strip()), len(rest))])
        assert re.search(r"\bmodel", caption, re.I) and re.search(r"\bteacher", caption, re.I) and \
            re.search(r"\bdata\b", caption, re.I), f"caption under {line!r} must name model, teacher and data"
        # a stand-in is named as what it is, never as the paper's model it stands in for
        assert not re.search(r"\b(teacher|student|model)s?:?\s+(GPT-4|ChatGPT|LLaMA-13B)\b", caption), caption


def test_committed_figures_are_all_shown():
    shown = {(README.parent / src).resolve() for src in _images(README.read_text())}
    committed = {p.resolve() for p in (REPO_ROOT / "docs" / "figures").glob("*.png")}
    assert committed <= shown, f"committed but not shown in the README: {sorted(committed - shown)}"
