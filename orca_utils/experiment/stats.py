"""Tables, paired tests, the difficulty curve, the token-cap share and the generated conclusion of notebook 09.

Intervals: with two or more seeds, a Student-t 95% interval over the per-seed accuracies (each seed redraws the
training problems, the initialisation and the data order, so it covers all of the run-to-run variation); with one
seed (the smoke profile) only the item sampling can be measured, so a Wilson 95% interval over the evaluated items
is given instead, and the table says which (`ci_method`).

The pre-registered test (`paired_tests`), per control, comparison and task: an exact McNemar test (two-sided
binomial test on the discordant pairs) on the items paired across the two variants, pooled over seeds (a pair is
one item under one seed: both students of a seed answered it), Holm-corrected over the tasks; a difference counts
only when the corrected p is below `alpha` AND every seed's accuracy difference has the same sign (so no single
seed carries it). The paired t over the per-seed differences is reported beside it (with 3 seeds it has 2 degrees
of freedom and little power; it is not the decision). `conclusion` writes the notebook's conclusion from these
numbers alone.

The validity gate (`validity_gate`), pre-registered and read before any comparison: the explanation student must
reproduce the teacher's whole trace exactly on at least `gate_threshold` of the held-out chain problems at the
shortest trained length (in distribution). A student that cannot execute the traces it was shown cannot test whether
traces help; when the gate fails, `conclusion` says "underpowered: no conclusion" and names no winner.
"""
from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd

__all__ = ["validity_gate", "gate_metrics", "apply_gate", "pair_stats", "summarize", "wide_table", "paired_tests",
           "curve_summary", "curve_tests", "cap_shares", "trace_fidelity", "best_constant",
           "experiment_metrics", "summary_metrics", "conclusion", "plot_accuracy", "plot_difficulty",
           "plot_curves", "PAIRS"]

PAIRS = (("explanation", "answer_only"), ("progressive", "explanation"))


def _interval(per_seed: np.ndarray, correct: int, n_items: int) -> tuple[float, float, str]:
    from scipy import stats

    if len(per_seed) >= 2:
        mean, sem = per_seed.mean(), per_seed.std(ddof=1) / np.sqrt(len(per_seed))
        half = stats.t.ppf(0.975, len(per_seed) - 1) * sem
        return max(0.0, mean - half), min(1.0, mean + half), f"t over {len(per_seed)} seeds"
    ci = stats.binomtest(int(correct), int(n_items)).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high), f"Wilson over {n_items} items (1 seed)"


def _order(values, first=()) -> dict:
    seen = list(dict.fromkeys([*first, *values]))
    return {v: i for i, v in enumerate(seen)}


def summarize(evals: pd.DataFrame, subset: str = "bbh") -> pd.DataFrame:
    """Accuracy (%) per control, task and variant, plus `all` (the mean over tasks), with 95% intervals and the
    share of outputs that hit the token cap."""
    ev = evals[evals["set"] == subset] if "set" in evals else evals
    keys = ["control", "variant", "task", "seed"]
    per_seed = ev.assign(cap=ev["finish_reason"] == "length").groupby(keys).agg(
        mean=("correct", "mean"), sum=("correct", "sum"), count=("correct", "size"), cap=("cap", "mean")).reset_index()
    overall = per_seed.groupby(["control", "variant", "seed"]).agg(
        mean=("mean", "mean"), sum=("sum", "sum"), count=("count", "sum"), cap=("cap", "mean")).reset_index()
    rows = []
    for (control, variant, task), g in pd.concat([per_seed, overall.assign(task="all")]).groupby(
            ["control", "variant", "task"], sort=False):
        lo, hi, method = _interval(g["mean"].to_numpy(), int(g["sum"].sum()), int(g["count"].sum()))
        rows.append({"control": control, "task": task, "variant": variant,
                     "accuracy_pct": round(100 * g["mean"].mean(), 1), "ci_low_pct": round(100 * lo, 1),
                     "ci_high_pct": round(100 * hi, 1), "seeds": len(g), "items_per_seed": int(g["count"].iloc[0]),
                     "per_seed_pct": " / ".join(f"{100 * v:.1f}" for v in g["mean"]),
                     "token_cap_pct": round(100 * g["cap"].mean(), 1), "ci_method": method})
    out = pd.DataFrame(rows)
    task_order = _order([*ev["task"], "all"])
    ctl_order, var_order = _order(ev["control"]), _order(ev["variant"])
    return out.sort_values(["control", "task", "variant"], key=lambda c: c.map(
        {"control": ctl_order, "task": task_order, "variant": var_order}[c.name])).reset_index(drop=True)


