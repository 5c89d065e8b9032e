"""What passes between notebooks, written down once: the files a notebook writes that a later one reads, the
columns of its tables, and the tuned student's label.

| file (in `outputs/<profile>/<notebook>/`) | written by | read by |
|---|---|---|
| `queries_stage{1,2}.parquet` (`QUERY_TABLE_COLUMNS`) | 01_sampling | 02_augmentation |
| `responses_stage{1,2}.parquet` (`RESPONSE_TABLE_COLUMNS`: every request, its status) | 02_augmentation | (a person) |
| `train_stage{1,2}.parquet` (`TRAIN_TABLE_COLUMNS`: `ok` responses only) | 02_augmentation | 03, 04 |
| `student/`, `student_stage1/` (Hugging Face model folders with their tokenizer) | 04_training | 05-08 |
| `stage{1,2}_result.json` (losses, steps, throughput of a stage) | 04_training (`train`) | `train_report` |
| `metrics.json`, `run_info.json` | every notebook (`runs.Run`) | 10_report, the runner |
| `metrics.json`'s `sources` (`check_sources`: `SOURCE_KINDS`) | each `summary_metrics` (`provenance`) | 10, 04 |
| `tab_*.csv` + `.md`, `fig_*.png` / `.pdf` / `.svg` | every notebook | 10_report |

03 reads `SAMPLE_COLUMNS` of the training tables, 04 at least `TRAIN_REQUIRED_COLUMNS`.

`UPSTREAM` is the same table as a graph: which notebooks' outputs each notebook reads. A notebook's outputs are
keyed by its params and by its upstream notebooks' keys (`runs.notebook_hash`), and `Run.upstream` refuses to
read a notebook the graph does not list, so a notebook that starts reading another is one line to add here.

A notebook reads another's table with `read_table` (or checks a frame with `check_table`): a missing file or column
is one line naming the file, the column and the notebook to rerun. A notebook's own working files (caches,
resumable parts such as 05/06's `records/` or 09's `runs/`) are not contracts: no other notebook reads them.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["STAGES", "QUERY_TABLE_COLUMNS", "TRAIN_TABLE_COLUMNS", "RESPONSE_TABLE_COLUMNS", "SAMPLE_COLUMNS",
           "TRAIN_REQUIRED_COLUMNS", "STUDENT_DIR", "STAGE1_STUDENT_DIR", "METRICS_FILE", "RUN_INFO_FILE",
           "ContractError", "queries_file", "responses_file", "train_file", "stage_result_file", "check_table",
           "read_table", "stage_teachers", "student_label", "tuned_student", "SOURCES_FIELD", "SOURCE_KINDS",
           "SOURCE_KEYS", "check_sources", "read_sources", "UPSTREAM"]

STAGES = ("stage1", "stage2")            # 01's and 02's two stages (the FLAN-5M and FLAN-1M analogues)

# 01_sampling -> 02_augmentation: one sampled zero-shot query per row, with its system message (in this order).
QUERY_TABLE_COLUMNS = ("id", "collection", "task", "template_type", "inputs", "targets", "rationale",
                       "is_multiple_choice", "system_message_id", "system_message")
# 02_augmentation -> 03_packing, 04_training: the `ok` teacher responses (in this order).
# `system` is what the student trains with (= `system_message`); `teacher_system_message` is what the teacher was
# sent: the same without prompt erasure (Orca 1), a strategy message with it (Orca 2, `strategy` names it).
TRAIN_TABLE_COLUMNS = ("id", "system", "user", "response", "teacher", "teacher_model", "collection", "task",
                       "system_message_id", "status", "finish_reason", "teacher_system_message", "system_message",
                       "strategy")
# 02_augmentation's record of every request (the training columns, then token counts and the request's fate).
RESPONSE_TABLE_COLUMNS = TRAIN_TABLE_COLUMNS + ("prompt_tokens", "completion_tokens", "error", "attempts",
                                                "from_cache")
# What 03_packing measures in a training table, and what 04_training needs at least to train on it.
SAMPLE_COLUMNS = ("system", "user", "response", "teacher", "collection", "system_message_id")
TRAIN_REQUIRED_COLUMNS = ("id", "system", "user", "response")

STUDENT_DIR = "student"                  # 04's final student (after stage 2), read by 05-08
STAGE1_STUDENT_DIR = "student_stage1"    # 04's student after stage 1
METRICS_FILE = "metrics.json"
RUN_INFO_FILE = "run_info.json"
# metrics.json's structured provenance: a list of {"role", "name", "kind"}, one per model, teacher, judge or data
# source that produced the notebook's numbers. kind: "none" (no model: data, sampling, tokenizers), "stand_in" (an
# offline stand-in: data / local_llm teachers, SmolLM2, pkg: / random-llama: students, symbolic teachers), "real"
# (the paper's kinds of models: API teachers and judges, hub / local students trained for real).
SOURCES_FIELD = "sources"
SOURCE_KINDS = ("none", "stand_in", "real")
SOURCE_KEYS = ("role", "name", "kind")

# Which notebooks' outputs each notebook reads (its `Run.upstream` calls, and 10's report of every folder).
# Change it when a notebook starts reading another one: the keys of the outputs follow (`runs.notebook_hash`).
UPSTREAM: dict[str, tuple[str, ...]] = {
    "01_sampling": (),
    "02_augmentation": ("01_sampling",),
    "03_packing": ("02_augmentation",),
    "04_training": ("02_augmentation",),
    "05_agieval": ("04_training",),
    "06_bbh": ("04_training",),
    "07_open_ended": ("04_training",),
    "08_safety": ("04_training",),
    "09_explanation_vs_answer": (),
    "10_report": ("01_sampling", "02_augmentation", "03_packing", "04_training", "05_agieval", "06_bbh",
                  "07_open_ended", "08_safety", "09_explanation_vs_answer"),
}


class ContractError(ValueError):
    """A table another notebook wrote is missing, or lacks a column this notebook reads."""


def _stage(stage: str | int) -> str:
    name = f"stage{stage}" if isinstance(stage, int) else stage
    if name not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {STAGES}")
    return name


def queries_file(stage: str | int) -> str:
    """`queries_stage1.parquet` (stage "stage1" or 1) ..., written by 01_sampling."""
    return f"queries_{_stage(stage)}.parquet"


def responses_file(stage: str | int) -> str:
    """`responses_stage1.parquet` ..., written by 02_augmentation (every request with its status)."""
    return f"responses_{_stage(stage)}.parquet"


def train_file(stage: str | int) -> str:
    """`train_stage1.parquet` ..., written by 02_augmentation (only `ok` responses)."""
    return f"train_{_stage(stage)}.parquet"


def stage_result_file(stage: int) -> str:
    """`stage1_result.json` / `stage2_result.json`, written by `orca_utils.train` in 04_training's folder."""
    return f"stage{int(stage)}_result.json"


