"""FLAN-v2 queries in one schema, from local files or streamed from the hub.

Schema of the query pool (one row per zero-shot query; `POOL_COLUMNS`): `id` (unique str), `collection` (`cot` |
`niv2` | `t0` | `flan2021`), `task`, `template_type` (`zs_opt` / `zs_noopt`), `inputs` (the query), `targets` (the
reference answer), `rationale` (the human-written rationale of a CoT row, "" otherwise), `is_multiple_choice` (bool).
Notebook 01 adds a system message to each sampled row (`orca_utils.contracts.QUERY_TABLE_COLUMNS`).

Sources:
- `load_cot_dir`: FLAN-v2's CoT tsv files (`<source>_train.tsv`: question, answer, rationale; literal `\\n` in
  cells). The column order differs between sources upstream, so each known source has its own entry in
  `COT_COLUMNS` (checked file by file); an unknown source is an error rather than a guess.
- `load_niv2_dir`: Super-NaturalInstructions task files, rendered zero-shot from the task's Definition and an
  instance's input with one of FLAN-v2's ten NIv2 zero-shot templates (picked per instance from its id).
- `load_task_list`: FLAN-v2's task list (`flan_collection_info.csv`) with the four collections we sample.
- `load_schema_file`: any JSONL or parquet already in the schema.
- `iter_hub_submix` / `map_hub_row`: the FLAN-v2 submixes on the hub (`DataProvenanceInitiative/<x>_submix_original`,
  first published as `conceptofmind/<x>_submix_original`; a local folder in the same layout works too), streamed
  with `datasets` so nothing big sits in memory; only zero-shot templates are kept.
Malformed rows (missing fields, empty inputs or targets) are skipped and counted in a `LoadReport`, never fatal.
"""
from __future__ import annotations

import csv
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["POOL_COLUMNS", "COLLECTIONS", "COT_COLUMNS", "HUB_SUBMIXES", "LoadReport", "load_cot_dir",
           "load_niv2_dir", "load_task_list", "load_schema_file", "map_hub_row", "iter_hub_submix",
           "is_big_bench", "detect_multiple_choice", "empty_queries"]

POOL_COLUMNS = ["id", "collection", "task", "template_type", "inputs", "targets", "rationale", "is_multiple_choice"]
COLLECTIONS = ("cot", "niv2", "t0", "flan2021")
HUB_SUBMIXES = {c: f"DataProvenanceInitiative/{c}_submix_original" for c in COLLECTIONS}

# Column order of each FLAN-v2 CoT source file (flan/v2/cot_data/<source>_train.tsv), read file by file.
COT_COLUMNS: dict[str, tuple[str, str, str]] = {
    source: ("question", "answer", "rationale")
    for source in ("aqua", "creak", "ecqa", "gsm8k", "qasc", "sensemaking", "strategyqa")
}

# Zero-shot CoT templates in the style of FLAN-v2's CoT patterns (flan/v2/templates.py, Apache-2.0).
COT_ZS_TEMPLATES = (
    "{question} Let's think first. Stream of consciousness:",
    "Let's think step by step! {question}",
    "{question}\nHmmm, let me think. I want to lay out the solution in details.",
    "Answer the following question, with explanation first. {question}",
    "{question} Let me think hard. Detailed solution:",
)
# FLAN-v2's ten zero-shot NIv2 templates: {definition} is the task Definition, {input} the instance input.
NIV2_ZS_TEMPLATES = (
    "{definition}\n\n{input}",
    "You will be given a definition of a task first, then some input of the task.\n{definition}\n\n{input}\nOutput:",
    "Definition: {definition}\nInput: {input}\nOutput:",
    "Instructions: {definition}\nInput: {input}\nOutput:",
    "{definition}\nQ: {input}\nA: ",
    "Given the task definition and input, reply with output. {definition}\n\n{input}\n",
    "Teacher:{definition}\nTeacher: Now, understand the problem? Solve this instance: {input}\nStudent:",
    "Q: {definition}\n{input}\nA:",
    "Detailed Instructions: {definition}\nProblem:{input}\nSolution:",
    "Detailed Instructions: {definition}\nQ: {input}\nA:",
)
_BIG_BENCH = re.compile(r"big[\s_\-]?bench", re.IGNORECASE)
_MC = re.compile(r"(?im)^\s*(options|choices|answer choices|choose (your answer )?from|select from|pick from)"
                 r"\s*[:\-]|^\s*-?\s*\(?[A-H]\)\s|\bOPTIONS:")
