"""Output folders of a run: `outputs/<profile>/<notebook>/` with figures, tables and `metrics.json`.

`setup_notebook` is the one call a notebook's setup cell makes: it loads and validates the params, seeds every
RNG, opens the notebook's output folder and prints the versions. The `Run` it returns saves figures (PNG + PDF),
tables (CSV + Markdown) and metrics, each stamped with its provenance (which model, teacher and data produced it),
and finds upstream notebooks' outputs, refusing stale ones (computed from other params).

Outputs are keyed by what produced them: `notebook_hash` covers a notebook's own params (`config.params_hash`,
which leaves out the profile's name and paths) and the keys of the notebooks it reads (`contracts.UPSTREAM`).
So a profile that `extends:` another and changes only 07's judge computes 01-06 alike, and its 07 can read them
from the other run's folder (`reuse`: `--reuse outputs/smoke`, the notebooks' `reuse` parameter, or the
`ORCA_REUSE` environment variable, folders separated by `os.pathsep`) without copying; a changed 04 param changes
the key 05 expects of 04, and 05 stops with one line naming the notebook to rerun.
"""
from __future__ import annotations

import json
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import load_profile, params_hash
from .contracts import METRICS_FILE, RUN_INFO_FILE, SOURCES_FIELD, UPSTREAM, check_sources
from .paths import REPO_ROOT
from .schemas import NOTEBOOK_SCHEMAS, CommonParams

__all__ = ["Run", "UpstreamError", "setup_notebook", "seed_everything", "profile_root", "notebook_hash",
           "reuse_roots", "REUSE_ENV", "OWN_RUN"]

RUN_INFO = RUN_INFO_FILE
REUSE_ENV = "ORCA_REUSE"        # run folders to read upstream outputs from, separated by os.pathsep
OWN_RUN = "this run"            # where an upstream came from, in run_info.json and the manifest, when not reused


class UpstreamError(RuntimeError):
    """An upstream notebook's outputs are missing or were computed from other params."""


def profile_root(cfg: CommonParams, run_dir: str | os.PathLike | None = None) -> Path:
    """`outputs/<profile>` (or the explicit run_dir)."""
    if run_dir:
        return Path(run_dir).expanduser().resolve()
    base = Path(cfg.output_dir).expanduser()
    if not base.is_absolute():
        base = REPO_ROOT / base
    return base / cfg.profile


