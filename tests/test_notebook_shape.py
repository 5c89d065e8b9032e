"""The shape of a notebook: short code cells that call `orca_utils`, and no file read by hand.

A code cell holds at most `MAX_CELL_LINES` non-blank lines (the logic lives in the notebook's module, which the
README's Layout section names for each notebook), and no notebook reads a file itself: another notebook's outputs
are read through the package (`orca_utils.contracts` names them and checks their columns), a notebook's own working
files never.

Each notebook imports one driver, the module the README's Layout table names for it, by its own name or an alias of
at least `MIN_ALIAS_CHARS` characters, and calls on it only names in its `__all__`; beside it, only the
infrastructure modules in `INFRASTRUCTURE`. 05 and 06 are the same notebook on two benchmarks: their code cells are
identical once the benchmark's name is set aside.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

from orca_utils.paths import NOTEBOOKS_DIR, REPO_ROOT
from orca_utils.schemas import NOTEBOOK_SCHEMAS

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
MAX_CELL_LINES = 12
# Reading a file in a notebook (the package does it, through the contracts).
FILE_READS = re.compile(r"\bread_(parquet|csv|json|table)\(|\.read_(text|bytes)\(|\bjson\.load\(|\bopen\(|\.glob\(")
# What a notebook may import from `orca_utils` beside its one driver: the floors below the drivers in
# ../shared/STYLE.md ("infrastructure" and "leaves") that notebooks use. Engines (generate, judge, train, teacher,
# ...) and other notebooks' drivers are reached through the notebook's driver.
INFRASTRUCTURE = frozenset({
    "orca_utils.runs",             # setup_notebook: every notebook's setup cell
    "orca_utils.contracts",        # what passes between notebooks (file names, columns, labels)
    "orca_utils.reference",        # the paper's numbers
    "orca_utils.system_messages",  # the paper's 16 system messages
    "orca_utils.models",           # model specs and their labels
    "orca_utils.tokens",           # tokenizers and tokenization
})
MIN_ALIAS_CHARS = 3


def code_cells(path) -> list[tuple[int, str]]:
    """[(cell index, source)] of the notebook's code cells."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def orca_imports(code: str) -> list[tuple[str, str | None, str]]:
    """[(module, name taken from it or None for the module itself, local name)] for each `orca_utils` import."""
    out = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            out += [(a.name, None, a.asname or a.name.split(".")[0]) for a in node.names
                    if a.name.split(".")[0] == "orca_utils"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "orca_utils":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, None, a.asname or a.name) if _is_module(sub)
                           else (node.module, a.name, a.asname or a.name))
    return out


def public_names(module: str) -> set[str]:
    """The module's `__all__`, read from its source (nothing is imported)."""
    origin = Path(importlib.util.find_spec(module).origin)
    for node in ast.parse(origin.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def driver_problems(code: str, expected: str | None = None) -> list[str]:
    """What breaks the one-driver rule in a notebook's code (empty: nothing)."""
    imports = orca_imports(code)
    problems = [f"alias {local!r} for {module}{'.' + name if name else ''} is shorter than {MIN_ALIAS_CHARS} "
                "characters" for module, name, local in imports
                if local != (name or module.split(".")[-1]) and len(local) < MIN_ALIAS_CHARS]
    drivers = sorted({module for module, _, _ in imports} - INFRASTRUCTURE)
    if len(drivers) != 1 or (expected and drivers != [expected]):
        return problems + [f"imports drivers {drivers}, expected exactly one" + (f": {expected}" if expected else "")]
    driver, names = drivers[0], public_names(drivers[0])
    problems += [f"{name} is not in {driver}.__all__" for module, name, _ in imports
                 if module == driver and name is not None and name not in names]
    local_names = {local for module, name, local in imports if module == driver and name is None}
    used = {node.attr for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id in local_names}
    return problems + [f"{driver}.{name} is not in its __all__" for name in sorted(used - names)]


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
    """{notebook stem: its driver module}, from the table in the README's Layout section."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    out = {}
    for stems, module in re.findall(r"^\| ((?:`\d\d_\w+`(?:, )?)+) \| `(orca_utils(?:\.\w+)+)`", section, re.M):
        out.update({stem: module for stem in re.findall(r"`(\d\d_\w+)`", stems)})
    return out


def test_the_readme_names_each_notebooks_module_and_the_notebook_uses_it():
    modules = layout_modules()
    assert set(modules) == set(NOTEBOOK_SCHEMAS), set(NOTEBOOK_SCHEMAS) ^ set(modules)
    for stem, module in modules.items():
        assert _is_module(module), (stem, module)
        code = "\n".join(src for _, src in code_cells(NOTEBOOKS_DIR / f"{stem}.ipynb"))
        drivers = {m for m, _, _ in orca_imports(code)} - INFRASTRUCTURE
        assert drivers == {module}, (stem, module, drivers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_one_driver_and_calls_only_its_public_names(path):
    code = "\n".join(src for _, src in code_cells(path))
    problems = driver_problems(code, layout_modules().get(path.stem))
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_agieval_and_bbh_notebooks_differ_only_in_the_benchmark():
    def normalized(stem: str, benchmark: str) -> list[str]:
        return [re.sub(benchmark, "<benchmark>", src.replace(stem, "<notebook>"), flags=re.I)
                for _, src in code_cells(NOTEBOOKS_DIR / f"{stem}.ipynb")]
    agieval, bbh = normalized("05_agieval", "agieval"), normalized("06_bbh", "bbh")
    assert len(agieval) == len(bbh)
    different = [i for i, (a, b) in enumerate(zip(agieval, bbh)) if a != b]
    assert not different, f"code cells (by position) that differ beyond the benchmark's name: {different}"


def test_the_checks_catch_what_they_are_for(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1\n"] * 12 + ["\n", "y = 2"]},
                    {"cell_type": "markdown", "source": ["text\n"] * 40},
                    {"cell_type": "code", "source": ["df = pd.read_parquet(up / 'train_stage1.parquet')"]}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert long_cells(path) == ["cell 0: 13 lines"]
    assert [m.group(0) for _, src in code_cells(path) for m in FILE_READS.finditer(src)] == ["read_parquet("]
    two = ("from orca_utils.runs import setup_notebook\nfrom orca_utils.evaluation import zero_shot as zs\n"
           "from orca_utils import judge\nzs.no_such_name(1)\n")
    assert driver_problems(two) == ["alias 'zs' for orca_utils.evaluation.zero_shot is shorter than 3 characters",
                                    "imports drivers ['orca_utils.evaluation.zero_shot', 'orca_utils.judge'], "
                                    "expected exactly one"]
    one = "from orca_utils import augmentation\nfrom orca_utils.augmentation import STAGES, _x\naugmentation.nope()\n"
    assert driver_problems(one, "orca_utils.augmentation") == ["_x is not in orca_utils.augmentation.__all__",
                                                               "orca_utils.augmentation.nope is not in its __all__"]
    assert driver_problems(one, "orca_utils.sampling")[-1].endswith("expected exactly one: orca_utils.sampling")
