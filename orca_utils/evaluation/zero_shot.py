"""Zero-shot evaluation runs of notebooks 05 (AGIEval) and 06 (BBH), and their tables and figures beside the paper.

`run_zero_shot(cfg, run, benchmark)` does a notebook's whole evaluation: load the tasks (subset per the params),
score the untuned student and notebook 04's student (when it exists) and any API models, then the
system-message comparison; it returns a `ZeroShotRun`. The table builders put our accuracies (with the number of
items and the extraction-failure rate per task) beside the paper's columns from `orca_utils.reference`, shown with
their status ("(unverified)" for recalled numbers, "not available" where the paper's number is missing).

Every accuracy is given under both conventions of `orca_utils.evaluation.extract` (`robust`, the "acc %" columns, and
`published`, the benchmark authors' own rule) with a 95% interval (`orca_utils.evaluation.stats`): Wilson per task and
for the micro average, a bootstrap over items (fixed seed) for the macro average. Before/after (untuned vs tuned
student) and system-message comparisons carry the exact McNemar p-value on the paired items. Figures draw the
intervals as error bars and a missing value as missing ("n/a"), never as a zero bar; the per-task accuracy figure
is drawn the paper's way, ours beside the paper's models (`orca_utils.evaluation.figures`).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import contracts
from ..backends.resident import ResidentBackends, generation_backend
from ..data import resolve_dataset
from .engine import EvalResult, evaluate
from .stats import (bootstrap_macro_interval, bootstrap_relative_change, format_interval, mcnemar_exact,
                         wilson_interval)
from .tasks import EvalItem, get_task, load_benchmark, subset_items, task_specs
from ..reference import NOT_AVAILABLE, format_paper_value, paper_block
from ..system_messages import SYSTEM_MESSAGES

__all__ = ["ZeroShotRun", "run_zero_shot", "records_dir", "paper_values", "paper_columns",
           "outcomes", "paper_task_set", "macro_rows", "accuracy_table", "relative_improvement", "system_message_table",
           "plot_relative_improvement", "plot_accuracy", "paired_table", "BENCHMARK_NAMES", "student_label",
           "provenance", "error_examples", "zero_shot_metrics", "summary_metrics"]

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

    @property
    def n_items(self) -> int:
        return sum(len(v) for v in self.items.values())

    @property
    def name(self) -> str:
        """The benchmark as figure titles name it ("AGIEval", "BBH"); file names use `benchmark`."""
        return BENCHMARK_NAMES.get(self.benchmark, self.benchmark)


def records_dir(run, cfg, slot: str, spec: str, system_message: str | None, tag: str) -> Path:
    """Where one model's per-item records are saved as they are scored, keyed by everything that shapes them
    (model files, generation settings, system message): a rerun with the same key resumes, any change starts a
    new folder."""
    weights = [p for p in Path(spec).glob("*.safetensors")] if Path(spec).is_dir() else []
    key = json.dumps([spec, sorted((p.name, p.stat().st_mtime_ns) for p in weights), cfg.mode, cfg.max_new_tokens,
                      cfg.max_len_tokens, cfg.serve, system_message, cfg.seed, cfg.n_items_per_task])
    return run.path("records") / f"{slot}-{tag}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def run_zero_shot(cfg, run, benchmark: str) -> ZeroShotRun:
    """Evaluate every configured model on `benchmark` (see the module docstring)."""
    location = resolve_dataset(benchmark, cfg.data_dir, cfg.offline)
    full = load_benchmark(location.path, benchmark, cfg.tasks)
    items = {t: subset_items(v, cfg.n_items_per_task, cfg.seed) for t, v in full.items()}
    out = ZeroShotRun(benchmark, items, data_origin=f"{benchmark} ({location.origin})")
    message = SYSTEM_MESSAGES[cfg.system_message_id] or None
    kwargs = dict(mode=cfg.mode, max_new_tokens=cfg.max_new_tokens, system_message=message)
    models: list[tuple[str, str, str]] = []          # (label, spec, metrics slot)
    if cfg.eval_base_model:
        models.append((cfg.base_model_label, cfg.student_model, "base"))
    student = contracts.tuned_student(run)          # (label, folder) of 04's student, None when absent
    out.student_found = student is not None
    if student is not None:
        models.append((*student, "student"))
    labels = {slot: label for label, _, slot in models}
    resident = ResidentBackends([(slot, spec) for _, spec, slot in models], lambda slot, spec: generation_backend(
        spec, cfg.serve, label=labels[slot], device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size,
        max_len_tokens=cfg.max_len_tokens, mode=cfg.mode))
    with resident:                                  # one model on the device (or one server) at a time
        last_backend, last_spec = None, None
        for label, spec, slot in models:
            out.slots[label] = slot
            last_backend = None                     # no reference to the previous model while the next loads
            last_backend = resident[slot]
            last_spec = spec
            out.results[label] = evaluate(last_backend, items, label=label, chunk_items=cfg.records_chunk_items,
                                          records_dir=records_dir(run, cfg, slot, spec, message, "main"), **kwargs)
            out.results[label].records.to_parquet(run.path(f"records_{slot}.parquet"), index=False)
            out.system_message_model = label        # the comparison uses the last (trained, when present) model
        if cfg.api_models:
            _evaluate_api_models(out, cfg, run, items, message, kwargs)
        if models and cfg.compare_system_message_ids:
            _compare_system_messages(out, cfg, run, items, kwargs, last_backend, last_spec, benchmark)
    return out


def _evaluate_api_models(out: ZeroShotRun, cfg, run, items, message, kwargs) -> None:
    """`api_models` through the teacher client: cached answers, per-item records (an interrupted evaluation
    resumes; a rerun is answered from the cache). Each model has its own `reasoning_effort`, output cap
    (`max_tokens`; reasoning models default to `api_reasoning_max_tokens`, as their hidden reasoning counts against
    it) and optional spend cap (else what is left of `api_max_cost_usd`). `stop` ("Q:") is not sent to a model that
    rejects it; the answer is cut there client-side, so scoring is unchanged. Answers the hidden reasoning left
    empty or cut are scored (wrong) and counted per model: the records' `api_status` column and the metrics
    `<slot>/status/<status>`, `<slot>/reasoning_tokens`."""
    from ..teacher.backend import TeacherClientBackend
    from ..schemas import TeacherEndpointParams, TeacherModelParams

    endpoint = TeacherEndpointParams(base_url=cfg.api_base_url, api_key_env=cfg.api_key_env)
    spent = 0.0
    for entry in cfg.api_models:
        name = entry.model
        teacher = TeacherModelParams(label=name, model=name, reasoning_effort=entry.reasoning_effort)
        reasons = teacher.dialect == "reasoning" or entry.reasoning_effort is not None
        cap = entry.max_tokens or (cfg.api_reasoning_max_tokens if reasons else cfg.max_new_tokens)
        spec = name if (entry.reasoning_effort is None and cap == cfg.max_new_tokens) else \
            f"{name}@{entry.reasoning_effort}:{cap}"      # records keyed by effort and cap too
        slot = "api_" + "".join(ch if ch.isalnum() else "_" for ch in name)
        budget = entry.max_cost_usd if entry.max_cost_usd is not None else max(0.0, cfg.api_max_cost_usd - spent)
        api = TeacherClientBackend(teacher, endpoint, run.path("api_response_cache.sqlite"), max_cost_usd=budget,
                                   progress=False)
        result = evaluate(api, items, label=name, chunk_items=cfg.records_chunk_items,
                          records_dir=records_dir(run, cfg, slot, spec, message, "api"),
                          **{**kwargs, "mode": "generate", "max_new_tokens": cap})
        result.records["api_status"] = result.records["prompt"].map(api.statuses).fillna("from_records")
        out.results[name] = _ApiEvalResult(result.records, result.per_task, result.macro, result.micro,
                                           result.seconds, result.label, reasoning_tokens=api.reasoning_tokens)
        out.slots[name] = slot
        spent += api.spent_usd


@dataclass
class _ApiEvalResult(EvalResult):
    """An API model's result: also its answer statuses (ok, truncated, empty ...) and hidden reasoning tokens."""

    reasoning_tokens: int = 0

    def metrics(self, prefix: str) -> dict[str, float]:
        out = super().metrics(prefix)
        for status, n in self.records["api_status"].value_counts().items():
            out[f"{prefix}/status/{status}"] = int(n)
        out[f"{prefix}/reasoning_tokens"] = int(self.reasoning_tokens)
        return out