def wide_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per task, one column per control and variant: "accuracy (low-high)"."""
    cell = summary.assign(cell=[f"{a:.1f} ({lo:.1f}-{hi:.1f})" for a, lo, hi in
                                zip(summary["accuracy_pct"], summary["ci_low_pct"], summary["ci_high_pct"])])
    wide = cell.pivot_table(index="task", columns=["control", "variant"], values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(list(dict.fromkeys(summary["task"])))
    wide.columns = [f"{c} / {v}" for c, v in wide.columns]
    return wide.reset_index()


def _holm(p: list[float]) -> list[float]:
    order = np.argsort(p)
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _pair_stats(piv: pd.DataFrame, a: str, b: str) -> dict:
    from scipy import stats

    ca, cb = piv[a].astype(bool), piv[b].astype(bool)
    better, worse = int((ca & ~cb).sum()), int((~ca & cb).sum())
    p = stats.binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0
    diffs = (ca.astype(float) - cb.astype(float)).groupby(level="seed").mean()
    with warnings.catch_warnings():          # near-identical per-seed differences: scipy warns, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        t_p = float(stats.ttest_1samp(diffs, 0.0).pvalue) if len(diffs) >= 2 and diffs.std() > 1e-12 \
            else float("nan")
    return {"acc_a_pct": round(100 * ca.groupby(level="seed").mean().mean(), 1),
            "acc_b_pct": round(100 * cb.groupby(level="seed").mean().mean(), 1),
            "diff_pp": round(100 * diffs.mean(), 1), "per_seed_diff_pp": " / ".join(f"{100 * d:+.1f}" for d in diffs),
            "a_only": better, "b_only": worse, "pairs": len(piv), "p_mcnemar": float(p), "p_paired_t": t_p,
            "same_sign": bool((diffs > 0).all() or (diffs < 0).all()), "seeds": len(diffs)}


def pair_stats(piv: pd.DataFrame, a: str, b: str, alpha: float) -> dict:
    """McNemar (exact) and the per-seed sign rule on items paired across columns `a` and `b` of `piv` (indexed by
    seed and item), with its verdict: the pre-registered test, for one comparison."""
    row = _pair_stats(piv, a, b)
    return {**row, "verdict": _verdict(row, alpha, a, b, p_key="p_mcnemar")}


def _verdict(row: dict, alpha: float, a: str, b: str, p_key: str = "p_holm") -> str:
    if row[p_key] < alpha and (row["same_sign"] or row["seeds"] < 2):
        return f"{a} better" if row["diff_pp"] > 0 else f"{b} better"
    return "no difference shown"


def paired_tests(evals: pd.DataFrame, alpha: float = 0.05, pairs=PAIRS) -> pd.DataFrame:
    """The pre-registered paired test per control, comparison and task (see the module docstring)."""
    ev = evals[evals["set"] == "bbh"]
    rows = []
    for control in dict.fromkeys(ev["control"]):
        sub = ev[ev["control"] == control]
        for a, b in pairs:
            if not {a, b} <= set(sub["variant"]):
                continue
            piv = sub[sub["variant"].isin([a, b])].pivot_table(index=["seed", "task", "item"], columns="variant",
                                                               values="correct", aggfunc="first").dropna()
            part = [{"control": control, "comparison": f"{a} vs {b}", "task": t,
                     **_pair_stats(piv.xs(t, level="task", drop_level=False), a, b)}
                    for t in dict.fromkeys(sub["task"])]
            for row, adj in zip(part, _holm([r["p_mcnemar"] for r in part])):
                row["p_holm"] = adj
            overall = {"control": control, "comparison": f"{a} vs {b}", "task": "all", **_pair_stats(piv, a, b)}
            overall["p_holm"] = overall["p_mcnemar"]            # its own single test: no correction
            for row in [*part, overall]:
                row["verdict"] = _verdict(row, alpha, a, b)
                rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("p_mcnemar", "p_holm", "p_paired_t"):
        out[col] = out[col].map(lambda v: float(f"{v:.3g}"))
    return out


def curve_summary(evals: pd.DataFrame, trained: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """Accuracy (%) against the number of steps, per control, task and variant, on the curve's held-out problems;
    the BBH items of the same tasks, grouped by their own number of steps, come beside them (`set` = bbh).
    `trained` (task -> [lo, hi], the chain tasks' trained lengths) adds `in_training_range` (None for other tasks)."""
    ev = evals.assign(cap=evals["finish_reason"] == "length")
    curve_tasks = set(ev.loc[ev["set"] == "curve", "task"])
    ev = ev[ev["task"].isin(curve_tasks)]
    per_seed = ev.groupby(["set", "control", "task", "steps", "variant", "seed"]).agg(
        mean=("correct", "mean"), sum=("correct", "sum"), count=("correct", "size"), cap=("cap", "mean"))
    rows = []
    for key, g in per_seed.reset_index().groupby(["set", "control", "task", "steps", "variant"], sort=False):
        lo, hi, _ = _interval(g["mean"].to_numpy(), int(g["sum"].sum()), int(g["count"].sum()))
        rows.append(dict(zip(["set", "control", "task", "steps", "variant"], key),
                         accuracy_pct=round(100 * g["mean"].mean(), 1), ci_low_pct=round(100 * lo, 1),
                         ci_high_pct=round(100 * hi, 1), items_per_seed=int(g["count"].iloc[0]),
                         token_cap_pct=round(100 * g["cap"].mean(), 1)))
    columns = ["set", "control", "task", "steps", "variant", "accuracy_pct", "ci_low_pct", "ci_high_pct",
               "items_per_seed", "token_cap_pct"]
    if not rows:                  # no task with a difficulty curve among the tasks run
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)
    if trained:
        out["in_training_range"] = [trained[t][0] <= k <= trained[t][1] if t in trained else None
                                    for t, k in zip(out["task"], out["steps"])]
    return out.sort_values(["set", "control", "task", "variant", "steps"], ascending=[False, True,
                                                                                                     True, True, True])