_TASK_LIST_COLLECTIONS = {"CoT": ("cot",), "NIv2": ("niv2",), "T0": ("t0",), "FLAN": ("flan2021",),
                          "FLAN/T0": ("flan2021", "t0")}


@dataclass
class LoadReport:
    """What one source gave: rows kept, and malformed rows skipped, by reason."""

    source: str
    collection: str
    rows: int = 0
    files: int = 0
    malformed: Counter = field(default_factory=Counter)

    def as_row(self) -> dict:
        return {"source": self.source, "collection": self.collection, "files": self.files, "rows": self.rows,
                "malformed": sum(self.malformed.values()),
                "malformed_reasons": "; ".join(f"{k}: {v}" for k, v in sorted(self.malformed.items())) or "-"}


def is_big_bench(task: str) -> bool:
    """Big-Bench tasks are left out of training (BBH is an evaluation set)."""
    return bool(_BIG_BENCH.search(task or ""))


def detect_multiple_choice(text: str) -> bool:
    """A query that lists options (FLAN's "Options:" / "OPTIONS:" blocks, "(A) ..." lines)."""
    return bool(_MC.search(text or ""))


def _pick(templates: tuple[str, ...], key: str) -> str:
    return templates[zlib.crc32(key.encode("utf-8")) % len(templates)]


def empty_queries() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=bool if c == "is_multiple_choice" else object) for c in POOL_COLUMNS})


def _frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return empty_queries()
    df = pd.DataFrame(rows, columns=POOL_COLUMNS)
    df["is_multiple_choice"] = df["is_multiple_choice"].astype(bool)
    return df


def load_cot_dir(folder: str | Path) -> tuple[pd.DataFrame, LoadReport]:
    """Every `<source>_train.tsv` under `folder` as zero-shot CoT queries (rationale kept in its own column)."""
    folder = Path(folder)
    report = LoadReport(source=f"flan_cot ({folder.name})", collection="cot")
    rows: list[dict] = []
    for path in sorted(folder.glob("*_train.tsv")):
        source = path.name[: -len("_train.tsv")]
        if source not in COT_COLUMNS:
            raise ValueError(f"{path}: unknown CoT source {source!r}: its column order is not known; add it to "
                             f"orca_utils.flan.COT_COLUMNS after checking the file "
                             f"(known: {sorted(COT_COLUMNS)})")
        names = COT_COLUMNS[source]
        report.files += 1
        with path.open(encoding="utf-8", newline="") as handle:
            for line_no, cells in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(cells) != 3:
                    report.malformed[f"{len(cells)} fields instead of 3"] += 1
                    continue
                cell = {name: value.replace("\\n", "\n").strip() for name, value in zip(names, cells)}
                if not cell["question"] or not cell["answer"]:
                    report.malformed["empty question or answer"] += 1
                    continue
                qid = f"cot/{source}/{line_no}"
                mc = "Options:" in cell["question"] or detect_multiple_choice(cell["question"])
                rows.append({"id": qid, "collection": "cot", "task": f"cot_{source}",
                             "template_type": "zs_opt" if mc else "zs_noopt",
                             "inputs": _pick(COT_ZS_TEMPLATES, qid).format(question=cell["question"]),
                             "targets": cell["answer"], "rationale": cell["rationale"], "is_multiple_choice": mc})
    report.rows = len(rows)
    return _frame(rows), report