def _compare_system_messages(out: ZeroShotRun, cfg, run, items, kwargs, backend, spec, benchmark) -> None:
    keep = {get_task(benchmark, t).name for t in cfg.compare_tasks} if cfg.compare_tasks else set(items)
    subset = {t: subset_items(v, cfg.compare_n_items_per_task, cfg.seed) for t, v in items.items() if t in keep}
    if not subset:
        raise ValueError(f"compare_tasks {cfg.compare_tasks}: none of them is among the tasks run {list(items)}")
    slot = out.slots[out.system_message_model]
    for mid in cfg.compare_system_message_ids:
        if mid == cfg.system_message_id and cfg.mode == "generate":   # already scored: reuse, do not pay twice
            out.system_messages[mid] = _restrict(out.results[out.system_message_model], subset)
            continue
        message = SYSTEM_MESSAGES[mid] or None
        out.system_messages[mid] = evaluate(backend, subset, label=f"system message {mid}",
                                            chunk_items=cfg.records_chunk_items,
                                            records_dir=records_dir(run, cfg, slot, spec, message, f"sm{mid}"),
                                            **{**kwargs, "system_message": message})


def _restrict(result: EvalResult, items: dict[str, list[EvalItem]]) -> EvalResult:
    from .engine import summarize

    ids = {it.id for v in items.values() for it in v}
    records = result.records[result.records["id"].isin(ids)].reset_index(drop=True)
    per_task, macro, micro = summarize(records)
    return EvalResult(records, per_task, macro, micro, result.seconds * len(records) / len(result.records),
                      result.label)


