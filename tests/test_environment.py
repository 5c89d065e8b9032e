"""environment.yml mirrors pyproject.toml (the single source of dependencies)."""
from __future__ import annotations

import re
import tomllib

import yaml

from orca_utils.paths import REPO_ROOT


def _norm(spec: str) -> str:
    name, rest = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", spec).groups()
    return re.sub(r"[-_.]+", "-", name.lower()) + rest.replace(" ", "")


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(s) for s in project["dependencies"]}
    for name, extra in project.get("optional-dependencies", {}).items():
        if name != "gpu":           # GPU-only (vLLM brings its own CUDA torch): not in the CPU environment file
            wanted |= {_norm(s) for s in extra}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1
    have = {_norm(s) for s in pip_lists[0]}
    assert have == wanted, (f"only in pyproject: {sorted(wanted - have)}; "
                            f"only in environment.yml: {sorted(have - wanted)}")
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.startswith("python=3.1")
