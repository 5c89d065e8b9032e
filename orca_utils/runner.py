"""The pipeline runner: execute the ordered notebooks with papermill and keep a manifest of what ran.

`python -m orca_utils run --profile smoke [--only 03] [--from 02] [--params-override key=value ...]
[--reuse outputs/other_run ...]`

The whole params file is validated before the first notebook starts. Each notebook is executed into
`outputs/<profile>/<stem>/<stem>.ipynb` (papermill injects `profile`, `run_dir`, `overrides`, `reuse`); its own
cells save figures, tables and `metrics.json` beside it. A failing notebook stops the run: its error is printed, its
partial executed copy is kept, and the runner exits non-zero. `outputs/<profile>/manifest.json` records the git
commit, package versions, params hashes (`runs.notebook_hash`), seeds, the reused run folders, and per notebook
start/end/duration/status and where each upstream output it read came from (`upstream`: {notebook: {"from": "this
run" or a reused run folder, "params_hash"}}).

`--reuse DIR`: upstream outputs this run lacks are read from DIR (another run's folder, e.g. `outputs/smoke`) when
they were computed from the same params, without copying: an ablation profile that `extends: smoke` and changes only
07's judge runs `--only 07 --reuse outputs/smoke`.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .config import load_profile, profile_chain, profile_path
from .contracts import RUN_INFO_FILE
from .paths import NOTEBOOKS_DIR, REPO_ROOT
from .runs import notebook_hash, profile_root, reuse_roots, versions

__all__ = ["NotebookFailed", "discover_notebooks", "select_notebooks", "kernel_options", "run_pipeline",
           "reuse_folders"]


class NotebookFailed(RuntimeError):
    def __init__(self, stem: str, output: Path, detail: str):
        super().__init__(f"notebook {stem} failed (partial output kept at {output}):\n{detail}")
        self.stem, self.output, self.detail = stem, output, detail


def discover_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """`NN_*.ipynb` in order."""
    found = sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {notebooks_dir}")
    return found


def select_notebooks(notebooks: list[Path], only: list[str] | None = None, start: str | None = None) -> list[Path]:
    """`only`: numbers or stems ("03", "03_packing"); `start`: run from this one to the end."""
    def matches(path: Path, key: str) -> bool:
        return path.stem == key or path.stem.split("_", 1)[0] == key.zfill(2)

    if only:
        picked = [p for p in notebooks if any(matches(p, k) for k in only)]
        unknown = [k for k in only if not any(matches(p, k) for p in notebooks)]
        if unknown:
            raise ValueError(f"--only {unknown}: no such notebook; have {[p.stem for p in notebooks]}")
        return picked
    if start:
        idx = next((i for i, p in enumerate(notebooks) if matches(p, start)), None)
        if idx is None:
            raise ValueError(f"--from {start!r}: no such notebook; have {[p.stem for p in notebooks]}")
        return notebooks[idx:]
    return notebooks


def _git_commit() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:
            return ""
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain"))}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _load_manifest(path: Path) -> dict:
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    return {"notebooks": {}}


def _write_manifest(path: Path, manifest: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False))
    tmp.replace(path)


def _error_detail(exc: Exception) -> str:
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    tb = getattr(exc, "traceback", None)
    lines = [f"{ename}: {evalue}"]
    if tb:
        import re

        clean = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in tb]
        lines = clean[-12:] if len("\n".join(clean)) < 6000 else clean[-4:]
    return "\n".join(lines)


def reuse_folders(reuse: list[str] | None) -> list[Path]:
    """`--reuse` folders as absolute paths (relative ones from the current directory); ValueError for one that is
    no folder."""
    out = []
    for item in reuse or []:
        path = Path(item).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"--reuse {item}: no such run folder (expected a run's outputs folder, e.g. "
                             f"outputs/smoke)")
        out.append(path)
    return out


def _upstream_record(out_dir: Path) -> dict:
    """Where the notebook's upstream outputs came from, as its `run_info.json` recorded it ({} when it has none)."""
    try:
        return json.loads((out_dir / RUN_INFO_FILE).read_text()).get("upstream") or {}
    except (OSError, json.JSONDecodeError):
        return {}