def student_label(cfg) -> str:
    """How tables name notebook 04's student (`orca_utils.contracts.student_label` of the base model's label)."""
    return contracts.student_label(cfg.base_model_label)


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


def plot_accuracy(zs: ZeroShotRun, title: str):
    """Per task, the paper's way: our models' accuracies (Wilson 95% error bars; the published convention as a
    diamond) beside the paper's models (hatched; recalled numbers pale, missing ones "n/a", never a zero bar).
    Drawn by `orca_utils.evaluation.figures.plot_per_task`."""
    from .figures import plot_per_task

    return plot_per_task(zs, title)


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


def plot_relative_improvement(table: pd.DataFrame, title: str):
    """The paper's relative improvement beside ours (both conventions, with 95% error bars); missing: "n/a".
    The paper's bars take Orca-13B's colour, ours the tuned student's (`figure_style.color_for`)."""
    import matplotlib.pyplot as plt

    from .. import figure_style

    figure_style.apply()
    series = [("paper: Orca-13B over Vicuna-13B (%)", None, None)]
    for name in ("ours", "ours (published)"):
        if f"{name}: after over before (%)" in table.columns:
            series.append((f"{name}: after over before (%)", f"{name} 95% CI low (%)", f"{name} 95% CI high (%)"))
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(9, max(3, 0.28 * len(table) * len(series) / 2 + 1)))
    y = range(len(table))
    handles = []
    for k, (col, lo, hi) in enumerate(series):
        nan = pd.Series([math.nan] * len(table))
        values = pd.to_numeric(table[col], errors="coerce")
        low = pd.to_numeric(table[lo], errors="coerce") if lo else nan
        high = pd.to_numeric(table[hi], errors="coerce") if hi else nan
        color = figure_style.color_for(col, role=None if col.startswith("paper") else "tuned student")
        hatch = figure_style.PAPER_HATCH if col.startswith("paper") else ("...." if "published" in col else None)
        handles.append(figure_style.hbars(ax, [v + height * k for v in y], values.tolist(), low.tolist(),
                                          high.tolist(), height, col, color, hatch=hatch))
    ax.set_yticks([v + 0.4 - height / 2 for v in y], table["task"], fontsize=7)
    ax.set_ylim(-0.6, len(table) - 0.1)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("relative improvement (%), ours with paired bootstrap 95% intervals; n/a: missing")
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


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


