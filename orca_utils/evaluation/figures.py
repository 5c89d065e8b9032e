"""The per-task figure of notebooks 05 (AGIEval) and 06 (BBH), drawn the paper's way: ours beside the paper's models.

The paper breaks both benchmarks down by task, one comparison per task (AGIEval: its Table 8 and the topical
breakdown figure of GPT-4, ChatGPT and Orca; BBH: its per-task table of ChatGPT, GPT-4, Vicuna-13B and Orca-13B).
`plot_per_task(zs, title)` draws that as one group of horizontal bars per task, the paper's macro average last:

* ours first, one bar per model scored (robust convention, `orca_utils.evaluation.extract`), the Wilson 95%
  interval as an error bar; the published convention (the benchmark authors' rule) is an open diamond on the same
  row;
* then the paper's models as `orca_utils.reference` has them (AGIEval: text-davinci-003, ChatGPT, GPT-4,
  Vicuna-13B, Orca-13B; BBH: ChatGPT, GPT-4, Vicuna-13B, Orca-13B), hatched, in their fixed colours
  (`figure_style.color_for`). A number recalled rather than read from a source is drawn pale and counted in the
  legend as unverified; a number the reference lacks is written "n/a", never drawn as a zero bar (a task the paper
  does not report at all, such as BBH's four free-response tasks, gets one "n/a" for all its models). The averages
  are the table's (`result_tables.paper_columns`): a recalled average is not drawn where the table says "not
  available".

More than 14 groups (BBH's 27 tasks) are split over two panels side by side. Every bar and "n/a" mark carries the
gid `<series>|<task>|<status>` (series: our model's label, `paper: <model>`, or `paper` for a task absent from the
paper; status: `ours`, the paper value's status, or `missing`), which the SVG keeps as
its id: tests (and readers of the SVG) can check what is drawn without reading pixels.
"""
from __future__ import annotations

import math

import numpy as np

from .result_tables import CONVENTION_COLUMNS, outcomes, paper_task_set, paper_values
from .stats import bootstrap_macro_interval, wilson_interval
from .tasks import task_specs

__all__ = ["AVERAGE", "MAX_ROWS_PER_PANEL", "PAPER_MODEL_NAMES", "paper_series", "plot_per_task"]

AVERAGE = "__average__"                         # the paper's average: the macro average (mean over tasks)
PAPER_MODEL_NAMES = {"TD-003": "text-davinci-003"}   # reference column -> the model's name in figure_style
MAX_ROWS_PER_PANEL = 14
PALE = 0.4                                      # alpha of a recalled (unverified) paper bar


def paper_series(benchmark: str) -> list[tuple[str, str, dict[str, tuple[object, str | None]]]]:
    """[(reference column, paper model, {task: (value or None, status)})] for the paper's models (not the human
    baselines), in the reference's column order."""
    from .. import figure_style

    values, columns = paper_values(benchmark)
    out = []
    for column in columns:
        model = PAPER_MODEL_NAMES.get(column, column)
        if model in figure_style.PAPER_COLORS:
            out.append((column, model, {task: row.get(column, (None, None)) for task, row in values.items()}))
    return out


def _ours(zs, model: str, conv: str, task: str) -> tuple[float, float, float]:
    """(accuracy %, Wilson low %, high %) of one model on one task (or the macro average, bootstrap interval);
    nan where not scored under that convention."""
    res = zs.results[model]
    if task == AVERAGE:
        column = CONVENTION_COLUMNS[conv]
        if column not in res.records.columns:
            return math.nan, math.nan, math.nan
        # beside the paper's average, ours over the paper's task set (BBH: 23 of the 27), all tasks if none of it ran
        paper = [t for t in paper_task_set(zs.benchmark) if t in zs.items]
        recs = res.records[res.records["task"].isin(paper)] if paper else res.records
        groups = [g[column].astype(float).to_numpy() for _, g in recs.groupby("task", sort=False)]
        lo, hi = bootstrap_macro_interval(groups)
        return 100.0 * float(np.mean([g.mean() for g in groups])), 100.0 * lo, 100.0 * hi
    out = outcomes(res, conv, task)
    if out is None or not len(out):
        return math.nan, math.nan, math.nan
    lo, hi = wilson_interval(int(out.sum()), len(out))
    return 100.0 * float(out.mean()), 100.0 * lo, 100.0 * hi


def _gid(series: str, task: str, status: str | None) -> str:
    return f"{series}|{task}|{status or 'missing'}"


