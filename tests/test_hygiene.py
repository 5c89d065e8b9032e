"""Repository hygiene: notebooks without outputs and with the mandated head; no absolute machine paths."""
from __future__ import annotations

import re
import subprocess

import nbformat
import pytest

from orca_utils.paths import NOTEBOOKS_DIR, REPO_ROOT
from orca_utils.schemas import NOTEBOOK_SCHEMAS

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def test_every_pipeline_stem_has_a_notebook_and_vice_versa():
    assert [p.stem for p in NOTEBOOKS] == list(NOTEBOOK_SCHEMAS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_head(path):
    nb = nbformat.read(path, as_version=4)
    first, second = nb.cells[0], nb.cells[1]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("#")
    assert re.search(r"(§|section|Section|Table|Figure|paper)", first.source), "say which part of the paper"
    assert second.cell_type == "code" and "parameters" in second.metadata.get("tags", [])
    params = dict(re.findall(r"^(\w+)\s*=\s*(.+?)\s*(?:#.*)?$", second.source, re.M))
    assert set(params) == {"profile", "run_dir", "overrides", "reuse"}, params
    assert params["profile"] == '"smoke"'
    assert f'setup_notebook("{path.stem}"' in "".join(c.source for c in nb.cells[2:4])


def test_no_absolute_machine_paths_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"(?<![\w.])/(work|root|home)/[A-Za-z]")
    hits = []
    for name in files:
        path = REPO_ROOT / name
        if path.suffix in {".png", ".pdf", ".parquet", ".gguf"} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        hits += [f"{name}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not hits, hits[:5]
