"""The data root: where every dataset is read from, and one error that says everything that was tried.

Resolution order for a dataset `name` (a folder name under the data root, e.g. `bbh`, `agieval`, `niv2`):
1. the `data_dir` param (explicit), 2. `$ORCA_DATA_DIR`, 3. `../shared/data` beside the checkout,
4. the dataset's pinned GitHub files (`GitHubSource`: repository, commit, file paths), downloaded once from
   `https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>` (`$ORCA_GITHUB_RAW_BASE` moves it) into
   `<cache>/data/<name>@<commit7>/` (`orca_utils.paths.cache_dir`: `$ORCA_CACHE_DIR` or ~/.cache/orca_notebooks),
   under the same file names as the local folder, so every loader reads the download as it reads the local copy,
5. the Hugging Face hub (downloaded into the usual HF cache) when the dataset has a hub source.
The first root that holds `<root>/<name>` wins. Local files are never copied into the repository. Steps 4 and 5 are
skipped when offline (`offline=True` or `$HF_HUB_OFFLINE`), except that a complete earlier download is still used.
The pins are the ones listed in `../shared/data/SOURCES.md`: the local folders are byte copies of those files.
Loaders of each dataset accept both the local layout and the hub snapshot's layout (the evaluation sets BBH,
AGIEval and TruthfulQA: `orca_utils.evaluation.sets`).

`seeded_subset` is the one fixed random subset (a DataFrame's rows or a list's items), used wherever a seed picks
"n of these".
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .paths import SHARED_DIR, cache_dir

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DATASETS", "DatasetNotFoundError", "DatasetLocation", "DatasetSource", "GitHubSource",
           "candidate_roots", "resolve_data_root", "resolve_dataset", "github_cache_dir", "download_github",
           "resolve_shared", "seeded_subset"]

GITHUB_RAW_BASE = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class GitHubSource:
    """Files of one public repository at one commit: (path there, path inside the local dataset folder)."""

    repo: str                                   # owner/name
    commit: str                                 # full 40-hex commit
    files: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.commit[:7]}"

    def url(self, upstream: str, base: str | None = None) -> str:
        base = (base or os.environ.get("ORCA_GITHUB_RAW_BASE") or GITHUB_RAW_BASE).rstrip("/")
        return f"{base}/{self.repo}/{self.commit}/{upstream}"


@dataclass(frozen=True)
class DatasetSource:
    local: str                      # folder under the data root
    hub_id: str | None = None       # dataset repo on the hub holding the same data (its own layout)
    hub_patterns: tuple[str, ...] | None = None  # allow_patterns for snapshot_download
    github: GitHubSource | None = None           # the pinned upstream files of the local folder


def _same_names(folder: str, names: tuple[str, ...], ext: str, local_folder: str = "") -> tuple[tuple[str, str], ...]:
    """`folder/<n><ext>` upstream -> `local_folder/<n><ext>` here, for each name."""
    prefix = f"{local_folder}/" if local_folder else ""
    return tuple((f"{folder}/{n}{ext}", f"{prefix}{n}{ext}") for n in names)


BBH_TASKS = ("boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
             "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
             "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
             "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
             "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
             "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
             "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
             "word_sorting")
# AGIEval v1's English tasks and math (cloze); the Chinese tasks are not used.
AGIEVAL_FILES = ("aqua-rat", "logiqa-en", "lsat-ar", "lsat-lr", "lsat-rc", "math", "sat-en", "sat-en-without-passage",
                 "sat-math")
_TOXIGEN_GROUPS = ("asian", "bisexual", "black", "chinese", "immigrant", "jewish", "latino", "lgbtq",
                   "mental_disability", "mexican", "middle_east", "muslim", "native_american", "physical_disability",
                   "trans", "women")
# 16 hate files and 15 neutral ones: upstream has no neutral file for `trans`.
TOXIGEN_FILES = tuple(f"hate_{g}_1k" for g in _TOXIGEN_GROUPS) + \
    tuple(f"neutral_{g}_1k" for g in _TOXIGEN_GROUPS if g != "trans")
FLAN_COT_SOURCES = ("aqua", "creak", "ecqa", "gsm8k", "qasc", "sensemaking", "strategyqa")

_FASTCHAT = ("lm-sys/FastChat", "0e6d3e4beaab66f4d3f93db72541a4abab8af28d")
_FLAN = ("google-research/FLAN", "e9e4ec6e2701182c7a91af176f705310da541277")
_FASTCHAT_DATA = "fastchat/llm_judge/data"

GITHUB_SOURCES: dict[str, GitHubSource] = {
    "bbh": GitHubSource("suzgunmirac/BIG-Bench-Hard", "9ee07bd481feebf959a6b59d61ea57bdcf30964d",
                        _same_names("bbh", BBH_TASKS, ".json")
                        + _same_names("cot-prompts", BBH_TASKS, ".txt", "cot-prompts")),
    "agieval": GitHubSource("ruixiangcui/AGIEval", "5c77d073fda993f1652eaae3cf5d04cc5fd21d40",
                            _same_names("data/v1", AGIEVAL_FILES, ".jsonl")),
    # TruthfulQA.csv of sylinrl/TruthfulQA, as copied in this repository at this commit.
    "truthfulqa": GitHubSource("benedictflorance/truthfulqa_experiments", "6fdfd38288e86296582a584694df5cf43d1f634a",
                               (("datasets/TruthfulQA.csv", "TruthfulQA.csv"),)),
    "toxigen": GitHubSource("microsoft/TOXIGEN", "01517e814639e0334c920a3c502036c8158aac87",
                            _same_names("prompts", TOXIGEN_FILES, ".txt", "prompts")),
    "vicuna_bench": GitHubSource(*_FASTCHAT, (
        (f"{_FASTCHAT_DATA}/vicuna_bench/question.jsonl", "question.jsonl"),
        (f"{_FASTCHAT_DATA}/vicuna_bench/reference_answer/gpt-4.jsonl", "reference_answer_gpt-4.jsonl"))),
    "mt_bench": GitHubSource(*_FASTCHAT, ((f"{_FASTCHAT_DATA}/mt_bench/question.jsonl", "question.jsonl"),)),
    "fastchat_judge": GitHubSource(*_FASTCHAT, ((f"{_FASTCHAT_DATA}/judge_prompts.jsonl", "judge_prompts.jsonl"),)),
    "wizardlm": GitHubSource("nlpxucan/WizardLM", "cd4b4cc022b6426aee62d51f7ae99a4a6ec9aaef",
                             (("WizardLM/data/WizardLM_testset.jsonl", "WizardLM_testset.jsonl"),)),
    # The 2023-02-27 snapshot of f/awesome-chatgpt-prompts (152 prompts), kept in this fork.
    "awesome_prompts": GitHubSource("07/awesome-chatgpt-prompts", "21b5ce99beb752dc0b088b60cdff18de4f9ee497",
                                    (("prompts.csv", "prompts.csv"),)),
    "flan_cot": GitHubSource(*_FLAN, _same_names("flan/v2/cot_data", tuple(f"{s}_train" for s in FLAN_COT_SOURCES),
                                                 ".tsv")),
    "flan": GitHubSource(*_FLAN, (("flan/v2/flan_collection_info.csv", "flan_collection_info.csv"),)),
}

# Hub ids are the public copies of the same data (the last resort; loaders know each layout).
# ToxiGen has no hub source: its hub copy (toxigen/toxigen-data) is gated behind a sign-up form and stores the
# prompts as parquet (prompts/<file>-00000-of-00001.parquet), which the prompt loader does not read.
# NIv2 has no GitHub source: the local folder is a 40-task sample, each task file cut to its first 60 instances,
# of allenai/natural-instructions, whose whole task files (over 1,600, many of tens of MB) would be far more than
# the sample and would not reproduce it; the hub submix stays its only public source.
DATASETS: dict[str, DatasetSource] = {
    "bbh": DatasetSource("bbh", "lukaemon/bbh", github=GITHUB_SOURCES["bbh"]),
    "agieval": DatasetSource("agieval", "baber/agieval", github=GITHUB_SOURCES["agieval"]),
    "truthfulqa": DatasetSource("truthfulqa", "truthfulqa/truthful_qa", github=GITHUB_SOURCES["truthfulqa"]),
    "toxigen": DatasetSource("toxigen", None, github=GITHUB_SOURCES["toxigen"]),
    "vicuna_bench": DatasetSource("vicuna_bench", None, github=GITHUB_SOURCES["vicuna_bench"]),
    "mt_bench": DatasetSource("mt_bench", "HuggingFaceH4/mt_bench_prompts", github=GITHUB_SOURCES["mt_bench"]),
    "fastchat_judge": DatasetSource("fastchat_judge", None, github=GITHUB_SOURCES["fastchat_judge"]),
    "wizardlm": DatasetSource("wizardlm", None, github=GITHUB_SOURCES["wizardlm"]),
    "awesome_prompts": DatasetSource("awesome_prompts", "fka/awesome-chatgpt-prompts",
                                     github=GITHUB_SOURCES["awesome_prompts"]),
    "flan_cot": DatasetSource("flan_cot", "DataProvenanceInitiative/cot_submix_original",
                              github=GITHUB_SOURCES["flan_cot"]),
    "flan": DatasetSource("flan", None, github=GITHUB_SOURCES["flan"]),
    "niv2": DatasetSource("niv2", "DataProvenanceInitiative/niv2_submix_original"),
}


class DatasetNotFoundError(FileNotFoundError):
    """Raised with every path, URL and hub id that was tried."""


@dataclass(frozen=True)
class DatasetLocation:
    name: str
    path: Path
    origin: str   # "data_dir param" | "$ORCA_DATA_DIR" | "../shared/data" | "github:<repo>@<commit7>" | "hub:<id>"

    @property
    def from_hub(self) -> bool:
        return self.origin.startswith("hub:")

    @property
    def from_github(self) -> bool:
        return self.origin.startswith("github:")


def candidate_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path | None]]:
    """The local roots in resolution order, as (label, path or None when unset)."""
    env = os.environ.get("ORCA_DATA_DIR")
    for label, value in (("data_dir param", data_dir), ("$ORCA_DATA_DIR", env)):
        if value and not Path(value).expanduser().is_dir():
            # An explicit root that does not exist is a typo, not a reason to read another copy silently.
            raise DatasetNotFoundError(f"{label}: {value}: no such directory (unset it to use ../shared/data, the "
                                       f"pinned GitHub files or the hub)")
    return [
        ("data_dir param", Path(data_dir).expanduser() if data_dir else None),
        ("$ORCA_DATA_DIR", Path(env).expanduser() if env else None),
        ("../shared/data", SHARED_DIR / "data"),
    ]


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first local root that exists, or None (then datasets come from GitHub or the hub)."""
    for _, root in candidate_roots(data_dir):
        if root is not None and root.is_dir():
            return root
    return None


