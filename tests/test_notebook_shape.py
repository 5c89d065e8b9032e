"""The shape of a notebook: short code cells that call `orca_utils`, and no file read by hand.

A code cell holds at most `MAX_CELL_LINES` non-blank lines (the logic lives in the notebook's module, which the
README's Layout section names for each notebook), and no notebook reads a file itself: another notebook's outputs
are read through the package (`orca_utils.contracts` names them and checks their columns), a notebook's own working
files never.
"""
from __future__ import annotations

import importlib.util
import json
import re

import pytest

from orca_utils.paths import NOTEBOOKS_DIR, REPO_ROOT
from orca_utils.schemas import NOTEBOOK_SCHEMAS

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
MAX_CELL_LINES = 12
# Reading a file in a notebook (the package does it, through the contracts).
FILE_READS = re.compile(r"\bread_(parquet|csv|json|table)\(|\.read_(text|bytes)\(|\bjson\.load\(|\bopen\(|\.glob\(")


def code_cells(path) -> list[tuple[int, str]]:
    """[(cell index, source)] of the notebook's code cells."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def long_cells(path, limit: int = MAX_CELL_LINES) -> list[str]:
    """`cell <i>: <n> lines` for each code cell with more than `limit` non-blank lines."""
    out = []
    for i, src in code_cells(path):
        n = sum(1 for line in src.splitlines() if line.strip())
        if n > limit:
            out.append(f"cell {i}: {n} lines")
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_code_cell_is_longer_than_twelve_lines(path):
    found = long_cells(path)
    assert not found, (f"{path.name}: code cells over {MAX_CELL_LINES} non-blank lines (move the logic into the "
                       f"notebook's module): {found}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_no_file_itself(path):
    found = [f"cell {i}: {m.group(0)}" for i, src in code_cells(path) for m in FILE_READS.finditer(src)]
    assert not found, f"{path.name} reads files itself (read them through orca_utils): {found}"


def layout_modules() -> dict[str, str]:
    """{notebook stem: the module holding its logic}, from the table in the README's Layout section."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    out = {}
    for stems, module in re.findall(r"^\| ((?:`\d\d_\w+`(?:, )?)+) \| `(orca_utils\.\w+)`", section, re.M):
        out.update({stem: module for stem in re.findall(r"`(\d\d_\w+)`", stems)})
    return out


def test_the_readme_names_each_notebooks_module_and_the_notebook_uses_it():
    modules = layout_modules()
    assert set(modules) == set(NOTEBOOK_SCHEMAS), set(NOTEBOOK_SCHEMAS) ^ set(modules)
    for stem, module in modules.items():
        assert importlib.util.find_spec(module) is not None, (stem, module)
        code = "\n".join(src for _, src in code_cells(NOTEBOOKS_DIR / f"{stem}.ipynb"))
        name = module.rsplit(".", 1)[1]
        assert re.search(rf"(orca_utils\.{name}\b|from orca_utils import [\w, ]*\b{name}\b)", code), (stem, module)


def test_the_checks_catch_what_they_are_for(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1\n"] * 12 + ["\n", "y = 2"]},
                    {"cell_type": "markdown", "source": ["text\n"] * 40},
                    {"cell_type": "code", "source": ["df = pd.read_parquet(up / 'train_stage1.parquet')"]}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert long_cells(path) == ["cell 0: 13 lines"]
    assert [m.group(0) for _, src in code_cells(path) for m in FILE_READS.finditer(src)] == ["read_parquet("]
