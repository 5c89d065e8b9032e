"""Zero-shot evaluation runs of notebooks 05 (AGIEval) and 06 (BBH), and their tables and figures beside the paper.

`run_zero_shot(cfg, run, benchmark)` does a notebook's whole evaluation: load the tasks (subset per the params),
score the untuned student and notebook 04's student (when it exists) and any API models, then the
system-message comparison; it returns a `ZeroShotRun`. The table builders put our accuracies (with the number of
items and the extraction-failure rate per task) beside the paper's columns from `orca_utils.reference`, shown with
their status ("(unverified)" for recalled numbers, "not available" where the paper's number is missing).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .data import resolve_dataset
from .eval_mcq import EvalResult, evaluate
from .eval_tasks import EvalItem, get_task, load_benchmark, subset_items, task_specs
from .reference import NOT_AVAILABLE, format_paper_value, paper_block
from .system_messages import SYSTEM_MESSAGES

__all__ = ["ZeroShotRun", "run_zero_shot", "paper_columns", "accuracy_table", "relative_improvement",
           "system_message_table", "plot_relative_improvement"]

PAPER_BLOCKS = {"agieval": "agieval_zero_shot", "bbh": "bbh_zero_shot"}


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


def _hf_backend(model, cfg, label: str):
    from .generate import HFBackend

    return HFBackend(model, batch_size=cfg.batch_size, device=cfg.device, max_len_tokens=cfg.max_len_tokens,
                     label=label)


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
    trained = run.upstream("04_training", required=False)
    student_dir = Path(trained) / "student" if trained else None
    out.student_found = bool(student_dir and (student_dir / "config.json").exists())
    if out.student_found:
        models.append((student_label(cfg), str(student_dir), "student"))
    for label, spec, slot in models:
        out.slots[label] = slot
        backend = _hf_backend(spec, cfg, label)
        out.results[label] = evaluate(backend, items, label=label, **kwargs)
        out.system_message_model = label            # the comparison uses the last (trained, when present) model
        last_backend = backend
    if cfg.api_models:
        from .generate import OpenAIBackend

        for name in cfg.api_models:
            api = OpenAIBackend(cfg.api_base_url, name, api_key_env=cfg.api_key_env, label=name)
            out.results[name] = evaluate(api, items, label=name, **{**kwargs, "mode": "generate"})
            out.slots[name] = "api_" + "".join(ch if ch.isalnum() else "_" for ch in name)
    if models and cfg.compare_system_message_ids:
        keep = {get_task(benchmark, t).name for t in cfg.compare_tasks} if cfg.compare_tasks else set(items)
        subset = {t: subset_items(v, cfg.compare_n_items_per_task, cfg.seed) for t, v in items.items() if t in keep}
        if not subset:
            raise ValueError(f"compare_tasks {cfg.compare_tasks}: none of them is among the tasks run {list(items)}")
        for mid in cfg.compare_system_message_ids:
            if mid == cfg.system_message_id and cfg.mode == "generate":   # already scored: reuse, do not pay twice
                out.system_messages[mid] = _restrict(out.results[out.system_message_model], subset)
                continue
            out.system_messages[mid] = evaluate(last_backend, subset, label=f"system message {mid}",
                                                **{**kwargs, "system_message": SYSTEM_MESSAGES[mid] or None})
    return out


def _restrict(result: EvalResult, items: dict[str, list[EvalItem]]) -> EvalResult:
    from .eval_mcq import summarize

    ids = {it.id for v in items.values() for it in v}
    records = result.records[result.records["id"].isin(ids)].reset_index(drop=True)
    per_task, macro, micro = summarize(records)
    return EvalResult(records, per_task, macro, micro, result.seconds * len(records) / len(result.records),
                      result.label)


def student_label(cfg) -> str:
    """How tables name notebook 04's student: the base model's label with 'Orca-tuned'."""
    base = cfg.base_model_label.split(" (")[0]
    return f"{base} + Orca tuning (notebook 04 student)"


def paper_columns(benchmark: str) -> tuple[dict[str, dict[str, str]], list[str], str]:
    """({task name: {paper column: formatted value}}, columns, status line) from the reference data."""
    block = paper_block(PAPER_BLOCKS[benchmark])
    cells: dict[str, dict[str, str]] = {}
    if benchmark == "bbh":
        columns = [c for c in block["columns"] if "relative" not in c]
        for row in block.get("rows") or []:
            cells[row["task_id"]] = {c: format_paper_value(row.get(c), block.get("status")) for c in columns}
        average = {c: format_paper_value(block["average"].get(c), block.get("average_status")) for c in columns}
    else:
        columns = list(block["columns"])
        recalled = block.get("rows_recalled") or {}
        by_label = {s.label: s.name for s in task_specs("agieval")}
        for label, row in (recalled.get("rows") or {}).items():
            cells[by_label.get(label, label)] = {c: format_paper_value(row.get(c), recalled.get("status"))
                                                 for c in columns}
        for label, row in (block.get("rows") or {}).items():      # sourced cells override recalled ones
            for c in columns:
                if row.get(c) is not None:
                    cells.setdefault(by_label.get(label, label), {})[c] = format_paper_value(row[c], row["status"])
        average = {}
        for c in columns:
            entry = (block.get("average") or {}).get(c)
            average[c] = format_paper_value(entry["value"], entry["status"]) if entry else NOT_AVAILABLE
    cells["__average__"] = average
    status = f"paper {block.get('paper_location', '')}: {block.get('status')}; {block.get('status_detail', '')}"
    return cells, columns, status


def accuracy_table(zs: ZeroShotRun) -> pd.DataFrame:
    """Per task: items scored, each model's accuracy and extraction-failure rate (%), then the paper's columns."""
    cells, columns, _ = paper_columns(zs.benchmark)
    labels = {s.name: s.label for s in task_specs(zs.benchmark)}
    rows = []
    for task, items in zs.items.items():
        row = {"task": labels.get(task, task), "items": len(items)}
        for model, res in zs.results.items():
            pt = res.per_task.set_index("task")
            row[f"{model}: acc %"] = round(float(pt.loc[task, "accuracy"]), 1)
            row[f"{model}: extraction failures %"] = round(float(pt.loc[task, "failure_rate"]), 1)
        for c in columns:
            row[f"paper {c}"] = cells.get(task, {}).get(c, NOT_AVAILABLE)
        rows.append(row)
    for name, fn in (("macro average (paper's)", "macro"), ("micro average", "micro")):
        row = {"task": name, "items": zs.n_items}
        for model, res in zs.results.items():
            row[f"{model}: acc %"] = round(getattr(res, fn), 1)
            row[f"{model}: extraction failures %"] = round(float(res.records["failed"].mean() * 100), 1)
        for c in columns:
            row[f"paper {c}"] = cells["__average__"].get(c, NOT_AVAILABLE) if fn == "macro" else NOT_AVAILABLE
        rows.append(row)
    return pd.DataFrame(rows)


def relative_improvement(zs: ZeroShotRun, before: str, after: str) -> pd.DataFrame:
    """Per task, as the paper's figures: the paper's Orca-13B over Vicuna-13B (%), and ours: after over before."""
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
    rows = []
    for task in zs.items:
        ours = None
        if before in zs.results and after in zs.results:
            b = zs.results[before].per_task.set_index("task").loc[task, "accuracy"]
            a = zs.results[after].per_task.set_index("task").loc[task, "accuracy"]
            ours = 100.0 * (a / b - 1) if b > 0 else None
        value = paper.get(task)
        rows.append({"task": task, "paper: Orca-13B over Vicuna-13B (%)": None if value is None else round(value, 1),
                     "paper status": paper_status if value is not None else NOT_AVAILABLE,
                     "ours: after over before (%)": None if ours is None else round(ours, 1)})
    return pd.DataFrame(rows)


def plot_relative_improvement(table: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, max(3, 0.28 * len(table) + 1)))
    y = range(len(table))
    for k, col in enumerate([c for c in table.columns if c.endswith("(%)")]):
        values = pd.to_numeric(table[col], errors="coerce").fillna(0.0)
        ax.barh([v + 0.4 * k for v in y], values, height=0.4, label=col)
    ax.set_yticks([v + 0.2 for v in y], table["task"], fontsize=7)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("relative improvement (%); missing values drawn as 0")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def system_message_table(zs: ZeroShotRun) -> pd.DataFrame:
    """Macro/micro accuracy and failure rate per system message (the paper's Table 9 has no numbers to show)."""
    rows = []
    for mid, res in zs.system_messages.items():
        text = SYSTEM_MESSAGES[mid]
        rows.append({"system message id": mid, "system message": (text[:70] + "...") if len(text) > 70 else
                     (text or "<empty system message>"), "items": int(res.per_task["n"].sum()),
                     "macro acc %": round(res.macro, 1), "micro acc %": round(res.micro, 1),
                     "extraction failures %": round(float(res.records["failed"].mean() * 100), 1),
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
    for model, res in zs.results.items():
        out.update(res.metrics(f"{zs.benchmark}/{zs.slots.get(model, model)}"))
    for mid, res in zs.system_messages.items():
        out[f"{zs.benchmark}/system_message_{mid}/macro_accuracy"] = res.macro
    return out


def error_examples(zs: ZeroShotRun, per_task: int) -> pd.DataFrame:
    """Wrong answers of each model, `per_task` per task."""
    frames = [res.errors(per_task).assign(model=model) for model, res in zs.results.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