def curve_tests(evals: pd.DataFrame, alpha: float = 0.05, a: str = "explanation", b: str = "answer_only"):
    """Per control, curve task and number of steps: explanation vs answer-only, McNemar on the held-out problems
    paired across the two variants, pooled over seeds (uncorrected: a description of where the gap opens)."""
    ev = evals[(evals["set"] == "curve") & evals["variant"].isin([a, b])]
    rows = []
    for (control, task, steps), g in ev.groupby(["control", "task", "steps"], sort=False):
        piv = g.pivot_table(index=["seed", "item"], columns="variant", values="correct", aggfunc="first").dropna()
        if {a, b} <= set(piv.columns):
            row = {"control": control, "task": task, "steps": int(steps), **_pair_stats(piv, a, b)}
            row["p_mcnemar"] = float(f"{row['p_mcnemar']:.3g}")
            row["verdict"] = _verdict(row, alpha, a, b, p_key="p_mcnemar")
            rows.append(row)
    return pd.DataFrame(rows)


def cap_shares(evals: pd.DataFrame) -> pd.DataFrame:
    """Per control and variant (and item set): how generation ended, in % of outputs, and the mean new tokens."""
    g = evals.groupby(["control", "variant", "set"], sort=False)
    out = g["finish_reason"].value_counts(normalize=True).unstack(fill_value=0.0).mul(100).round(1)
    for col in ("eos", "answer_line", "length"):
        if col not in out:
            out[col] = 0.0
    out = out[["eos", "answer_line", "length"]].rename(columns={"eos": "eos_pct", "answer_line": "answer_line_pct",
                                                                 "length": "token_cap_pct"})
    out["mean_new_tokens"] = g["new_tokens"].mean().round(1)
    return out.reset_index()


