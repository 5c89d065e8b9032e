"""Accuracy tables with confidence intervals, and the figures, for the explanation-vs-answer experiment.

Intervals: with two or more seeds, a Student-t 95% interval over the per-seed accuracies (each seed redraws the
training problems, the initialisation and the data order, so it covers all of the run-to-run variation); with one
seed (the smoke profile) only the item sampling can be measured, so a Wilson 95% interval over the evaluated items
is given instead, and the table says which (`ci_method`).
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

__all__ = ["summarize", "plot_accuracy", "plot_curves"]


def _interval(per_seed: np.ndarray, correct: int, n_items: int) -> tuple[float, float, str]:
    from scipy import stats

    if len(per_seed) >= 2:
        mean, sem = per_seed.mean(), per_seed.std(ddof=1) / np.sqrt(len(per_seed))
        half = stats.t.ppf(0.975, len(per_seed) - 1) * sem
        return max(0.0, mean - half), min(1.0, mean + half), f"t over {len(per_seed)} seeds"
    ci = stats.binomtest(int(correct), int(n_items)).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high), f"Wilson over {n_items} items (1 seed)"


def summarize(evals: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (%) per variant and task, plus `all` (the mean over tasks), with 95% intervals."""
    per_seed = evals.groupby(["variant", "task", "seed"])["correct"].agg(["mean", "sum", "count"]).reset_index()
    overall = per_seed.groupby(["variant", "seed"]).agg(mean=("mean", "mean"), sum=("sum", "sum"),
                                                        count=("count", "sum")).reset_index().assign(task="all")
    rows = []
    for (variant, task), g in pd.concat([per_seed, overall]).groupby(["variant", "task"], sort=False):
        lo, hi, method = _interval(g["mean"].to_numpy(), int(g["sum"].sum()), int(g["count"].sum()))
        rows.append({"task": task, "variant": variant, "accuracy_pct": round(100 * g["mean"].mean(), 1),
                     "ci_low_pct": round(100 * lo, 1), "ci_high_pct": round(100 * hi, 1),
                     "seeds": len(g), "items_per_seed": int(g["count"].iloc[0]),
                     "per_seed_pct": " / ".join(f"{100 * v:.1f}" for v in g["mean"]), "ci_method": method})
    out = pd.DataFrame(rows)
    order = {t: i for i, t in enumerate(list(dict.fromkeys(evals["task"])) + ["all"])}
    return out.sort_values(["task", "variant"], key=lambda c: c.map(order) if c.name == "task" else c) \
        .reset_index(drop=True)


def plot_accuracy(summary: pd.DataFrame):
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(summary["task"]))
    variants = list(dict.fromkeys(summary["variant"]))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(variants)
    for j, v in enumerate(variants):
        part = summary[summary["variant"] == v].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (j - (len(variants) - 1) / 2) * width
        err = np.vstack([part["accuracy_pct"] - part["ci_low_pct"], part["ci_high_pct"] - part["accuracy_pct"]])
        ax.bar(x, part["accuracy_pct"], width, yerr=err, capsize=3, label=v)
    ax.set_xticks(np.arange(len(tasks)), [textwrap.fill(t.replace("_", " "), 12) for t in tasks], fontsize=8)
    ax.set_ylabel("BBH accuracy (%), 95% CI")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    for variant, g in curves.groupby("variant", sort=False):
        mean = g.groupby("tokens")["loss"].mean()
        smooth = mean.rolling(max(1, len(mean) // 30), min_periods=1).mean()
        ax.plot(smooth.index / 1e6, smooth.values, label=variant)
    ax.set_xlabel("training tokens (millions; same budget for every variant)")
    ax.set_ylabel("loss on response tokens")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