def provenance(zs: ZeroShotRun, cfg) -> str:
    """One line naming the models, the data and the subset behind a table or figure."""
    per_task = cfg.n_items_per_task or "all"
    return (f"models: {', '.join(zs.results) or 'none'}; data: {zs.data_origin}, {zs.n_items} items "
            f"({per_task} per task, seed {cfg.seed}); zero-shot, {cfg.mode}, max_new_tokens {cfg.max_new_tokens}; "
            f"paper columns: Orca (arXiv 2306.02707) via orca_utils.reference")


def zero_shot_metrics(zs: ZeroShotRun) -> dict[str, float]:
    """Slash-path metrics of every model and system message (`<benchmark>/<model slot>/<task>/accuracy` ...)."""
    out: dict[str, float] = {f"{zs.benchmark}/n_items": zs.n_items, f"{zs.benchmark}/n_tasks": len(zs.items),
                             f"{zs.benchmark}/student_found": int(zs.student_found)}
    paper_tasks = [t for t in paper_task_set(zs.benchmark) if t in zs.items]
    out[f"{zs.benchmark}/n_paper_tasks"] = len(paper_tasks)
    for model, res in zs.results.items():
        slot = f"{zs.benchmark}/{zs.slots.get(model, model)}"
        out.update(res.metrics(slot))
        lo_hi = bootstrap_macro_interval([g["correct"].astype(float).to_numpy()
                                          for _, g in res.records.groupby("task", sort=False)])
        if not any(math.isnan(x) for x in lo_hi):           # undefined with 1 item per task: left out
            out[f"{slot}/macro_accuracy_ci95_low"], out[f"{slot}/macro_accuracy_ci95_high"] = \
                100.0 * lo_hi[0], 100.0 * lo_hi[1]
        # the paper's average is over its own task set (BBH: 23 of the 27): `macro_accuracy` is over all tasks run
        # (ours), `paper_tasks_macro_accuracy` over the paper's tasks among them, the number to set beside the paper's
        for conv, key in (("robust", "paper_tasks_macro_accuracy"),
                          ("published", "paper_tasks_published_macro_accuracy")):
            column = CONVENTION_COLUMNS[conv]
            recs = res.records[res.records["task"].isin(paper_tasks)]
            if paper_tasks and column in recs.columns and len(recs):
                out[f"{slot}/{key}"] = 100.0 * float(recs.groupby("task")[column].mean().mean())
    for mid, res in zs.system_messages.items():
        out[f"{zs.benchmark}/system_message_{mid}/macro_accuracy"] = res.macro
    return out


def summary_metrics(zs: ZeroShotRun) -> tuple[dict[str, float], dict[str, str]]:
    """(the notebook's metrics, their provenance) for the run's metrics.json."""
    return zero_shot_metrics(zs), {"models": ", ".join(zs.results), "data": zs.data_origin,
                                   "paper": "orca_utils.reference"}


def error_examples(zs: ZeroShotRun, per_task: int) -> pd.DataFrame:
    """Wrong answers of each model, `per_task` per task."""
    frames = [res.errors(per_task).assign(model=model) for model, res in zs.results.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