def trace_fidelity(evals: pd.DataFrame) -> pd.DataFrame:
    """Can the students that were taught traces follow them? Per control, variant (full-trace ones) and task, on the
    BBH items: the mean share of the teacher's steps reproduced exactly from the start (`steps_right_pct`), the share
    of items with every step right (`trace_exact_pct`) and the accuracy on those items and on the others."""
    ev = evals[(evals["set"] == "bbh") & evals["trace_steps"].notna()].copy()
    ev["exact"] = ev["trace_steps_right"] == ev["trace_steps"]
    ev["share"] = ev["trace_steps_right"] / ev["trace_steps"]
    rows = []
    for (control, variant, task), g in pd.concat([ev, ev.assign(task="all")]).groupby(
            ["control", "variant", "task"], sort=False):
        rows.append({"control": control, "variant": variant, "task": task,
                     "steps_right_pct": round(100 * g["share"].mean(), 1),
                     "trace_exact_pct": round(100 * g["exact"].mean(), 1),
                     "accuracy_if_exact_pct": round(100 * g.loc[g["exact"], "correct"].mean(), 1)
                     if g["exact"].any() else float("nan"),
                     "accuracy_otherwise_pct": round(100 * g.loc[~g["exact"], "correct"].mean(), 1)
                     if (~g["exact"]).any() else float("nan"), "items": len(g)})
    return pd.DataFrame(rows)


def validity_gate(evals: pd.DataFrame, threshold: float, task: str, length: int,
                  budget_tokens: int | None = None) -> dict:
    """The pre-registered validity gate: the share of whole traces the explanation student (same_epochs when run,
    else the first control) reproduced exactly on the curve's `task` problems with `length` steps, pooled over
    seeds, against `threshold`. Without such items (the task or length not run) it is read on every BBH item."""
    ev = evals[evals["variant"] == "explanation"]
    controls = list(dict.fromkeys(ev["control"]))
    control = "same_epochs" if "same_epochs" in controls else controls[0] if controls else None
    ev = ev[ev["control"] == control]
    on = ev[(ev["set"] == "curve") & (ev["task"] == task) & (ev["steps"] == length)]
    where = f"{task} curve problems with {length} steps (shortest trained length)"
    if on.empty:
        on, where = ev[ev["set"] == "bbh"], "every BBH item (the gate task's curve was not run)"
    exact = on["trace_steps_right"] == on["trace_steps"]
    fidelity = float(exact.mean()) if len(on) else 0.0
    per_seed = exact.groupby(on["seed"]).mean() if len(on) else pd.Series(dtype=float)
    return {"task": task, "length": int(length), "measured_on": where, "control": control,
            "threshold_pct": round(100 * threshold, 1), "fidelity_pct": round(100 * fidelity, 1), "items": len(on),
            "per_seed_pct": " / ".join(f"{100 * v:.1f}" for v in per_seed),
            "passed": bool(len(on) and fidelity >= threshold), "budget_tokens": budget_tokens}


def apply_gate(tests: pd.DataFrame, gate: dict) -> pd.DataFrame:
    """The tests as read under the gate: when it failed, every verdict becomes "not read (validity gate failed)"
    (the numbers stay, as a description), so no table names a winner."""
    if gate["passed"] or tests.empty:
        return tests
    return tests.assign(verdict="not read (validity gate failed)")


def gate_metrics(gate: dict, tokens: int | None = None) -> dict:
    """The gate's metrics: threshold, measured fidelity, passed, and the trace run's tokens."""
    m = {"experiment/gate/threshold_pct": gate["threshold_pct"], "experiment/gate/fidelity_pct": gate["fidelity_pct"],
         "experiment/gate/passed": gate["passed"], "experiment/gate/items": gate["items"]}
    if tokens is not None:
        m["experiment/gate/explanation_tokens"] = int(tokens)
    return m


