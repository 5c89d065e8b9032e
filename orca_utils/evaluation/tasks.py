"""Benchmark tasks as data: AGIEval (8 English multiple-choice tasks) and BIG-Bench Hard (27 tasks), zero-shot.

Task configs (name, the paper's label, answer kind, boolean labels, BBH descriptions, prompt templates) live in
`tasks.yaml` (beside this module); this module loads them and turns a dataset folder into `EvalItem`s: the prompt
the model sees, the gold answer normalized the way `orca_utils.evaluation.extract` returns answers, the options (for
option-text answers and log-likelihood scoring) and the continuations a log-likelihood scorer compares.

The rows come from `orca_utils.evaluation.sets` (one reader per dataset: local and hub layouts alike); the folder from
`orca_utils.data.resolve_dataset`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .sets import read_rows, task_files
from .extract import normalize_target

__all__ = ["TaskSpec", "EvalItem", "BENCHMARKS", "task_specs", "get_task", "load_task", "load_benchmark",
           "format_prompt", "subset_items"]

BENCHMARKS = ("agieval", "bbh")
LETTERS = "ABCDEFGHIJKLMNOPQR"


@dataclass(frozen=True)
class TaskSpec:
    benchmark: str
    name: str                       # file stem: "lsat-ar", "boolean_expressions"
    label: str                      # the task's name in the paper's tables
    kind: str                       # answer kind (orca_utils.evaluation.extract.ANSWER_KINDS)
    labels: tuple[str, ...] | None = None
    description: str = ""


@dataclass
class EvalItem:
    benchmark: str
    task: str
    id: str
    prompt: str                     # the user turn (zero-shot)
    target: str                     # normalized gold answer ("C", "True", "12", "a b c", "] )")
    kind: str
    options: list[str] | None = None          # option texts in order (choice tasks)
    labels: tuple[str, ...] | None = None      # boolean tasks
    continuations: list[str] = field(default_factory=list)   # log-likelihood mode: one per answer
    gold_index: int | None = None              # which continuation is right


@lru_cache(maxsize=1)
def _config() -> dict[str, Any]:
    return yaml.safe_load(resources.files(__package__).joinpath("tasks.yaml").read_text())


def task_specs(benchmark: str) -> list[TaskSpec]:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark {benchmark!r}: expected one of {BENCHMARKS}")
    return [TaskSpec(benchmark, t["name"], t["label"], t["kind"], tuple(t["labels"]) if t.get("labels") else None,
                     t.get("description", "")) for t in _config()[benchmark]]


def get_task(benchmark: str, name: str) -> TaskSpec:
    specs = task_specs(benchmark)
    wanted = name.replace("_", "-") if benchmark == "agieval" else name
    for spec in specs:
        if spec.name == wanted or spec.label == name:
            return spec
    raise ValueError(f"{benchmark} task {name!r}: expected one of {[s.name for s in specs]}")


def format_prompt(spec: TaskSpec, row: dict) -> str:
    """The zero-shot prompt of one example (AGIEval repo / lm-eval bbh_zeroshot formats)."""
    template = _config()["prompts"][spec.benchmark]
    if spec.benchmark == "agieval":
        options = row["options"]
        count = len(options) if len(options) > 1 else 5      # as AGIEval's convert_zero_shot
        return template.format(passage=row.get("passage") or "", question=row["question"],
                               options=" ".join(options), last_letter=LETTERS[count - 1])
    return template.format(description=spec.description, input=row["input"])


def _bbh_options(text: str) -> list[str]:
    """Option texts listed in a BBH input as lines "(A) text"."""
    return [m.group(2).strip() for m in re.finditer(r"^\(([A-R])\)\s*(.*)$", text, re.MULTILINE)]


def _strip_letter(option: str) -> str:
    return re.sub(r"^\s*\(?[A-R]\)\s*", "", option).strip()


def _agieval_item(spec: TaskSpec, row: dict, i: int, source: str) -> EvalItem:
    if "query" in row and "choices" in row:                     # lm-eval's hub copies (query, choices, gold)
        choices = [str(c) for c in row["choices"]]
        gold = row["gold"][0] if isinstance(row["gold"], (list, tuple)) or hasattr(row["gold"], "__len__") \
            else row["gold"]
        prompt, target = str(row["query"]), LETTERS[int(gold)]
    else:
        for key in ("question", "options", "label"):
            if key not in row or row[key] in (None, "", []):
                raise ValueError(f"{source} line {i + 1}: AGIEval row lacks {key!r} (a multiple-choice row needs "
                                 f"question, options and label)")
        choices = [str(c) for c in row["options"]]
        prompt = format_prompt(spec, row)
        label = row["label"][0] if isinstance(row["label"], list) else row["label"]
        target = normalize_target(label, "choice")
    return EvalItem("agieval", spec.name, f"{spec.name}/{i}", prompt, target, "choice",
                    options=[_strip_letter(c) for c in choices],
                    continuations=[f" {c.strip()}" for c in choices], gold_index=LETTERS.index(target))


def _bbh_item(spec: TaskSpec, row: dict, i: int) -> EvalItem | None:
    text, raw_target = str(row["input"]), str(row["target"]).strip()
    options = _bbh_options(text) if spec.kind == "choice" else None
    if spec.kind == "choice" and not re.fullmatch(r"\([A-R]\)", raw_target):
        # three upstream rows give the option's text instead of its letter; map it, or leave the row out
        hit = [k for k, o in enumerate(options or []) if o.lower().strip(" .") == raw_target.lower().strip(" .")]
        if len(hit) != 1:
            return None
        raw_target = f"({LETTERS[hit[0]]})"
    target = normalize_target(raw_target, spec.kind, spec.labels)
    if spec.kind == "choice":
        conts = [f" ({LETTERS[k]})" for k in range(len(options or []))]
        gold = LETTERS.index(target)
    elif spec.kind == "boolean":
        conts, gold = [f" {lab}" for lab in spec.labels or ()], list(spec.labels or ()).index(target)
    else:
        conts, gold = [f" {raw_target}"], 0
    return EvalItem("bbh", spec.name, f"{spec.name}/{i}", format_prompt(spec, row), target, spec.kind,
                    options=options, labels=spec.labels, continuations=conts, gold_index=gold)


def load_task(root: str | Path, benchmark: str, name: str) -> list[EvalItem]:
    """All items of one task from a dataset folder (local or hub layout). Unmappable rows are left out."""
    spec = get_task(benchmark, name)
    items: list[EvalItem] = []
    for path in task_files(root, benchmark, spec.name):
        for i, row in enumerate(read_rows(path)):
            item = _agieval_item(spec, row, i, str(path)) if benchmark == "agieval" else _bbh_item(spec, row, i)
            if item is not None:
                items.append(item)
    return items


def load_benchmark(root: str | Path, benchmark: str, tasks: list[str] | None = None) -> dict[str, list[EvalItem]]:
    """{task name: items} for the named tasks (all of the benchmark's tasks by default), in config order."""
    names = [s.name for s in task_specs(benchmark)] if not tasks else [get_task(benchmark, t).name for t in tasks]
    return {n: load_task(root, benchmark, n) for n in names}


def subset_items(items: list[EvalItem], n: int | None, seed: int = 0) -> list[EvalItem]:
    """A fixed random subset of `n` items (all when n is None or larger than the task), in original order.

    This is not `orca_utils.data.seeded_subset`'s draw: each task is drawn from its own Python stream,
    `random.Random(f"{seed}:{task}")`, so adding or removing a task never changes another task's items. Kept as it
    is so that 05/06 (and the benchmarks) score exactly the items they scored before."""
    if n is None or n >= len(items):
        return list(items)
    import random

    keep = sorted(random.Random(f"{seed}:{items[0].task if items else ''}").sample(range(len(items)), n))
    return [items[i] for i in keep]