def notebook_hash(notebook: str, cfgs: dict[str, CommonParams]) -> str:
    """The key of a notebook's outputs: its own params (`config.params_hash`) and the keys of the notebooks it
    reads (`contracts.UPSTREAM`, recursively), so a changed 01 param changes what 05 expects of 04."""
    import hashlib

    if notebook not in cfgs:
        raise UpstreamError(f"notebook {notebook!r}: no params for it (expected one of {list(cfgs)})")
    parts = [params_hash(cfgs[notebook])]
    parts += [f"{up}={notebook_hash(up, cfgs)}" for up in UPSTREAM.get(notebook, ())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def reuse_roots(reuse: str | os.PathLike | list | tuple | None = None) -> tuple[Path, ...]:
    """Run folders to read upstream outputs from: `reuse` (folders, or one string of them separated by os.pathsep),
    else the ORCA_REUSE environment variable; relative paths from the current directory, like `run_dir`."""
    if reuse is None or reuse == "" or reuse == [] or reuse == ():
        reuse = os.environ.get(REUSE_ENV, "")
    items = str(reuse).split(os.pathsep) if isinstance(reuse, (str, os.PathLike)) else [str(r) for r in reuse]
    return tuple(Path(r).expanduser().resolve() for r in items if r.strip())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def _json_default(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


@dataclass
class Run:
    notebook: str
    cfg: CommonParams
    root: Path                            # outputs/<profile>
    all_cfgs: dict[str, CommonParams] = field(repr=False, default_factory=dict)
    started: float = field(default_factory=time.time)
    # run folders searched for upstream outputs after `root` (default: the ORCA_REUSE environment variable, so the
    # processes a notebook launches, e.g. 04's `accelerate launch`, see the same folders)
    reuse: tuple[Path, ...] = field(default_factory=reuse_roots)
    # what `upstream` resolved: {notebook: {"from": OWN_RUN or a reused run folder, "params_hash": ...}}
    upstream_sources: dict[str, dict] = field(default_factory=dict)
    _status: str | None = field(default=None, init=False, repr=False)   # run_info.json's status, once this Run wrote it

    @property
    def dir(self) -> Path:
        return self.root / self.notebook

    @property
    def params_hash(self) -> str:
        """The key of this notebook's outputs (`notebook_hash`; the own params' hash when built without the
        profile's other blocks)."""
        if self.notebook in self.all_cfgs:
            return notebook_hash(self.notebook, self.all_cfgs)
        return params_hash(self.cfg)

    def path(self, name: str) -> Path:
        """A file in this notebook's output folder."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / name

    def save_fig(self, fig, name: str, provenance: str) -> list[Path]:
        """Save `fig` as `<name>.png` and `.pdf` (returned), with `provenance` (model, teacher, data) printed under
        it; a vector `<name>.svg` is written beside them for the report (notebook 10 embeds it in report.pdf)."""
        if not name.startswith("fig_"):
            name = f"fig_{name}"
        # Under everything already drawn (tick labels and x labels reach below the axes), so it never overlaps.
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        fig.text(max(0.0, box.x0 / fig.get_figwidth()), box.y0 / fig.get_figheight() - 0.01, provenance,
                 fontsize=7, color="0.35", ha="left", va="top", wrap=True)
        out = []
        for ext in ("png", "pdf"):
            target = self.path(f"{name}.{ext}")
            fig.savefig(target, dpi=150 if ext == "png" else None, bbox_inches="tight")
            out.append(target)
        fig.savefig(self.path(f"{name}.svg"), bbox_inches="tight")
        return out

    def save_table(self, df, name: str, provenance: str, index: bool = False) -> list[Path]:
        """Save a DataFrame as `<name>.csv` and `<name>.md`; the Markdown carries the provenance line."""
        if not name.startswith("tab_"):
            name = f"tab_{name}"
        csv_path, md_path = self.path(f"{name}.csv"), self.path(f"{name}.md")
        df.to_csv(csv_path, index=index)
        md_path.write_text(df.to_markdown(index=index) + f"\n\n_{provenance}_\n")
        return [csv_path, md_path]

    def save_metrics(self, metrics: dict[str, Any], provenance: dict[str, str] | None = None,
                     sources: list[dict] | None = None) -> Path:
        """Merge `metrics` (slash-path keys, e.g. `agieval/lsat_ar/accuracy`) into `metrics.json`, with what this
        execution of the notebook saved before (a file left by an earlier execution is replaced, so a rerun in a
        used folder never keeps keys the new run no longer writes). `sources` (or the `.sources` of a
        `provenance.Provenance`, as `summary_metrics` returns it): the structured provenance, {"role", "name",
        "kind"} per model, teacher, judge or data source, written as `metrics.json`'s `sources` (replacing any saved
        before; checked by `contracts.check_sources`)."""
        target = self.path(METRICS_FILE)
        current = json.loads(target.read_text()) if target.exists() else {}
        if current.get("run_started") != self.started:
            current = {}
        current.setdefault("metrics", {}).update(metrics)
        if provenance:
            current.setdefault("provenance", {}).update(provenance)
        if sources is None:
            sources = getattr(provenance, "sources", None)
        if sources is not None:
            current[SOURCES_FIELD] = check_sources(list(sources), target)
        current.update(notebook=self.notebook, profile=self.cfg.profile, params_hash=self.params_hash,
                       run_started=self.started)
        target.write_text(json.dumps(current, indent=2, sort_keys=True, default=_json_default))
        self._write_info(status="ok")
        return target

    def _write_info(self, status: str) -> None:
        info = {"notebook": self.notebook, "profile": self.cfg.profile, "params_hash": self.params_hash,
                "status": status, "started": self.started, "updated": time.time(), "seed": self.cfg.seed,
                "upstream": self.upstream_sources}
        self.path(RUN_INFO).write_text(json.dumps(info, indent=2))
        self._status = status

    def upstream(self, notebook: str, required: bool = True) -> Path | None:
        """The output folder of an earlier notebook, if it was computed from the current params.

        Looks in this run's folder first, then in the `reuse` folders, and takes the first whose `run_info.json`
        finished (`ok`) with the key this run expects (`notebook_hash`). Raises UpstreamError when `notebook` is
        not an upstream of this one in `contracts.UPSTREAM`, when it is missing (and `required`), or when every
        copy found is stale or unfinished; returns None when missing and optional.
        """
        if notebook not in NOTEBOOK_SCHEMAS:
            raise UpstreamError(f"unknown notebook {notebook!r}")
        if notebook not in UPSTREAM.get(self.notebook, (notebook,)):
            raise UpstreamError(f"{self.notebook} reads {notebook}'s outputs but contracts.UPSTREAM does not list "
                                f"{notebook} as its upstream: add it there (the keys of its outputs depend on it)")
        rerun = f"python -m orca_utils run --profile {self.cfg.profile} --only {notebook[:2]}"
        expected = notebook_hash(notebook, self.all_cfgs) if notebook in self.all_cfgs else None
        found: list[tuple[Path, dict]] = []
        for root in dict.fromkeys((self.root, *self.reuse)):
            info_path = root / notebook / RUN_INFO
            if not info_path.exists():
                continue
            info = json.loads(info_path.read_text())
            if info.get("status") == "ok" and (expected is None or info.get("params_hash") == expected):
                self.upstream_sources[notebook] = {"from": OWN_RUN if root == self.root else str(root),
                                                   "params_hash": info.get("params_hash")}
                if self._status:          # the notebook's own Run (not a launched rank's): record it at once
                    self._write_info(self._status)
                return root / notebook
            found.append((root / notebook, info))
        if not found:
            if not required:
                return None
            also = f" (nor in {', '.join(str(r) for r in self.reuse)})" if self.reuse else ""
            raise UpstreamError(f"{notebook} has no outputs under {self.root / notebook}{also}: run it first "
                                f"({rerun})")
        folder, info = found[0]
        if expected is not None and info.get("params_hash") != expected:
            raise UpstreamError(f"{notebook}'s outputs under {folder} were computed from other params "
                                f"(hash {info.get('params_hash')} != {expected}): rerun it ({rerun})")
        raise UpstreamError(f"{notebook}'s last run under {folder} did not finish (status {info.get('status')!r}): "
                            f"{rerun}")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("orca-notebooks", "torch", "transformers", "accelerate", "datasets", "trl", "openai", "papermill"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def setup_notebook(notebook: str, profile: str = "smoke", run_dir: str | None = None,
                   overrides: str | None = None, quiet: bool = False,
                   reuse: str | list[str] | None = None) -> tuple[CommonParams, Run]:
    """Validate params, seed, open `outputs/<profile>/<notebook>/`. Returns (cfg, run).

    `reuse`: run folders to read upstream outputs from after this run's own (os.pathsep-separated, or a list);
    empty: the ORCA_REUSE environment variable. Given, it is also exported as ORCA_REUSE (absolute paths), for the
    processes the notebook starts."""
    all_cfgs = load_profile(profile, overrides=overrides)
    cfg = all_cfgs[notebook]
    if cfg.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    seed_everything(cfg.seed)
    roots = reuse_roots(reuse)
    if reuse:
        os.environ[REUSE_ENV] = os.pathsep.join(str(r) for r in roots)
    run = Run(notebook=notebook, cfg=cfg, root=profile_root(cfg, run_dir), all_cfgs=all_cfgs, reuse=roots)
    run.dir.mkdir(parents=True, exist_ok=True)
    run._write_info(status="running")
    if not quiet:
        print(f"{notebook} | profile {profile} | params {run.params_hash} | outputs {run.dir}")
        if roots:
            print(f"upstream outputs: this run's, then {', '.join(str(r) for r in roots)}")
        print(" | ".join(f"{k} {v}" for k, v in versions().items()))
    return cfg, run