def hub_offline(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0][:160]}" if text else exc.__class__.__name__


def github_cache_dir(name: str, source: GitHubSource) -> Path:
    """Where the pinned files of dataset `name` are downloaded: `<cache>/data/<name>@<commit7>/`."""
    return cache_dir() / "data" / f"{name}@{source.commit[:7]}"


def _missing_files(folder: Path, source: GitHubSource) -> list[tuple[str, str]]:
    return [(upstream, local) for upstream, local in source.files if not (folder / local).is_file()]


def _download_file(client, url: str, target: Path) -> None:
    """One file, written to a temporary name beside `target` and renamed, so a killed download leaves no half file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise DatasetNotFoundError(f"HTTP {response.status_code} for {url}")
            for chunk in response.iter_bytes():
                handle.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_github(name: str, source: GitHubSource, timeout: float = 60.0) -> Path:
    """The dataset folder holding every pinned file, downloading those not there yet. Raises DatasetNotFoundError
    naming the URL that failed (files already complete stay for the next try)."""
    import httpx

    folder = github_cache_dir(name, source)
    missing = _missing_files(folder, source)
    if missing:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            for upstream, local in missing:
                url = source.url(upstream)
                try:
                    _download_file(client, url, folder / local)
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    raise DatasetNotFoundError(f"{_first_line(exc)} for {url}") from None
    return folder


def _from_local(name: str, source: DatasetSource, data_dir, tried: list[str]) -> DatasetLocation | None:
    for label, root in candidate_roots(data_dir):
        if root is None:
            tried.append(f"{label} (unset)")
            continue
        path = root / source.local
        if path.exists():
            return DatasetLocation(name, path, label)
        tried.append(f"{label}: {path} (missing)")
    return None


def _from_github(name: str, source: DatasetSource, offline: bool, tried: list[str]) -> DatasetLocation | None:
    gh = source.github
    if gh is None:
        tried.append("github: no pinned GitHub source for this dataset")
        return None
    origin = f"github:{gh.label}"
    folder = github_cache_dir(name, gh)
    if not _missing_files(folder, gh):
        return DatasetLocation(name, folder, origin)
    if hub_offline(offline):
        tried.append(f"github: {gh.label} (skipped: offline; nothing complete in {folder})")
        return None
    try:
        return DatasetLocation(name, download_github(name, gh), origin)
    except (DatasetNotFoundError, OSError) as exc:
        tried.append(f"github: {gh.label} ({exc})")
        return None


def _from_hub(name: str, source: DatasetSource, offline: bool, tried: list[str]) -> DatasetLocation | None:
    if source.hub_id is None:
        tried.append("hub: no hub source for this dataset")
        return None
    if hub_offline(offline):
        tried.append(f"hub: {source.hub_id} (skipped: offline)")
        return None
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(source.hub_id, repo_type="dataset",
                                 allow_patterns=list(source.hub_patterns) if source.hub_patterns else None)
        return DatasetLocation(name, Path(path), f"hub:{source.hub_id}")
    except Exception as exc:  # network, auth, missing repo: all reported the same way
        tried.append(f"hub: {source.hub_id} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})")
        return None


def resolve_dataset(name: str, data_dir: str | os.PathLike | None = None, offline: bool = False) -> DatasetLocation:
    """Where dataset `name` is read from. Raises DatasetNotFoundError naming each path, URL and hub id tried."""
    source = DATASETS.get(name, DatasetSource(name))
    tried: list[str] = []
    location = (_from_local(name, source, data_dir, tried) or _from_github(name, source, offline, tried)
                or _from_hub(name, source, offline, tried))
    if location is None:
        raise DatasetNotFoundError(f"dataset {name!r} not found. Tried: " + "; ".join(tried))
    return location


def resolve_shared(relative: str) -> Path:
    """A file or folder of what we provide beside the checkout (`../shared/<relative>`, or `$ORCA_SHARED_DIR`)."""
    root = Path(os.environ.get("ORCA_SHARED_DIR") or SHARED_DIR)
    path = root / relative
    if not path.exists():
        raise DatasetNotFoundError(f"{relative!r} not found under the shared folder {root} "
                                   f"(set $ORCA_SHARED_DIR to move it)")
    return path


T = TypeVar("T")


def seeded_subset(rows: pd.DataFrame | Sequence[T], n: int | None, seed: int) -> pd.DataFrame | list[T]:
    """A fixed random subset of `n` of `rows` (a DataFrame or a list), kept in their original order; all of them
    (a copy) when n is None or >= len(rows).

    The draw is pandas' `DataFrame.sample(n=n, random_state=seed)`: the positions numpy's legacy
    `RandomState(seed).choice(len(rows), n, replace=False)` picks, then sorted. A list and a DataFrame of the same
    length therefore give the same positions, and a DataFrame gets what `df.sample(n=n, random_state=seed)
    .sort_index()` gave whenever its index is increasing (a DataFrame keeps its index labels: reset them if needed).
    """
    import numpy as np

    frame = hasattr(rows, "iloc")
    if n is None or n >= len(rows):
        return rows.copy() if frame else list(rows)
    if n <= 0:
        raise ValueError(f"subset size must be positive or null, got {n}")
    positions = np.sort(np.random.RandomState(seed).choice(len(rows), size=n, replace=False))
    return rows.iloc[positions] if frame else [rows[int(i)] for i in positions]
