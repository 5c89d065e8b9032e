"""The result tables of notebooks 05 (AGIEval) and 06 (BBH) and the paper's columns beside them.

`ZeroShotRun` holds what `orca_utils.evaluation.zero_shot.run_zero_shot` scored; the builders here put our
accuracies (with the number of items and the extraction-failure rate per task) beside the paper's columns from
`orca_utils.reference`, shown with their status ("(unverified)" for recalled numbers, "not available" where the
paper's number is missing). Every accuracy is given under both conventions of `orca_utils.evaluation.extract` with a
95% interval (`orca_utils.evaluation.stats`); before/after and system-message comparisons carry the exact McNemar
p-value on the paired items. Both the driver (`zero_shot`, which re-exports these names for the notebooks) and the
per-task figure (`orca_utils.evaluation.figures`) read them from here, so neither imports the other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..reference import NOT_AVAILABLE, format_paper_value, paper_block
from ..system_messages import SYSTEM_MESSAGES
from .engine import EvalResult
from .stats import bootstrap_macro_interval, bootstrap_relative_change, format_interval, mcnemar_exact, wilson_interval
from .tasks import EvalItem, task_specs

__all__ = ["CONVENTION_COLUMNS", "PAPER_BLOCKS", "BENCHMARK_NAMES", "ZeroShotRun", "paper_values", "paper_columns",
           "outcomes", "paper_task_set", "macro_rows", "accuracy_table", "relative_improvement", "paired_table",
           "system_message_table", "orca2_reference_table"]

CONVENTION_COLUMNS = {"robust": "correct", "published": "published_correct"}   # record column per convention

PAPER_BLOCKS = {"agieval": "agieval_zero_shot", "bbh": "bbh_zero_shot"}
BENCHMARK_NAMES = {"agieval": "AGIEval", "bbh": "BBH"}   # as figure titles name them


@dataclass
class ZeroShotRun:
    benchmark: str
    items: dict[str, list[EvalItem]]
    results: dict[str, EvalResult] = field(default_factory=dict)          # model label -> result
    system_messages: dict[int, EvalResult] = field(default_factory=dict)  # message id -> result
    system_message_model: str = ""
    slots: dict[str, str] = field(default_factory=dict)                  # model label -> metrics slot
    student_found: bool = False
    data_origin: str = ""
    sources: list[dict] = field(default_factory=list)                    # provenance.source of each model scored
    system_message_label: str = ""        # the main table's system message, as zero_shot.eval_system_message names it

    @property
    def n_items(self) -> int:
        return sum(len(v) for v in self.items.values())

    @property
    def name(self) -> str:
        """The benchmark as figure titles name it ("AGIEval", "BBH"); file names use `benchmark`."""
        return BENCHMARK_NAMES.get(self.benchmark, self.benchmark)


def paper_values(benchmark: str) -> tuple[dict[str, dict[str, tuple[object, str | None]]], list[str]]:
    """({task name or "__average__": {paper column: (value or None, its status)}}, columns): the paper's numbers
    as the reference holds them, for the tables (`paper_columns` formats them) and the figures (which draw
    them). AGIEval: the recalled per-task rows, overridden by sourced cells; averages only where sourced."""
    block = paper_block(PAPER_BLOCKS[benchmark])
    cells: dict[str, dict[str, tuple[object, str | None]]] = {}
    if benchmark == "bbh":
        columns = [c for c in block["columns"] if "relative" not in c]
        for row in block.get("rows") or []:
            cells[row["task_id"]] = {c: (row.get(c), block.get("status")) for c in columns}
        average = {c: (block["average"].get(c), block.get("average_status")) for c in columns}
    else:
        columns = list(block["columns"])
        recalled = block.get("rows_recalled") or {}
        by_label = {s.label: s.name for s in task_specs("agieval")}
        for label, row in (recalled.get("rows") or {}).items():
            cells[by_label.get(label, label)] = {c: (row.get(c), recalled.get("status")) for c in columns}
        for label, row in (block.get("rows") or {}).items():      # sourced cells override recalled ones
            for c in columns:
                if row.get(c) is not None:
                    cells.setdefault(by_label.get(label, label), {})[c] = (row[c], row["status"])
        average = {}
        for c in columns:
            entry = (block.get("average") or {}).get(c)
            average[c] = (entry["value"], entry["status"]) if entry else (None, None)
    cells["__average__"] = average
    return cells, columns


def paper_columns(benchmark: str) -> tuple[dict[str, dict[str, str]], list[str], str]:
    """({task name: {paper column: formatted value}}, columns, status line) from the reference data."""
    block = paper_block(PAPER_BLOCKS[benchmark])
    values, columns = paper_values(benchmark)
    cells = {task: {c: format_paper_value(v, status) for c, (v, status) in row.items()}
             for task, row in values.items()}
    status = f"paper {block.get('paper_location', '')}: {block.get('status')}; {block.get('status_detail', '')}"
    return cells, columns, status


def outcomes(res: EvalResult, convention: str, task: str | None = None) -> pd.Series | None:
    """Right/wrong per item id (of one task, or all) under a convention; None when the records lack it."""
    column = CONVENTION_COLUMNS[convention]
    if column not in res.records.columns:
        return None
    recs = res.records if task is None else res.records[res.records["task"] == task]
    return pd.Series(recs[column].astype(bool).to_numpy(), index=recs["id"].to_numpy())


def _wilson(right: pd.Series | None) -> tuple[float | None, str]:
    """(accuracy %, "[lo, hi]") of right/wrong outcomes; (None, "n/a") when there are none."""
    if right is None or not len(right):
        return None, "n/a"
    k, n = int(right.sum()), len(right)
    return round(100.0 * k / n, 1), format_interval(*wilson_interval(k, n))


def paper_task_set(benchmark: str) -> list[str]:
    """Task names the paper's average is taken over: BBH, the 23 tasks of Table 11 (dyck_languages,
    multistep_arithmetic_two, object_counting and word_sorting are not in it); AGIEval, Table 8's 8 English tasks
    (all the tasks we run)."""
    block = paper_block(PAPER_BLOCKS[benchmark])
    if benchmark == "bbh":
        return [r["task_id"] for r in block.get("rows") or []]
    by_label = {s.label: s.name for s in task_specs("agieval")}
    return [by_label.get(label, label) for label in block.get("tasks") or []]


def _macro(res: EvalResult, convention: str, tasks: list[str] | None = None) -> tuple[float | None, str]:
    """(macro accuracy %, bootstrap "[lo, hi]") over the result's tasks (only those in `tasks` when given)."""
    column = CONVENTION_COLUMNS[convention]
    if column not in res.records.columns:
        return None, "n/a"
    recs = res.records if tasks is None else res.records[res.records["task"].isin(tasks)]
    groups = [g[column].astype(float).to_numpy() for _, g in recs.groupby("task", sort=False)]
    if not groups:
        return None, "n/a"
    value = sum(g.mean() for g in groups) / len(groups)
    return round(100.0 * value, 1), format_interval(*bootstrap_macro_interval(groups))


