"""The evaluation datasets, one reader each: BBH, AGIEval and TruthfulQA.

The zero-shot engine (`orca_utils.evaluation.tasks`, notebooks 05/06), the contamination check of 01
(`orca_utils.sampling.contamination`) and the safety notebook 08 (`orca_utils.safety`) read these sets through this
module. The folder comes from `orca_utils.data.resolve_dataset`; two layouts are read for each:
- local (as published): `bbh/<task>.json` (`{"examples": [{"input", "target"}]}`), `agieval/<task>.jsonl`
  (AGIEval v1 fields: passage, question, options, label), `truthfulqa/TruthfulQA.csv`;
- hub snapshots: BBH as in `lukaemon/bbh` (`<task>/test-*.parquet`, columns input, target); AGIEval as the per-task
  copies lm-eval reads (`query`, `choices`, `gold`) or the v1 fields, in `.jsonl`/`.json`/`.parquet` files whose
  path names the task (`lsat-ar`, `lsat_ar`); TruthfulQA's `generation/*.parquet` (snake_case columns, lists).
Rows come back as the files hold them (dicts); turning them into prompts is `orca_utils.evaluation.tasks`' job.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..data import resolve_dataset

__all__ = ["BENCHMARK_EXTENSIONS", "task_files", "read_rows", "read_bbh", "read_agieval", "read_task",
           "local_tasks", "split_answers", "read_truthfulqa", "load_truthfulqa"]

# The local file type of each benchmark's tasks (`<task><ext>` under the dataset folder).
BENCHMARK_EXTENSIONS = {"agieval": ".jsonl", "bbh": ".json"}


def read_rows(path: Path) -> list[dict]:
    """The rows of one task file: JSON lines, a BBH `{"examples": [...]}` file (or a plain JSON list), or parquet."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["examples"] if isinstance(data, dict) and "examples" in data else data
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_dict("records")
    raise ValueError(f"{path}: unsupported file type (expected .jsonl, .json or .parquet)")


def task_files(root: str | Path, benchmark: str, task: str) -> list[Path]:
    """The files holding one task (`task` is the file stem: `lsat-ar`, `boolean_expressions`): the local
    `<task>.jsonl|.json`, else the hub snapshot's files whose path names the task (test split only)."""
    if benchmark not in BENCHMARK_EXTENSIONS:
        raise ValueError(f"benchmark {benchmark!r}: expected one of {list(BENCHMARK_EXTENSIONS)}")
    root = Path(root)
    local = root / f"{task}{BENCHMARK_EXTENSIONS[benchmark]}"
    if local.exists():
        return [local]
    keys = {task, task.replace("-", "_")}
    found = []
    for p in sorted(root.rglob("*")):
        if p.suffix not in (".jsonl", ".json", ".parquet") or not p.is_file():
            continue
        rel = p.relative_to(root)
        parts = [part for part in rel.parts[:-1]] + [p.stem.split("-0")[0]]
        stems = {part.removeprefix("agieval-").removeprefix("agieval_") for part in parts}
        if keys & stems and "train" not in p.stem and "validation" not in p.stem:
            found.append(p)
    if not found:
        raise FileNotFoundError(f"{benchmark} task {task!r}: no data under {root} (looked for "
                                f"{local.name} and hub files named after the task)")
    return found


def read_task(root: str | Path, benchmark: str, task: str) -> list[dict]:
    """Every row of one task of `benchmark` (agieval | bbh), in file order (local or hub layout)."""
    return [row for path in task_files(root, benchmark, task) for row in read_rows(path)]


def read_bbh(root: str | Path, task: str) -> list[dict]:
    """The rows of one BBH task (`input`, `target`), in file order."""
    return read_task(root, "bbh", task)


def read_agieval(root: str | Path, task: str) -> list[dict]:
    """The rows of one AGIEval task (v1 fields, or lm-eval's `query`/`choices`/`gold` in a hub copy), in file order."""
    return read_task(root, "agieval", task)


def local_tasks(root: str | Path, benchmark: str) -> list[str]:
    """The task stems of the local folder's files, sorted by file name (every file, whether or not the engine's task
    config lists it: AGIEval's `math.jsonl` is one); [] for a hub snapshot."""
    ext = BENCHMARK_EXTENSIONS[benchmark]
    return [p.stem for p in sorted(Path(root).glob(f"*{ext}"))]


# ---------------------------------------------------------------- TruthfulQA

_TQA_COLUMNS = {"Type": "type", "Category": "category", "Question": "question", "Best Answer": "best_answer",
                "Correct Answers": "correct_answers", "Incorrect Answers": "incorrect_answers"}


def split_answers(cell: str, close: bool = True) -> list[str]:
    """`"a; b;c"` -> ["a.", "b.", "c."]: stripped, empty parts dropped, duplicates removed, period added if missing."""
    out = []
    for part in str(cell).split(";"):
        part = part.strip()
        if not part:
            continue
        if close and part[-1] != ".":
            part += "."
        if part not in out:
            out.append(part)
    return out


def read_truthfulqa(root: str | Path) -> pd.DataFrame:
    """TruthfulQA (817 questions) from a dataset folder: id, type, category, question, best_answer, correct_answers,
    incorrect_answers (answer lists split and closed by `split_answers`).

    Reads the local `TruthfulQA.csv`, or the hub snapshot's `generation` split (same columns, snake_case, lists).
    """
    root = Path(root)
    csvs = [root / "TruthfulQA.csv"] if (root / "TruthfulQA.csv").exists() else sorted(root.rglob("TruthfulQA.csv"))
    if csvs:
        raw = pd.read_csv(csvs[0], keep_default_na=False)
        missing = set(_TQA_COLUMNS) - set(raw.columns)
        if missing:
            raise ValueError(f"{csvs[0]}: missing columns {sorted(missing)}; has {list(raw.columns)}")
        df = raw.rename(columns=_TQA_COLUMNS)[list(_TQA_COLUMNS.values())]
        df["correct_answers"] = df["correct_answers"].map(split_answers)
        df["incorrect_answers"] = df["incorrect_answers"].map(split_answers)
    else:
        parquet = sorted(root.rglob("generation/*.parquet"))
        if not parquet:
            raise FileNotFoundError(f"truthfulqa: neither TruthfulQA.csv nor generation/*.parquet under {root}")
        df = pd.read_parquet(parquet[0])
        for col in ("correct_answers", "incorrect_answers"):
            df[col] = df[col].map(lambda xs: split_answers(";".join(xs)))
    df["best_answer"] = df["best_answer"].map(lambda s: split_answers(s)[0] if split_answers(s) else "")
    bad = df.index[(df["best_answer"] == "") | (df["incorrect_answers"].map(len) == 0)].tolist()
    if bad:
        raise ValueError(f"truthfulqa ({root}): rows {bad[:5]} lack a best answer or incorrect answers")
    df.insert(0, "id", [f"tqa-{i}" for i in range(len(df))])
    return df.reset_index(drop=True)


def load_truthfulqa(data_dir: str | None = None, offline: bool = False) -> pd.DataFrame:
    """`read_truthfulqa` of the folder the data root resolves for `truthfulqa`."""
    return read_truthfulqa(resolve_dataset("truthfulqa", data_dir, offline).path)