def _gate_lines(gate: dict, tokens: int | None) -> list[str]:
    head = (f"**Validity gate (pre-registered, read first): {'passed' if gate['passed'] else 'failed'}.** The "
            f"explanation student ({gate['control']}) reproduced the whole trace exactly on "
            f"{gate['fidelity_pct']:.1f}% of {gate['items']} items ({gate['measured_on']}; per seed "
            f"{gate['per_seed_pct'] or 'n/a'}); threshold "
            f"{gate['threshold_pct']:.0f}%.")
    if gate["passed"]:
        return [head, ""]
    spent = f"{tokens / 1e6:.2f}M tokens per trace run" if tokens else "this run's budget"
    need = (f"about {gate['budget_tokens'] / 1e6:.1f}M tokens per trace run (measured in the pilots, "
            f"docs/09_explanation_vs_answer.md)" if gate["budget_tokens"] else f"more than {spent} (not measured)")
    return [head, "", f"**Underpowered: no conclusion.** The student cannot yet execute the traces it was shown at "
                      f"{spent}, so this run cannot tell whether explanations help; no winner is reported (the "
                      f"tables above are descriptive). A run that passes the gate needs {need}.", ""]


def best_constant(evals: pd.DataFrame) -> pd.Series:
    """Per task, the accuracy (%) of always giving the most frequent target of the evaluated BBH items."""
    items = evals[evals["set"] == "bbh"].drop_duplicates(["task", "item"])
    return items.groupby("task")["target"].agg(lambda t: 100 * t.value_counts(normalize=True).iloc[0]).round(1)


def _pct(value: float) -> str:
    return "n/a (no such item)" if pd.isna(value) else f"{value:.1f}%"


def _fmt_tasks(rows: pd.DataFrame) -> str:
    return ", ".join(f"{r.task} ({r.diff_pp:+.1f} pp, p={r.p_holm:.2g})" for r in rows.itertuples()) or "none"