def check_table(df, path: str | Path, columns: Iterable[str], writer: str | None = None):
    """`df` (read from `path`) when it has every one of `columns`, else ContractError naming the file, the first
    missing column and the notebook that writes it."""
    _raise_if_missing([c for c in columns if c not in df.columns], path, writer)
    return df


def _raise_if_missing(missing: list[str], path, writer: str | None) -> None:
    if missing:
        more = f" (and {len(missing) - 1} more: {missing[1:]})" if len(missing) > 1 else ""
        raise ContractError(f"{path}: no column {missing[0]!r}{more}" + (f"; rerun {writer}" if writer else ""))


def read_table(folder: str | Path, name: str, columns: Iterable[str], writer: str, only: bool = False):
    """The parquet table `name` that notebook `writer` wrote into `folder`, checked for `columns` (read from the
    file's schema, before any row is read); `only`: just those columns."""
    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(folder) / name
    if not path.exists():
        raise ContractError(f"{path}: missing; {writer} writes it: rerun {writer}")
    columns = list(columns)
    _raise_if_missing([c for c in columns if c not in pq.read_schema(path).names], path, writer)
    return pd.read_parquet(path, columns=columns if only else None)


def stage_teachers(folder: str | Path) -> dict[int, str]:
    """{1: label, 2: label}: the teacher that answered each stage's training table (its first row), as notebook
    02 wrote it into `folder`."""
    return {k: str(read_table(folder, train_file(k), ["teacher"], "02_augmentation", only=True)["teacher"].iloc[0])
            for k in (1, 2)}


def student_label(base_model_label: str) -> str:
    """How every table and figure names notebook 04's student: the untuned model's name + "Orca tuning"."""
    base = base_model_label.split(" (")[0]
    return f"{base} + Orca tuning (notebook 04 student)"


def tuned_student(run) -> tuple[str, str] | None:
    """(label, model folder) of notebook 04's student when 04 has current outputs with a saved model, else None."""
    folder = run.upstream("04_training", required=False)
    if folder is None or not (Path(folder) / STUDENT_DIR / "config.json").exists():
        return None
    return student_label(run.cfg.base_model_label), str(Path(folder) / STUDENT_DIR)


def read_sources(folder: str | Path | None) -> list[dict] | None:
    """The checked `sources` of the `metrics.json` in `folder`; None when there is no such file or field (outputs
    saved before notebooks wrote one)."""
    import json

    path = Path(folder) / METRICS_FILE if folder is not None else None
    if path is None or not path.exists():
        return None
    saved = json.loads(path.read_text())
    return check_sources(saved[SOURCES_FIELD], path) if SOURCES_FIELD in saved else None


def check_sources(sources, path: str | Path = METRICS_FILE) -> list[dict]:
    """`sources` (metrics.json's `sources`, read from `path`) when it is a list of {"role", "name", "kind"} with
    string values and `kind` one of SOURCE_KINDS, else ContractError naming the file and the first bad entry."""
    if not isinstance(sources, list):
        raise ContractError(f"{path}: {SOURCES_FIELD!r} must be a list of {{role, name, kind}}, got "
                            f"{type(sources).__name__}")
    for i, entry in enumerate(sources):
        if not isinstance(entry, dict) or set(entry) != set(SOURCE_KEYS) or \
                not all(isinstance(entry[k], str) and entry[k] for k in SOURCE_KEYS):
            raise ContractError(f"{path}: {SOURCES_FIELD}[{i}] = {entry!r}: expected exactly the non-empty string "
                                f"keys {SOURCE_KEYS}")
        if entry["kind"] not in SOURCE_KINDS:
            raise ContractError(f"{path}: {SOURCES_FIELD}[{i}] kind {entry['kind']!r}: expected one of "
                                f"{SOURCE_KINDS}")
    return sources