def load_niv2_dir(folder: str | Path) -> tuple[pd.DataFrame, LoadReport]:
    """Every NIv2 task file under `folder` (or its `tasks/`), one zero-shot query per instance."""
    folder = Path(folder)
    files = sorted((folder / "tasks" if (folder / "tasks").is_dir() else folder).glob("task*.json"))
    report = LoadReport(source=f"niv2 ({folder.name})", collection="niv2", files=len(files))
    rows: list[dict] = []
    for path in files:
        try:
            task = json.loads(path.read_text(encoding="utf-8"))
            definition = " ".join(task["Definition"]).strip() if isinstance(task["Definition"], list) \
                else str(task["Definition"]).strip()
            instances = task["Instances"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            report.malformed[f"unreadable task file ({exc.__class__.__name__})"] += 1
            continue
        if not definition:
            report.malformed["task without a Definition"] += len(instances)
            continue
        for inst in instances:
            text = (inst.get("input") or "").strip() if isinstance(inst, dict) else ""
            outputs = inst.get("output") if isinstance(inst, dict) else None
            target = (outputs[0] if isinstance(outputs, list) and outputs else outputs) or ""
            if not text:
                report.malformed["empty or missing input"] += 1
                continue
            if not str(target).strip() or not inst.get("id"):
                report.malformed["missing output or id"] += 1
                continue
            rows.append({"id": f"niv2/{inst['id']}", "collection": "niv2", "task": path.stem,
                         "template_type": "zs_noopt",
                         "inputs": _pick(NIV2_ZS_TEMPLATES, inst["id"]).format(definition=definition, input=text),
                         "targets": str(target).strip(), "rationale": "", "is_multiple_choice": False})
    report.rows = len(rows)
    return _frame(rows), report


def load_task_list(path: str | Path) -> pd.DataFrame:
    """FLAN-v2's task list with one row per (collection, task); FLAN/T0 tasks count for both flan2021 and t0."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"Source", "Dataset"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; expected FLAN-v2's flan_collection_info.csv")
    rows = []
    for rec in raw.itertuples(index=False):
        source, dataset, third = rec[0], rec[1], rec[2]   # 3rd column: the task name for NIv2 rows
        for collection in _TASK_LIST_COLLECTIONS.get(source, ()):
            task = third if source == "NIv2" else dataset
            rows.append({"collection": collection, "task": task, "source": source,
                         "big_bench": is_big_bench(dataset) or is_big_bench(task)})
    return pd.DataFrame(rows).drop_duplicates(["collection", "task"]).reset_index(drop=True)


def load_schema_file(path: str | Path) -> tuple[pd.DataFrame, LoadReport]:
    """A JSONL or parquet file already in the query schema (`rationale`, `is_multiple_choice` optional)."""
    path = Path(path)
    if path.suffix == ".parquet":
        raw = pd.read_parquet(path)
    elif path.suffix in (".jsonl", ".json"):
        raw = pd.read_json(path, lines=True, dtype=False)
    else:
        raise ValueError(f"{path}: expected a .jsonl or .parquet file in the query schema")
    required = ["id", "collection", "task", "template_type", "inputs", "targets"]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {POOL_COLUMNS}")
    report = LoadReport(source=path.name, collection="mixed", files=1)
    raw = raw.copy()
    raw["rationale"] = raw["rationale"].fillna("") if "rationale" in raw else ""
    if "is_multiple_choice" not in raw:
        raw["is_multiple_choice"] = raw["inputs"].map(lambda t: detect_multiple_choice(str(t)))
    bad_fields = raw[required].isna().any(axis=1)
    empty = ~bad_fields & (raw["inputs"].astype(str).str.strip() == "")
    bad_collection = ~bad_fields & ~empty & ~raw["collection"].isin(COLLECTIONS)
    report.malformed.update({k: int(v) for k, v in {"missing fields": bad_fields.sum(), "empty inputs": empty.sum(),
                             "unknown collection": bad_collection.sum()}.items() if v})
    df = raw[~(bad_fields | empty | bad_collection)][POOL_COLUMNS].astype({"is_multiple_choice": bool})
    report.rows = len(df)
    return df.reset_index(drop=True), report


def map_hub_row(row: dict, collection: str, index: int, report: LoadReport | None = None) -> dict | None:
    """One row of a FLAN-v2 submix on the hub (`inputs, targets, task_source, task_name, template_type`) in the
    query schema, or None when it is not zero-shot or malformed (counted in `report`). For hub CoT rows the
    target already holds rationale and answer together, so `rationale` stays ""."""
    template_type = str(row.get("template_type") or "")
    if "zs" not in template_type.split("_"):
        return None
    inputs, targets, task = row.get("inputs"), row.get("targets"), row.get("task_name")
    if inputs is None or targets is None or not task:
        if report is not None:
            report.malformed["missing fields"] += 1
        return None
    if not str(inputs).strip():
        if report is not None:
            report.malformed["empty inputs"] += 1
        return None
    opt = template_type.endswith("_opt") or template_type == "opt"
    return {"id": f"{collection}/{task}/{index}", "collection": collection, "task": str(task),
            "template_type": "zs_opt" if opt else "zs_noopt", "inputs": str(inputs), "targets": str(targets),
            "rationale": "", "is_multiple_choice": opt and detect_multiple_choice(str(inputs))}


def iter_hub_submix(hub_id: str, revision: str | None = None, split: str = "train",
                    open_stream: Callable[..., Iterable[dict]] | None = None) -> Iterator[dict]:
    """Raw rows of a FLAN-v2 submix, streamed (`datasets.load_dataset(..., streaming=True)`), never held in memory.

    `open_stream(hub_id, revision=..., split=...)` replaces the hub for tests."""
    if open_stream is None:
        from datasets import load_dataset

        def open_stream(name, revision=None, split="train"):
            return load_dataset(name, split=split, streaming=True, revision=revision)
    yield from open_stream(hub_id, revision=revision, split=split)
