"""Zero-shot evaluation runs of notebooks 05 (AGIEval) and 06 (BBH), and their tables and figures beside the paper.

`run_zero_shot(cfg, run, benchmark)` does a notebook's whole evaluation: load the tasks (subset per the params),
score the untuned student and notebook 04's student (when it exists) and any API models, then the
system-message comparison; it returns a `ZeroShotRun`. The table builders (in `orca_utils.evaluation.result_tables`,
re-exported here for the notebooks) put our accuracies (with the number of
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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import contracts
from ..backends.resident import ResidentBackends, generation_backend
from ..data import resolve_dataset
from .engine import EvalResult, evaluate
from .figures import plot_per_task
from .result_tables import (BENCHMARK_NAMES, CONVENTION_COLUMNS, ZeroShotRun, accuracy_table, macro_rows, outcomes,
                            paired_table, paper_columns, paper_task_set, paper_values, relative_improvement,
                            orca2_reference_table, system_message_table)
from .stats import bootstrap_macro_interval
from .tasks import EvalItem, get_task, load_benchmark, subset_items
from ..provenance import Provenance, data_source, source, student_source
from ..strategies import GENERIC_SYSTEM_MESSAGE
from ..system_messages import SYSTEM_MESSAGES

__all__ = ["ZeroShotRun", "run_zero_shot", "records_dir", "paper_values", "paper_columns",
           "outcomes", "paper_task_set", "macro_rows", "accuracy_table", "relative_improvement", "system_message_table",
           "plot_relative_improvement", "plot_accuracy", "paired_table", "BENCHMARK_NAMES", "student_label",
           "provenance", "error_examples", "zero_shot_metrics", "summary_metrics", "eval_system_message",
           "orca2_reference_table"]


def records_dir(run, cfg, slot: str, spec: str, system_message: str | None, tag: str) -> Path:
    """Where one model's per-item records are saved as they are scored, keyed by everything that shapes them
    (model files, generation settings, system message): a rerun with the same key resumes, any change starts a
    new folder."""
    weights = [p for p in Path(spec).glob("*.safetensors")] if Path(spec).is_dir() else []
    key = json.dumps([spec, sorted((p.name, p.stat().st_mtime_ns) for p in weights), cfg.mode, cfg.max_new_tokens,
                      cfg.max_len_tokens, cfg.serve, system_message, cfg.seed, cfg.n_items_per_task])
    return run.path("records") / f"{slot}-{tag}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def eval_system_message(cfg) -> tuple[str | None, str]:
    """(the main table's system message or None for none, how the tables name it), from `eval_system_message`:
    the paper's message `system_message_id` (Orca 1), none, or Orca 2's generic (cautious) message."""
    if cfg.eval_system_message == "generic":
        return GENERIC_SYSTEM_MESSAGE, "generic (Orca 2's cautious message)"
    if cfg.eval_system_message == "empty" or not SYSTEM_MESSAGES[cfg.system_message_id]:
        return None, "empty"
    return SYSTEM_MESSAGES[cfg.system_message_id], f"paper's message {cfg.system_message_id}"


def run_zero_shot(cfg, run, benchmark: str) -> ZeroShotRun:
    """Evaluate every configured model on `benchmark` (see the module docstring)."""
    location = resolve_dataset(benchmark, cfg.data_dir, cfg.offline)
    full = load_benchmark(location.path, benchmark, cfg.tasks)
    items = {t: subset_items(v, cfg.n_items_per_task, cfg.seed) for t, v in full.items()}
    out = ZeroShotRun(benchmark, items, data_origin=f"{benchmark} ({location.origin})")
    message, out.system_message_label = eval_system_message(cfg)
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
            out.sources.append(student_source(slot, label, cfg.student_model))   # base, or tuned from it
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
        out.sources.append(source(slot, name, "real"))      # a model behind an API endpoint
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


def plot_accuracy(zs: ZeroShotRun, title: str):
    """Per task, the paper's way: our models' accuracies (Wilson 95% error bars; the published convention as a
    diamond) beside the paper's models (hatched; recalled numbers pale, missing ones "n/a", never a zero bar).
    Drawn by `orca_utils.evaluation.figures.plot_per_task`."""
    return plot_per_task(zs, title)


def plot_relative_improvement(table: pd.DataFrame, title: str):
    """The paper's relative improvement beside ours (both conventions, with 95% error bars); missing: "n/a".
    The paper's bars take Orca-13B's colour, ours the tuned student's (`figure_style.color_for`). With no value
    of ours at all, the figure says why above the plot (`figure_style.note_missing_ours`)."""
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
    ours = [v for col, _lo, _hi in series[1:] for v in pd.to_numeric(table[col], errors="coerce")]
    tested = [v for c in table.columns if c.endswith("McNemar p") for v in pd.to_numeric(table[c], errors="coerce")]
    figure_style.note_missing_ours(fig, ours, "the untuned model scored 0% on every paired task: no relative "
                                   "improvement over 0%" if any(v == v for v in tested) else
                                   "no item was scored by both the untuned and the tuned model")
    return fig


def provenance(zs: ZeroShotRun, cfg) -> str:
    """One line naming the models, the data and the subset behind a table or figure."""
    per_task = cfg.n_items_per_task or "all"
    return (f"models: {', '.join(zs.results) or 'none'}; data: {zs.data_origin}, {zs.n_items} items "
            f"({per_task} per task, seed {cfg.seed}); zero-shot, {cfg.mode}, max_new_tokens {cfg.max_new_tokens}; "
            f"system message: {zs.system_message_label or 'empty'}; "
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
    return zero_shot_metrics(zs), Provenance({"models": ", ".join(zs.results), "data": zs.data_origin,
                                              "paper": "orca_utils.reference"},
                                             sources=[*zs.sources, data_source(zs.data_origin)])


def error_examples(zs: ZeroShotRun, per_task: int) -> pd.DataFrame:
    """Wrong answers of each model, `per_task` per task."""
    frames = [res.errors(per_task).assign(model=model) for model, res in zs.results.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
