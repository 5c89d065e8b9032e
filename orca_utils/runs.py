"""Output folders of a run: `outputs/<profile>/<notebook>/` with figures, tables and `metrics.json`.

`setup_notebook` is the one call a notebook's setup cell makes: it loads and validates the params, seeds every
RNG, opens the notebook's output folder and prints the versions. The `Run` it returns saves figures (PNG + PDF),
tables (CSV + Markdown) and metrics, each stamped with its provenance (which model, teacher and data produced it),
and finds upstream notebooks' outputs, refusing stale ones (computed from other params).
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
from .contracts import METRICS_FILE, RUN_INFO_FILE, SOURCES_FIELD, check_sources
from .paths import REPO_ROOT
from .schemas import NOTEBOOK_SCHEMAS, CommonParams

__all__ = ["Run", "UpstreamError", "setup_notebook", "seed_everything", "profile_root"]

RUN_INFO = RUN_INFO_FILE


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

    @property
    def dir(self) -> Path:
        return self.root / self.notebook

    @property
    def params_hash(self) -> str:
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
        """Merge `metrics` (slash-path keys, e.g. `agieval/lsat_ar/accuracy`) into `metrics.json`. `sources` (or
        the `.sources` of a `provenance.Provenance`, as `summary_metrics` returns it): the structured provenance,
        {"role", "name", "kind"} per model, teacher, judge or data source, written as `metrics.json`'s `sources`
        (replacing any saved before; checked by `contracts.check_sources`)."""
        target = self.path(METRICS_FILE)
        current = json.loads(target.read_text()) if target.exists() else {}
        current.setdefault("metrics", {}).update(metrics)
        if provenance:
            current.setdefault("provenance", {}).update(provenance)
        if sources is None:
            sources = getattr(provenance, "sources", None)
        if sources is not None:
            current[SOURCES_FIELD] = check_sources(list(sources), target)
        current.update(notebook=self.notebook, profile=self.cfg.profile, params_hash=self.params_hash)
        target.write_text(json.dumps(current, indent=2, sort_keys=True, default=_json_default))
        self._write_info(status="ok")
        return target

    def _write_info(self, status: str) -> None:
        info = {"notebook": self.notebook, "profile": self.cfg.profile, "params_hash": self.params_hash,
                "status": status, "started": self.started, "updated": time.time(), "seed": self.cfg.seed}
        self.path(RUN_INFO).write_text(json.dumps(info, indent=2))

    def upstream(self, notebook: str, required: bool = True) -> Path | None:
        """The output folder of an earlier notebook, if it was computed from the current params.

        Raises UpstreamError when it is missing (and `required`) or stale; returns None when missing and optional.
        """
        if notebook not in NOTEBOOK_SCHEMAS:
            raise UpstreamError(f"unknown notebook {notebook!r}")
        folder = self.root / notebook
        info_path = folder / RUN_INFO
        rerun = f"python -m orca_utils run --profile {self.cfg.profile} --only {notebook[:2]}"
        if not info_path.exists():
            if not required:
                return None
            raise UpstreamError(f"{notebook} has no outputs under {folder}: run it first ({rerun})")
        info = json.loads(info_path.read_text())
        expected = params_hash(self.all_cfgs[notebook]) if notebook in self.all_cfgs else info["params_hash"]
        if info.get("params_hash") != expected:
            raise UpstreamError(f"{notebook}'s outputs under {folder} were computed from other params "
                                f"(hash {info.get('params_hash')} != {expected}): rerun it ({rerun})")
        if info.get("status") != "ok":
            raise UpstreamError(f"{notebook}'s last run did not finish (status {info.get('status')!r}): {rerun}")
        return folder


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
                   overrides: str | None = None, quiet: bool = False) -> tuple[CommonParams, Run]:
    """Validate params, seed, open `outputs/<profile>/<notebook>/`. Returns (cfg, run)."""
    all_cfgs = load_profile(profile, overrides=overrides)
    cfg = all_cfgs[notebook]
    if cfg.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    seed_everything(cfg.seed)
    run = Run(notebook=notebook, cfg=cfg, root=profile_root(cfg, run_dir), all_cfgs=all_cfgs)
    run.dir.mkdir(parents=True, exist_ok=True)
    run._write_info(status="running")
    if not quiet:
        print(f"{notebook} | profile {profile} | params {run.params_hash} | outputs {run.dir}")
        print(" | ".join(f"{k} {v}" for k, v in versions().items()))
    return cfg, run