def kernel_options() -> dict:
    """Keyword arguments for `papermill.execute_notebook` that start the kernel with CurveZMQ keys.

    ipykernel >= 7 warns at every start ("Kernel is running over TCP without encryption ...") unless the kernel
    manager provisions CurveZMQ keys, which jupyter_client >= 8.10 does with `transport_encryption="auto"` when
    the kernelspec declares `supported_encryption: curve` (ipykernel's does). The kernel still runs on loopback
    TCP; its traffic is encrypted and the warning is gone. Older jupyter_client, or a libzmq without Curve: no
    options (the kernel starts as before and may print the warning).
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if not zmq.has("curve") or not KernelManager.class_traits().get("transport_encryption"):
        return {}
    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def run_pipeline(profile: str, only: list[str] | None = None, start: str | None = None,
                 overrides: list[str] | None = None, run_dir: str | None = None,
                 notebooks_dir: Path | None = None, kernel_name: str = "python3",
                 reuse: list[str] | None = None, log=print) -> dict:
    """Run the selected notebooks in order; return the manifest. `reuse`: run folders whose upstream outputs this
    run may read (after its own). Raises ConfigError, NotebookFailed, ValueError (a `reuse` folder missing)."""
    import papermill as pm

    cfgs = load_profile(profile, overrides=overrides)            # fails before any work starts
    reused = reuse_folders(reuse or [str(p) for p in reuse_roots()])     # none given: $ORCA_REUSE
    params_file = profile_path(profile)
    notebooks = select_notebooks(discover_notebooks(notebooks_dir or NOTEBOOKS_DIR), only, start)
    root = profile_root(next(iter(cfgs.values())), run_dir)
    manifest_path = root / "manifest.json"
    manifest = _load_manifest(manifest_path)
    manifest.update(
        profile=profile, extends=profile_chain(profile)[1:],
        params_file=str(params_file.relative_to(REPO_ROOT)) if params_file.is_relative_to(REPO_ROOT)
        else str(params_file), params_sha256=hashlib.sha256(params_file.read_bytes()).hexdigest(),
        overrides=list(overrides or []), reuse=[str(p) for p in reused], git=_git_commit(), versions=versions(),
        python=sys.executable and sys.version.split()[0], run_started=_now(), run_finished=None, status="running",
    )
    _write_manifest(manifest_path, manifest)
    joined_overrides = ";".join(overrides or [])
    joined_reuse = os.pathsep.join(str(p) for p in reused)
    total = len(notebooks)
    run_t0 = time.time()
    for i, nb in enumerate(notebooks, 1):
        stem = nb.stem
        cfg = cfgs.get(stem)
        out_dir = root / stem
        out_dir.mkdir(parents=True, exist_ok=True)
        output = out_dir / f"{stem}.ipynb"
        entry = {"notebook": stem, "status": "running", "started": _now(), "finished": None,
                 "duration_s": None, "params_hash": notebook_hash(stem, cfgs) if cfg else None,
                 "seed": cfg.seed if cfg else None, "output": str(output.relative_to(root))}
        manifest["notebooks"][stem] = entry
        _write_manifest(manifest_path, manifest)
        log(f"[{i}/{total}] {stem} ... (elapsed {time.time() - run_t0:.0f}s)", flush=True)
        t0 = time.time()
        try:
            pm.execute_notebook(str(nb), str(output), parameters={"profile": profile, "run_dir": str(root),
                                                                  "overrides": joined_overrides,
                                                                  "reuse": joined_reuse},
                                kernel_name=kernel_name, cwd=str(nb.parent), progress_bar=False,
                                log_output=False, request_save_on_cell_execute=True, **kernel_options())
        except Exception as exc:
            entry.update(status="failed", finished=_now(), duration_s=round(time.time() - t0, 2),
                         error=_error_detail(exc).splitlines()[-1][:500], upstream=_upstream_record(out_dir))
            manifest.update(status="failed", run_finished=_now())
            _write_manifest(manifest_path, manifest)
            log(f"[{i}/{total}] {stem} FAILED after {time.time() - t0:.1f}s")
            raise NotebookFailed(stem, output, _error_detail(exc)) from None
        entry.update(status="ok", finished=_now(), duration_s=round(time.time() - t0, 2),
                     upstream=_upstream_record(out_dir))
        _write_manifest(manifest_path, manifest)
        log(f"[{i}/{total}] {stem} ok in {time.time() - t0:.1f}s")
    manifest.update(status="ok", run_finished=_now(), duration_s=round(time.time() - run_t0, 2))
    _write_manifest(manifest_path, manifest)
    log(f"done: {total} notebook(s) in {time.time() - run_t0:.0f}s; manifest {manifest_path}")
    return manifest