def conclusion(tests: pd.DataFrame, curve: pd.DataFrame, caps: pd.DataFrame, summary: pd.DataFrame,
               constant: pd.Series, alpha: float, scale: str, fidelity: pd.DataFrame | None = None,
               gate: dict | None = None, tokens: int | None = None) -> str:
    """The conclusion, written from the computed tests alone (Markdown). It may well be negative. The validity
    `gate` comes first; a failed gate gives "underpowered: no conclusion" and no winner."""
    lines = ["### Conclusion (generated from the tests above)", ""]
    if gate is not None:
        lines += _gate_lines(gate, tokens)
        if not gate["passed"]:
            cap = caps[caps["set"] == "bbh"]
            lines.append("Generation ended: token cap reached by " + ", ".join(
                f"{r.control}/{r.variant} {r.token_cap_pct:.1f}%" for r in cap.itertuples()) + " of BBH outputs.")
            lines += ["", f"**Reading:** at this scale ({scale}) the pre-registered comparison is not read: the "
                          f"validity gate failed (α = {alpha} would apply to H1-H4 once it passes)."]
            return "\n".join(lines)
    names = {"same_epochs": "H1, same epochs (the paper's setting)", "same_tokens": "H2, same tokens (same compute)"}
    supported = {}
    order = sorted(dict.fromkeys(tests["control"]), key=lambda c: (c != "same_epochs", c != "same_tokens", c))
    for control in order:
        t = tests[(tests["control"] == control) & (tests["comparison"] == "explanation vs answer_only")]
        tasks, overall = t[t["task"] != "all"], t[t["task"] == "all"].iloc[0]
        won = tasks[tasks["verdict"] == "explanation better"]
        lost = tasks[tasks["verdict"] == "answer_only better"]
        acc = summary[(summary["control"] == control) & (summary["variant"] != "progressive")]
        flat = [task for task, g in acc[acc["task"] != "all"].groupby("task")
                if g["ci_high_pct"].max() <= constant.get(task, 0) + 1e-9]
        supported[control] = overall["verdict"] == "explanation better"
        lines += [f"**{names.get(control, control)}** (explanation vs answer-only): overall "
                  f"{overall['acc_a_pct']:.1f}% vs {overall['acc_b_pct']:.1f}% ({overall['diff_pp']:+.1f} pp, "
                  f"McNemar p={overall['p_mcnemar']:.2g}, per seed {overall['per_seed_diff_pp']}): "
                  f"**{overall['verdict']}**. Explanation significantly better on {len(won)} of {len(tasks)} tasks: "
                  f"{_fmt_tasks(won)}; answer-only significantly better on: {_fmt_tasks(lost)}; no difference shown "
                  f"on the other {len(tasks) - len(won) - len(lost)}."
                  + (f" Uninformative (no variant's interval reaches above always giving the most frequent answer): "
                     f"{', '.join(flat)}." if flat else ""), ""]
        p = tests[(tests["control"] == control) & (tests["comparison"] == "progressive vs explanation")
                  & (tests["task"] == "all")]
        if len(p):
            r = p.iloc[0]
            lines += [(f"H3 under {control} (progressive vs explanation): {r['diff_pp']:+.1f} pp overall, "
                       f"p={r['p_mcnemar']:.2g}: **{r['verdict']}**."), ""]
    if len(curve):
        rank = {c: i for i, c in enumerate(order)}
        for (control, task), g in sorted(curve.groupby(["control", "task"], sort=False),
                                         key=lambda kv: rank.get(kv[0][0], len(rank))):
            ahead = g.loc[g["verdict"] == "explanation better", "steps"].tolist()
            behind = g.loc[g["verdict"] == "answer_only better", "steps"].tolist()
            pays = next((k for k in sorted(ahead) if not [j for j in behind if j > k]), None)
            gaps = ", ".join(f"{k}: {d:+.0f}" for k, d in zip(g["steps"], g["diff_pp"]))
            lines.append(f"- H4 curve, {task} under {control} (explanation minus answer-only, pp, by steps: {gaps}): "
                         + (f"step-by-step supervision pays from **{pays} steps** on" if pays is not None
                            else "**no step count** where explanation is significantly ahead")
                         + (f"; answer-only significantly ahead at {behind}" if behind else "") + ".")
        lines.append("")
    followed = None
    if fidelity is not None and len(fidelity):
        f = fidelity[(fidelity["variant"] == "explanation") & (fidelity["task"] == "all")]
        f = f.sort_values("control", key=lambda c: c != "same_epochs")          # the paper's setting first
        if len(f):
            r = f.iloc[0]
            followed = r["trace_exact_pct"]
            lines.append(f"Following the taught trace (explanation student, {r['control']}, BBH items): every step "
                         f"right on {r['trace_exact_pct']:.1f}% of items, {r['steps_right_pct']:.1f}% of the steps "
                         f"right from the start on average; accuracy {_pct(r['accuracy_if_exact_pct'])} when the "
                         f"whole trace was right, {_pct(r['accuracy_otherwise_pct'])} otherwise.")
            lines.append("")
    cap = caps[caps["set"] == "bbh"]
    lines.append("Generation ended: token cap reached by " + ", ".join(
        f"{r.control}/{r.variant} {r.token_cap_pct:.1f}%" for r in cap.itertuples()) + " of BBH outputs.")
    verdict = ("supports" if all(supported.values()) else "partly supports" if any(supported.values())
               else "does not support")
    lines += ["", (f"**Reading:** at this scale ({scale}) the experiment {verdict} the claim that explanation "
                   f"traces teach more than answers (α = {alpha}, Holm over tasks; a task counts only when every "
                   f"seed agrees in sign). It tests the mechanism on programmatically solvable tasks with a program "
                   f"teacher; it says nothing about a 13B student or GPT-4's traces.")]
    if followed is not None and not all(supported.values()) and followed < 25:
        lines.append(f"Diagnosis: the explanation student reproduced the whole trace on only {followed:.1f}% of "
                     f"the items, so at this size and budget it mostly cannot carry out the steps it was shown; "
                     f"a negative result here is a limit of the student, not evidence against explanations.")
    return "\n".join(lines)


