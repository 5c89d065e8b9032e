"""The open-ended prompt sets of the Orca paper's section 4 (Vicuna, Awesome ChatGPT prompts, WizardLM), one table each.

Read by notebook 07 (`orca_utils.open_ended`) and by 01's contamination check (`orca_utils.sampling.contamination`).

Every loader returns the same columns: `id` (str, unique within the set), `set` (the set's name), `category`
(Vicuna's category, WizardLM's skill, Awesome's "act"), `prompt` (the single-turn user message).

| set | local file (under the data root) | hub layout | rows here | rows in the paper |
|---|---|---|---|---|
| `vicuna_bench` | `vicuna_bench/question.jsonl` (FastChat) | none | 80 | 80 |
| `awesome_prompts` | `awesome_prompts/prompts.csv` (act, prompt) | `fka/awesome-chatgpt-prompts` (same) | 152 | 164 |
| `wizardlm` | `wizardlm/WizardLM_testset.jsonl` | none | 218 | 218 |

The offline Awesome ChatGPT prompts snapshot (2023-02-27) holds 152 prompts; the paper used a later snapshot with
164, which is not available offline: our Awesome numbers are on 152 prompts (12 fewer than the paper's).
The hub copy of Awesome prompts is the live list (far more than 164 today), so its count differs again.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..data import resolve_dataset, seeded_subset

__all__ = ["PROMPT_SETS", "PAPER_SET_SIZES", "PAPER_SET_NAMES", "COLUMNS", "load_prompt_set", "load_prompt_sets",
           "select_subset"]

PROMPT_SETS = ("vicuna_bench", "awesome_prompts", "wizardlm")
PAPER_SET_SIZES = {"vicuna_bench": 80, "awesome_prompts": 164, "wizardlm": 218}
# How the paper's table names each set (rows of `orca_utils.reference` block `open_ended`).
PAPER_SET_NAMES = {"vicuna_bench": "Vicuna Prompts", "awesome_prompts": "Awesome Prompts",
                   "wizardlm": "WizardLM Prompts"}
COLUMNS = ["id", "set", "category", "prompt"]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
    return rows


def _find(root: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of `names` under `root` (the local layout, then a hub snapshot's), or a clear error."""
    for name in names:
        for candidate in [root / name, *sorted(root.rglob(name))]:
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{what}: none of {list(names)} found under {root}")


def _require(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; has {sorted(row)}")


def _load_vicuna(root: Path) -> pd.DataFrame:
    path = _find(root, ("question.jsonl",), "vicuna_bench")
    rows = []
    for i, row in enumerate(_read_jsonl(path), 1):
        _require(row, ("question_id", "category", "turns"), f"{path}: row {i}")
        if not row["turns"] or not str(row["turns"][0]).strip():
            raise ValueError(f"{path}: row {i}: empty 'turns'")
        rows.append({"id": f"vicuna-{row['question_id']}", "category": row["category"], "prompt": row["turns"][0]})
    return pd.DataFrame(rows)


def _load_awesome(root: Path) -> pd.DataFrame:
    path = _find(root, ("prompts.csv",), "awesome_prompts")
    df = pd.read_csv(path, keep_default_na=False)
    if not {"act", "prompt"} <= set(df.columns):
        raise ValueError(f"{path}: expected columns 'act' and 'prompt', got {list(df.columns)}")
    df = df[df["prompt"].str.strip() != ""].reset_index(drop=True)
    return pd.DataFrame({"id": [f"awesome-{i + 1}" for i in range(len(df))], "category": df["act"],
                         "prompt": df["prompt"]})


def _load_wizardlm(root: Path) -> pd.DataFrame:
    path = _find(root, ("WizardLM_testset.jsonl",), "wizardlm")
    rows = []
    for i, row in enumerate(_read_jsonl(path), 1):
        _require(row, ("idx", "Skill", "Instruction"), f"{path}: row {i}")
        rows.append({"id": f"wizardlm-{row['idx']}", "category": row["Skill"], "prompt": row["Instruction"]})
    return pd.DataFrame(rows)


_LOADERS = {"vicuna_bench": _load_vicuna, "awesome_prompts": _load_awesome, "wizardlm": _load_wizardlm}


def load_prompt_set(name: str, data_dir: str | None = None, offline: bool = False) -> pd.DataFrame:
    """One prompt set as a DataFrame with columns id, set, category, prompt (in the file's order)."""
    if name not in _LOADERS:
        raise ValueError(f"prompt set {name!r}: expected one of {list(PROMPT_SETS)}")
    location = resolve_dataset(name, data_dir, offline)
    df = _LOADERS[name](Path(location.path))
    df.insert(1, "set", name)
    if df["id"].duplicated().any():
        raise ValueError(f"{name} ({location.path}): duplicate ids {df.loc[df['id'].duplicated(), 'id'].tolist()[:5]}")
    df.attrs["origin"] = location.origin
    return df[COLUMNS]


def select_subset(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A fixed, seeded subset of `n` rows (all rows when n is None or >= len), kept in the file's order, index reset
    (`orca_utils.data.seeded_subset`)."""
    return seeded_subset(df, n, seed).reset_index(drop=True)


def load_prompt_sets(names: list[str] | tuple[str, ...], n_per_set: int | None, seed: int,
                     data_dir: str | None = None, offline: bool = False,
                     max_prompt_chars: int | None = None) -> pd.DataFrame:
    """The chosen sets, each cut to a fixed seeded subset, stacked into one table.

    `max_prompt_chars` (a smoke-profile economy) draws each subset from the prompts at most that long only.
    """
    frames = []
    for name in names:
        df = load_prompt_set(name, data_dir, offline)
        if max_prompt_chars is not None:
            df = df[df["prompt"].str.len() <= max_prompt_chars]
            if df.empty:
                raise ValueError(f"{name}: no prompt is at most {max_prompt_chars} characters long")
        frames.append(select_subset(df, n_per_set, seed))
    return pd.concat(frames, ignore_index=True)