def plot_per_task(zs, title: str):
    """Per task (and the macro average): our models' accuracies beside the paper's models (see the module
    docstring). Returns the figure; `Run.save_fig` adds the provenance line under it. With no accuracy of ours at
    all, the figure says why above the plot (`figure_style.note_missing_ours`)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .. import figure_style

    figure_style.apply()
    labels = {s.name: s.label for s in task_specs(zs.benchmark)}
    labels[AVERAGE] = "Average (macro, the paper's)"
    rows = [*zs.items, AVERAGE]
    paper = paper_series(zs.benchmark)
    ours = list(zs.results)
    n_series = len(ours) + len(paper)
    height = 0.8 / max(1, n_series)
    n_panels = 1 if len(rows) <= MAX_ROWS_PER_PANEL else 2
    per_panel = math.ceil(len(rows) / n_panels)
    panels = [rows[k * per_panel:(k + 1) * per_panel] for k in range(n_panels)]
    legend_rows = math.ceil((len(ours) + 1 + len(paper) + 1) / 3)
    fig_h = max(3.0, per_panel * (0.09 * n_series + 0.14) + 0.9 + 0.18 * legend_rows)
    fig, axes = plt.subplots(1, n_panels, figsize=(7.5 if n_panels == 1 else 11.0, fig_h), squeeze=False)
    any_recalled, drawn = False, []                 # drawn: every accuracy of ours (NaN: "n/a")
    for ax, panel in zip(axes[0], panels):
        centers = {task: len(panel) - 1 - i for i, task in enumerate(panel)}          # first task on top

        def ys(k: int, centers=centers, panel=panel) -> list[float]:                 # series k's bar per task
            return [centers[t] + 0.4 - height / 2 - k * height for t in panel]
        for k, model in enumerate(ours):
            color = figure_style.color_for(model)
            robust = [_ours(zs, model, "robust", t) for t in panel]
            drawn += [v for v, _lo, _hi in robust]
            published = [_ours(zs, model, "published", t)[0] for t in panel]
            for y, task, (v, lo, hi), pub in zip(ys(k), panel, robust, published):
                if math.isnan(v):
                    ax.text(0, y, " n/a", va="center", fontsize=5.5, color="0.3", gid=_gid(model, task, None))
                    continue
                bar = ax.barh([y], [v], height=height, color=color, linewidth=0)[0]
                bar.set_gid(_gid(model, task, "ours"))
                if not (math.isnan(lo) or math.isnan(hi)):
                    ax.errorbar([v], [y], xerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], fmt="none", ecolor="0.2",
                                elinewidth=0.7, capsize=1.5)
                if not math.isnan(pub):
                    ax.plot([pub], [y], ls="none", marker="D", ms=3, mfc="white", mec=color, mew=0.9, zorder=4)
        absent = {t for t in panel if all(cells.get(t, (None, None))[0] is None for _c, _m, cells in paper)}
        for task in absent:                      # a task the paper does not report: one mark, not one per model
            y = centers[task] + 0.4 - height / 2 - (len(ours) + (len(paper) - 1) / 2) * height
            ax.text(0, y, " n/a: not in the paper's table", va="center", fontsize=6, color="0.3",
                    gid=_gid("paper", task, None))
        for k, (_column, model, cells) in enumerate(paper, start=len(ours)):
            color = figure_style.color_for(model)
            for y, task in zip(ys(k), panel):
                value, status = cells.get(task, (None, None))
                if task in absent:
                    continue
                if value is None:
                    ax.text(0, y, " n/a", va="center", fontsize=5.5, color="0.3",
                            gid=_gid(f"paper: {model}", task, None))
                    continue
                recalled = "recalled" in str(status)
                any_recalled |= recalled
                bar = ax.barh([y], [float(value)], height=height, color=color, hatch=figure_style.PAPER_HATCH,
                              edgecolor="white", linewidth=0, alpha=PALE if recalled else 1.0)[0]
                bar.set_gid(_gid(f"paper: {model}", task, status))
        ax.set_yticks(list(centers.values()), [labels.get(t, t) for t in panel], fontsize=7)
        ax.set_ylim(-0.6, len(panel) - 0.4)
        ax.set_xlim(0, 101.5)                                              # room for a marker at 100%
        ax.set_xticks(range(0, 101, 20))
        ax.grid(axis="y", visible=False)
        for c in centers.values():                                          # thin rules between the tasks
            ax.axhline(c - 0.5, color="0.85", lw=0.5, zorder=0)
        ax.set_xlabel("accuracy (%)")
    handles = [Patch(facecolor=figure_style.color_for(m), label=f"ours: {m}") for m in ours]
    handles.append(Line2D([], [], ls="none", marker="D", ms=4, mfc="white", mec="0.3",
                          label="ours, published convention (error bars: 95% Wilson; macro: bootstrap)"))
    handles += [Patch(facecolor=figure_style.color_for(model), hatch=figure_style.PAPER_HATCH, edgecolor="white",
                      label=f"paper: {model}") for _c, model, _cells in paper]
    if any_recalled:
        handles.append(Patch(facecolor="0.5", alpha=PALE, hatch=figure_style.PAPER_HATCH, edgecolor="white",
                             label="pale: paper number recalled, unverified"))
    handles.append(Line2D([], [], ls="none", marker="$n/a$", ms=9, color="0.3", label="no number (never a zero bar)"))
    if n_panels == 1:
        axes[0][0].set_title(title, fontsize=9)
    else:
        fig.suptitle(title, fontsize=9)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=6.5, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, (0.18 * legend_rows + 0.15) / fig_h, 1, 1))
    figure_style.note_missing_ours(fig, drawn, "no item was scored" if ours else "no model was scored")
    return fig