def plot_accuracy(summary: pd.DataFrame):
    """Bars per task and variant (the shared colours of `figure_style`), one panel per control."""
    import matplotlib.pyplot as plt

    from .. import figure_style

    figure_style.apply()

    controls = list(dict.fromkeys(summary["control"]))
    tasks = list(dict.fromkeys(summary["task"]))
    fig, axes = plt.subplots(len(controls), 1, figsize=(10, 3.2 * len(controls)), squeeze=False)
    for ax, control in zip(axes[:, 0], controls):
        part_c = summary[summary["control"] == control]
        variants = list(dict.fromkeys(part_c["variant"]))
        width = 0.8 / len(variants)
        for j, v in enumerate(variants):
            part = part_c[part_c["variant"] == v].set_index("task").reindex(tasks)
            x = np.arange(len(tasks)) + (j - (len(variants) - 1) / 2) * width
            err = np.vstack([part["accuracy_pct"] - part["ci_low_pct"], part["ci_high_pct"] - part["accuracy_pct"]])
            ax.bar(x, part["accuracy_pct"], width, yerr=err, capsize=2, label=v, color=figure_style.color_for(v))
        ax.set_xticks(np.arange(len(tasks)), [textwrap.fill(t.replace("_", " "), 14) for t in tasks], fontsize=7)
        ax.set_ylabel("BBH accuracy (%), 95% CI", fontsize=8)
        ax.set_title(f"control: {control}", fontsize=9)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def plot_difficulty(curve: pd.DataFrame, units: dict[str, str]):
    """Accuracy against steps per curve task: lines for the held-out problems (solid: same_epochs, dashed:
    same_tokens), hollow markers for the real BBH items of the same task at their own numbers of steps, and a
    dotted line at the longest trained length when the curve runs past it (`in_training_range`)."""
    import matplotlib.pyplot as plt

    from .. import figure_style

    figure_style.apply()
    tasks = list(dict.fromkeys(curve.loc[curve["set"] == "curve", "task"]))
    if not tasks:
        fig, ax = plt.subplots(figsize=(4.2, 2.0))
        ax.text(0.5, 0.5, "n/a: no task with a difficulty curve was run", ha="center", va="center", fontsize=8)
        ax.set_axis_off()
        return fig
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    colors = {v: figure_style.color_for(v) for v in dict.fromkeys(curve["variant"])}
    for ax, task in zip(axes[0], tasks):
        for (control, variant), g in curve[(curve["task"] == task) & (curve["set"] == "curve")].groupby(
                ["control", "variant"], sort=False):
            style = "-" if control == "same_epochs" else "--" if control == "same_tokens" else ":"
            ax.plot(g["steps"], g["accuracy_pct"], style, marker="o", ms=3, color=colors[variant],
                    label=f"{variant} ({control})")
            ax.fill_between(g["steps"], g["ci_low_pct"], g["ci_high_pct"], color=colors[variant], alpha=0.06)
        real = curve[(curve["task"] == task) & (curve["set"] == "bbh") & (curve["control"] == "same_epochs")]
        for variant, g in real.groupby("variant", sort=False):
            g = g[g["items_per_seed"] >= 10]
            ax.scatter(g["steps"], g["accuracy_pct"], facecolors="none", edgecolors=colors[variant], s=40)
        ax.set_title(task.replace("_", " "), fontsize=8)
        ax.set_xlabel(f"number of {units.get(task, 'steps')}", fontsize=8)
        ax.set_ylim(0, 100)
        points = curve[(curve["task"] == task) & (curve["set"] == "curve")]
        if "in_training_range" in points and (~points["in_training_range"].astype(bool)).any():
            edge = points.loc[points["in_training_range"].astype(bool), "steps"].max()
            if pd.notna(edge):                  # where length generalisation starts
                ax.axvline(edge, color="0.5", lw=0.8, ls=":", label=f"longest trained: {edge:g}")
    axes[0][0].set_ylabel("accuracy (%); hollow: real BBH items (same epochs)", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame):
    """Training loss against tokens, per control, one line per variant."""
    import matplotlib.pyplot as plt

    from .. import figure_style

    figure_style.apply()

    controls = list(dict.fromkeys(curves["control"]))
    fig, axes = plt.subplots(1, len(controls), figsize=(5 * len(controls), 3.2), squeeze=False)
    for ax, control in zip(axes[0], controls):
        for variant, g in curves[curves["control"] == control].groupby("variant", sort=False):
            mean = g.groupby("tokens")["loss"].mean()
            smooth = mean.rolling(max(1, len(mean) // 30), min_periods=1).mean()
            ax.plot(smooth.index / 1e6, smooth.values, label=variant, color=figure_style.color_for(variant))
        ax.set_title(f"control: {control}", fontsize=9)
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel("loss on response tokens")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def experiment_metrics(summary: pd.DataFrame, tests: pd.DataFrame, caps: pd.DataFrame,
                       runs: pd.DataFrame) -> dict:
    """The metrics notebook 09 saves. `experiment/all/<variant>/...` are those of the paper's setting
    (same_epochs) when it was run, else of the first control."""
    m = {f"experiment/{r.control}/{r.task}/{r.variant}/accuracy_pct": r.accuracy_pct for r in summary.itertuples()}
    m.update({f"experiment/{r.control}/{r.task}/{r.comparison.replace(' ', '_')}/p_holm": r.p_holm
              for r in tests.itertuples()})
    m.update({f"experiment/{r.control}/{r.variant}/token_cap_pct": r.token_cap_pct
              for r in caps[caps["set"] == "bbh"].itertuples()})
    main = "same_epochs" if "same_epochs" in set(summary["control"]) else summary["control"].iloc[0]
    for r in summary[(summary["control"] == main) & (summary["task"] == "all")].itertuples():
        m.update({f"experiment/all/{r.variant}/accuracy_pct": r.accuracy_pct,
                  f"experiment/all/{r.variant}/ci_low_pct": r.ci_low_pct,
                  f"experiment/all/{r.variant}/ci_high_pct": r.ci_high_pct})
    plain = runs[~runs["control"].str.contains("@")]
    for r in plain.groupby(["control", "variant"], sort=False)[["tokens", "epochs"]].mean().reset_index().itertuples():
        m[f"experiment/{r.control}/{r.variant}/tokens"] = int(r.tokens)
        m[f"experiment/{r.control}/{r.variant}/epochs"] = round(float(r.epochs), 2)
    m.update({"experiment/seeds": int(runs["seed"].nunique()), "experiment/n_params": int(plain["n_params"].iloc[0]),
              "experiment/tokens_per_variant": int(plain.loc[plain["variant"] == "explanation", "tokens"].iloc[0]),
              "experiment/eval_items": int(summary["items_per_seed"].max())})
    return m


def summary_metrics(summary: pd.DataFrame, tests: pd.DataFrame, caps: pd.DataFrame, runs: pd.DataFrame,
                    tokenizer: str) -> tuple[dict, dict[str, str]]:
    """(metrics, provenance) of notebook 09: `experiment_metrics`, and who taught whom on what data."""
    from .symbolic_teacher import TEACHER_LABEL

    metrics = experiment_metrics(summary, tests, caps, runs)
    from ..provenance import Provenance, data_source, source

    student = f"{metrics['experiment/n_params'] / 1e6:.2f}M-param LLaMA-config model, {tokenizer} task tokenizer " \
        "(offline, trained here)"
    data = "generated symbolic problems (train, curve); real BBH items (eval)"
    return metrics, Provenance({"student": student, "teacher": TEACHER_LABEL, "data": data},
                               sources=[source("student", student, "stand_in"),       # a random tiny model
                                        source("teacher", TEACHER_LABEL, "stand_in"),  # program-written
                                        data_source(data)])