def macro_rows(zs: ZeroShotRun) -> list[tuple[str, list[str] | None, bool]]:
    """The macro-average rows of the accuracy table: (label, tasks or None for all, carries the paper's average).

    The paper's average is over its own task set (`paper_task_set`): that row is the one compared with it. When we
    run more tasks (BBH: 27 against the paper's 23), a second row averages all of them and is labelled ours; when the
    two sets are the same (AGIEval's 8 tasks) there is one row."""
    run = list(zs.items)
    paper = [t for t in paper_task_set(zs.benchmark) if t in zs.items]
    n_paper = len(paper_task_set(zs.benchmark))
    if set(paper) == set(run) and len(paper) == n_paper:
        return [(f"macro average ({n_paper} tasks, the paper's set)", None, True)]
    rows = []
    if paper:
        # A subset of the paper's tasks is labelled as one: the paper's columns stay its own average over all of them
        label = (f"macro average (paper's {n_paper} tasks)" if len(paper) == n_paper
                 else f"macro average (paper's {n_paper} tasks, {len(paper)} of them run; "
                      f"paper columns: all {n_paper})")
        rows.append((label, paper, True))
    if set(paper) != set(run):
        rows.append((f"macro average (all {len(run)} tasks run, ours)", None, False))
    return rows


def accuracy_table(zs: ZeroShotRun) -> pd.DataFrame:
    """Per task: items scored; per model the robust accuracy (%) with its 95% interval, the published-convention
    accuracy with its interval and the extraction-failure rate (%); then the paper's columns."""
    cells, columns, _ = paper_columns(zs.benchmark)
    labels = {s.name: s.label for s in task_specs(zs.benchmark)}
    rows = []
    for task, items in zs.items.items():
        row = {"task": labels.get(task, task), "items": len(items)}
        for model, res in zs.results.items():
            pt = res.per_task.set_index("task")
            row[f"{model}: acc %"] = round(float(pt.loc[task, "accuracy"]), 1)
            row[f"{model}: acc 95% CI"] = _wilson(outcomes(res, "robust", task))[1]
            row[f"{model}: published acc %"], row[f"{model}: published 95% CI"] = \
                _wilson(outcomes(res, "published", task))
            row[f"{model}: extraction failures %"] = round(float(pt.loc[task, "failure_rate"]), 1)
        for c in columns:
            row[f"paper {c}"] = cells.get(task, {}).get(c, NOT_AVAILABLE)
        rows.append(row)
    averages = [(name, tasks, paper) for name, tasks, paper in macro_rows(zs)] + [("micro average", None, False)]
    for name, tasks, with_paper in averages:
        fn = "micro" if name == "micro average" else "macro"
        row = {"task": name, "items": sum(len(zs.items[t]) for t in tasks) if tasks else zs.n_items}
        for model, res in zs.results.items():
            recs = res.records if tasks is None else res.records[res.records["task"].isin(tasks)]
            for conv, prefix in (("robust", "acc"), ("published", "published")):
                value, ci = _macro(res, conv, tasks) if fn == "macro" else _wilson(outcomes(res, conv))
                row[f"{model}: {prefix} 95% CI"] = ci
                row[f"{model}: {'acc' if conv == 'robust' else 'published acc'} %"] = value
            if fn == "micro":
                row[f"{model}: acc %"] = round(res.micro, 1)
            elif tasks is None:
                row[f"{model}: acc %"] = round(res.macro, 1)
            row[f"{model}: extraction failures %"] = round(float(recs["failed"].mean() * 100), 1)
        for c in columns:
            row[f"paper {c}"] = cells["__average__"].get(c, NOT_AVAILABLE) if with_paper else NOT_AVAILABLE
        rows.append(row)
    return pd.DataFrame(rows)


