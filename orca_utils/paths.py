"""Where things live: the checkout's folders, resolved from this package's location (never from the CWD).

Notebooks run with `notebooks/` as their working directory (papermill and JupyterLab both), so every path the
project needs is derived here from the package, and can be moved by a param or an environment variable.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
OUTPUTS_DIR = REPO_ROOT / "outputs"
SHARED_DIR = REPO_ROOT.parent / "shared"


def cache_dir() -> Path:
    """Where converted models and other derived, re-creatable files go (`$ORCA_CACHE_DIR` or ~/.cache)."""
    root = os.environ.get("ORCA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "orca_notebooks"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
