"""The data root: where every dataset is read from, and one error that says everything that was tried.

Resolution order for a dataset `name` (a folder name under the data root, e.g. `bbh`, `agieval`, `niv2`):
1. the `data_dir` param (explicit), 2. `$ORCA_DATA_DIR`, 3. `../shared/data` beside the checkout,
4. the Hugging Face hub (downloaded into the usual HF cache) when the dataset has a hub source and we are online.
The first root that holds `<root>/<name>` wins. Local files are never copied into the repository.
Loaders of each dataset (in their own modules) accept both the local layout and the hub snapshot's layout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .paths import SHARED_DIR

__all__ = ["DATASETS", "DatasetNotFoundError", "DatasetLocation", "candidate_roots", "resolve_data_root",
           "resolve_dataset"]


@dataclass(frozen=True)
class DatasetSource:
    local: str                      # folder under the data root
    hub_id: str | None = None       # dataset repo on the hub holding the same data (its own layout)
    hub_patterns: tuple[str, ...] | None = None  # allow_patterns for snapshot_download


# Hub ids are the public copies of the same data; loaders know each layout.
DATASETS: dict[str, DatasetSource] = {
    "bbh": DatasetSource("bbh", "lukaemon/bbh"),
    "agieval": DatasetSource("agieval", "baber/agieval"),
    "truthfulqa": DatasetSource("truthfulqa", "truthfulqa/truthful_qa"),
    "toxigen": DatasetSource("toxigen", "skg/toxigen-data"),
    "vicuna_bench": DatasetSource("vicuna_bench", None),
    "mt_bench": DatasetSource("mt_bench", "HuggingFaceH4/mt_bench_prompts"),
    "fastchat_judge": DatasetSource("fastchat_judge", None),
    "wizardlm": DatasetSource("wizardlm", None),
    "awesome_prompts": DatasetSource("awesome_prompts", "fka/awesome-chatgpt-prompts"),
    "flan_cot": DatasetSource("flan_cot", "conceptofmind/cot_submix_original"),
    "flan": DatasetSource("flan", None),
    "niv2": DatasetSource("niv2", "conceptofmind/niv2_submix_original"),
}


class DatasetNotFoundError(FileNotFoundError):
    """Raised with every path and hub id that was tried."""


@dataclass(frozen=True)
class DatasetLocation:
    name: str
    path: Path
    origin: str   # "data_dir param" | "$ORCA_DATA_DIR" | "../shared/data" | "hub:<id>"

    @property
    def from_hub(self) -> bool:
        return self.origin.startswith("hub:")


def candidate_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path | None]]:
    """The local roots in resolution order, as (label, path or None when unset)."""
    env = os.environ.get("ORCA_DATA_DIR")
    return [
        ("data_dir param", Path(data_dir).expanduser() if data_dir else None),
        ("$ORCA_DATA_DIR", Path(env).expanduser() if env else None),
        ("../shared/data", SHARED_DIR / "data"),
    ]


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first local root that exists, or None (then datasets come from the hub)."""
    for _, root in candidate_roots(data_dir):
        if root is not None and root.is_dir():
            return root
    return None


def _hub_offline(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def resolve_dataset(name: str, data_dir: str | os.PathLike | None = None, offline: bool = False) -> DatasetLocation:
    """Where dataset `name` is read from. Raises DatasetNotFoundError naming each path and hub id tried."""
    source = DATASETS.get(name, DatasetSource(name))
    tried = []
    for label, root in candidate_roots(data_dir):
        if root is None:
            tried.append(f"{label} (unset)")
            continue
        path = root / source.local
        if path.exists():
            return DatasetLocation(name, path, label)
        tried.append(f"{label}: {path} (missing)")
    if source.hub_id is None:
        tried.append("hub: no hub source for this dataset")
    elif _hub_offline(offline):
        tried.append(f"hub: {source.hub_id} (skipped: offline)")
    else:
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(source.hub_id, repo_type="dataset",
                                     allow_patterns=list(source.hub_patterns) if source.hub_patterns else None)
            return DatasetLocation(name, Path(path), f"hub:{source.hub_id}")
        except Exception as exc:  # network, auth, missing repo: all reported the same way
            tried.append(f"hub: {source.hub_id} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})")
    raise DatasetNotFoundError(f"dataset {name!r} not found. Tried: " + "; ".join(tried))


def resolve_shared(relative: str) -> Path:
    """A file or folder of what we provide beside the checkout (`../shared/<relative>`, or `$ORCA_SHARED_DIR`)."""
    root = Path(os.environ.get("ORCA_SHARED_DIR") or SHARED_DIR)
    path = root / relative
    if not path.exists():
        raise DatasetNotFoundError(f"{relative!r} not found under the shared folder {root} "
                                   f"(set $ORCA_SHARED_DIR to move it)")
    return path