def _relative(before: pd.Series | None, after: pd.Series | None) -> tuple[float | None, float, float]:
    """Our relative improvement (%) of `after` over `before` on their shared items, with its paired bootstrap
    interval; None when undefined (no items, or 0% before)."""
    if before is None or after is None:
        return None, math.nan, math.nan
    shared = before.index.intersection(after.index)
    b, a = before.loc[shared].astype(float), after.loc[shared].astype(float)
    if not len(shared) or b.mean() == 0:
        return None, math.nan, math.nan
    lo, hi = bootstrap_relative_change(b.to_numpy(), a.to_numpy())
    return 100.0 * (a.mean() / b.mean() - 1), lo, hi


def _mcnemar(before: pd.Series | None, after: pd.Series | None):
    if before is None or after is None:
        return None
    shared = before.index.intersection(after.index)
    return mcnemar_exact(list(before.loc[shared]), list(after.loc[shared])) if len(shared) else None


def relative_improvement(zs: ZeroShotRun, before: str, after: str) -> pd.DataFrame:
    """Per task, as the paper's figures: the paper's Orca-13B over Vicuna-13B (%), and ours: after over before under
    both conventions, with paired bootstrap 95% intervals and the exact McNemar p-value on the paired items."""
    block = paper_block(PAPER_BLOCKS[zs.benchmark])
    paper: dict[str, float | None] = {}
    if zs.benchmark == "bbh":
        paper = {r["task_id"]: r.get("orca_rel_improvement_over_vicuna_pct") for r in block.get("rows") or []}
    else:
        by_label = {s.label: s.name for s in task_specs("agieval")}
        for label, r in ((block.get("rows_recalled") or {}).get("rows") or {}).items():
            if r.get("Orca-13B") is not None and r.get("Vicuna-13B"):
                paper[by_label.get(label, label)] = 100.0 * (r["Orca-13B"] / r["Vicuna-13B"] - 1)
    paper_status = (block.get("status") if zs.benchmark == "bbh" else
                    "recalled (unverified): computed from the recalled Table 8 rows")
    have = before in zs.results and after in zs.results

    def rnd(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 1)

    rows = []
    for task in zs.items:
        value = paper.get(task)
        row = {"task": task, "paper: Orca-13B over Vicuna-13B (%)": None if value is None else round(value, 1),
               "paper status": paper_status if value is not None else NOT_AVAILABLE}
        for conv, name in (("robust", "ours"), ("published", "ours (published)")):
            pair = [outcomes(zs.results[m], conv, task) for m in (before, after)] if have else [None, None]
            ours, lo, hi = _relative(*pair)
            test = _mcnemar(*pair)
            row[f"{name}: after over before (%)"] = rnd(ours)
            row[f"{name} 95% CI low (%)"], row[f"{name} 95% CI high (%)"] = rnd(lo), rnd(hi)
            row[f"{name}: McNemar p"] = None if test is None else round(test.p_value, 4)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(zs: ZeroShotRun, before: str, after: str) -> pd.DataFrame:
    """Before vs after on the same items, per task and over all items, under both conventions: accuracies, the
    discordant pairs and the exact McNemar p-value. Empty when one of the two models was not scored."""
    columns = ["task", "paired items"]
    for prefix in ("", "published: "):
        columns += [f"{prefix}before acc %", f"{prefix}after acc %", f"{prefix}right only before",
                    f"{prefix}right only after", f"{prefix}McNemar p"]
    if before not in zs.results or after not in zs.results:
        return pd.DataFrame(columns=columns)
    rows = []
    for task in [*zs.items, None]:
        row = {"task": task or "all items"}
        for conv, prefix in (("robust", ""), ("published", "published: ")):
            b, a = (outcomes(zs.results[m], conv, task) for m in (before, after))
            test = _mcnemar(b, a)
            if test is None:
                continue
            shared = b.index.intersection(a.index)
            row["paired items"] = test.n
            row[f"{prefix}before acc %"] = round(100.0 * b.loc[shared].mean(), 1)
            row[f"{prefix}after acc %"] = round(100.0 * a.loc[shared].mean(), 1)
            row[f"{prefix}right only before"], row[f"{prefix}right only after"] = test.b, test.c
            row[f"{prefix}McNemar p"] = round(test.p_value, 4)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def system_message_table(zs: ZeroShotRun) -> pd.DataFrame:
    """Per system message: macro/micro accuracy with 95% intervals (bootstrap / Wilson), the published-convention
    macro, the failure rate, and the exact McNemar p-value against the first message on the paired items (the
    paper's Table 9 has no numbers to show)."""
    rows = []
    reference = next(iter(zs.system_messages), None)
    for mid, res in zs.system_messages.items():
        text = SYSTEM_MESSAGES[mid]
        test = None if mid == reference else _mcnemar(outcomes(zs.system_messages[reference], "robust"),
                                                     outcomes(res, "robust"))
        rows.append({"system message id": mid, "system message": (text[:70] + "...") if len(text) > 70 else
                     (text or "<empty system message>"), "items": int(res.per_task["n"].sum()),
                     "macro acc %": round(res.macro, 1), "macro 95% CI": _macro(res, "robust")[1],
                     "micro acc %": round(res.micro, 1), "micro 95% CI": _wilson(outcomes(res, "robust"))[1],
                     "published macro acc %": _macro(res, "published")[0],
                     "extraction failures %": round(float(res.records["failed"].mean() * 100), 1),
                     f"McNemar p vs message {reference}": None if test is None else round(test.p_value, 4),
                     "paper": NOT_AVAILABLE})
    return pd.DataFrame(rows)


def orca2_reference_table(zs: ZeroShotRun) -> pd.DataFrame:
    """Stretch rows: our macro average over the paper's task set (each model, under the system message the main
    table used) beside Orca 1's average and Orca 2's published averages (arXiv 2311.11045; its AGIEval averages
    under the empty and the cautious message), each with its status. Orca 2 is a later method on a LLaMA-2 base:
    these rows show how far the recipe went, never a number we claim to reproduce."""
    rows = []
    paper = [t for t in paper_task_set(zs.benchmark) if t in zs.items]
    for model, res in zs.results.items():
        value, ci = _macro(res, "robust", paper or None)
        rows.append({"model": model, "source": "ours", "system message": zs.system_message_label or "empty",
                     "macro accuracy %": value if value is not None else NOT_AVAILABLE, "95% CI": ci,
                     "status": "measured"})
    cells, _, _ = paper_columns(zs.benchmark)
    orca1 = cells.get("__average__", {}).get("Orca-13B", NOT_AVAILABLE)
    rows.append({"model": "Orca-13B", "source": "Orca (arXiv 2306.02707)", "system message": "empty",
                 "macro accuracy %": orca1, "95% CI": "", "status": "paper"})
    block = paper_block("orca2_averages")
    for row in block["rows"]:
        if row["benchmark"] == zs.benchmark:
            rows.append({"model": row["model"], "source": "Orca 2 (arXiv 2311.11045), stretch",
                         "system message": row["system_message"],
                         "macro accuracy %": format_paper_value(row["value"], row["status"], digits=2),
                         "95% CI": "", "status": row["status"]})
    return pd.DataFrame(rows)
