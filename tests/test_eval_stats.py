"""Intervals and paired tests (orca_utils.evaluation.stats) against hand computations, and their use in the 05/06 tables
and figures and the TruthfulQA MC tables."""
from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest

from orca_utils.evaluation.stats import (bootstrap_macro_interval, bootstrap_mean_interval, bootstrap_relative_change,
                                   format_interval, mcnemar_exact, wilson_interval)

matplotlib.use("Agg")


# Wilson: center = (p + z^2/2n) / (1 + z^2/n), half = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n), z = 1.959964
@pytest.mark.parametrize("k,n,lo,hi", [
    (0, 10, 0.0, 0.277532),          # center = half = 0.192073 / 1.384146 = 0.138766
    (5, 10, 0.236593, 0.763407),     # half = 1.959964 * sqrt(0.025 + 0.009604) / 1.384146 = 0.263407
    (10, 10, 0.722468, 1.0),
    (1, 1, 0.206543, 1.0),           # center = (1 + 1.920729) / 4.841459 = 0.603272, half = 0.396728
])
def test_wilson_by_hand(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-5)


def test_wilson_edges():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(3, 2)
    wide, narrow = wilson_interval(5, 10), wilson_interval(50, 100)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    assert wilson_interval(5, 10, level=0.5)[1] < wilson_interval(5, 10)[1]


# exact McNemar: two-sided binomial test of b among the b + c discordant pairs, p = 0.5
@pytest.mark.parametrize("before,after,b,c,p", [
    ([1] * 1 + [0] * 9 + [1] * 5, [0] * 1 + [1] * 9 + [1] * 5, 1, 9, 22 / 1024),   # 2 * (1 + 10) / 2^10
    ([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], 3, 3, 1.0),
    ([0] * 5 + [1, 0], [1] * 5 + [1, 0], 0, 5, 2 / 32),                               # 2 * (1/2)^5
    ([1, 0, 1], [1, 0, 1], 0, 0, 1.0),                                               # no discordant pair
])
def test_mcnemar_by_hand(before, after, b, c, p):
    res = mcnemar_exact([bool(x) for x in before], [bool(x) for x in after])
    assert (res.n, res.b, res.c) == (len(before), b, c)
    assert res.p_value == pytest.approx(p, rel=1e-9)


def test_mcnemar_needs_pairs():
    with pytest.raises(ValueError, match="paired"):
        mcnemar_exact([True], [True, False])


def test_bootstrap_by_hand():
    # one group [0, 1]: the resampled mean is 0 (p 1/4), 0.5 (1/2) or 1 (1/4): the 95% interval is [0, 1]
    assert bootstrap_mean_interval([0, 1], n_boot=4000) == (0.0, 1.0)
    # constant groups: no spread, whatever the seed
    assert bootstrap_macro_interval([[1, 1, 1], [0, 0]], seed=7) == (0.5, 0.5)
    # macro, not micro: a 2-item task weighs as much as a 100-item one
    lo, hi = bootstrap_macro_interval([[1, 1], [0] * 100])
    assert lo == hi == 0.5
    # a 1-item task cannot vary under resampling: no interval rather than a falsely certain one
    assert all(math.isnan(x) for x in bootstrap_macro_interval([[1], [0] * 100]))
    assert bootstrap_macro_interval([[1], [0, 1]], min_items=1)[0] == 0.5
    # fixed seed: identical; another seed: (almost surely) different draws
    groups = [[1, 0, 1, 1, 0, 1], [0, 0, 1, 0]]
    assert bootstrap_macro_interval(groups) == bootstrap_macro_interval(groups)
    lo, hi = bootstrap_macro_interval(groups)
    assert lo < (4 / 6 + 1 / 4) / 2 < hi
    assert all(math.isnan(x) for x in bootstrap_macro_interval([[], []]))


def test_bootstrap_relative_change():
    assert bootstrap_relative_change([1, 1, 0, 0], [1, 1, 0, 0]) == (0.0, 0.0)
    lo, hi = bootstrap_relative_change([1, 0, 1, 0] * 5, [1, 1, 1, 0] * 5)
    assert lo < 50.0 < hi                                  # 75% over 50%
    assert all(math.isnan(x) for x in bootstrap_relative_change([0, 0], [1, 1]))   # 0% before: undefined
    with pytest.raises(ValueError, match="paired"):
        bootstrap_relative_change([1], [1, 0])


def test_format_interval():
    assert format_interval(0.2366, 0.7634) == "[23.7, 76.3]"
    assert format_interval(math.nan, 1.0) == "n/a" and format_interval(None, None) == "n/a"


# ---------------------------------------------------------------- tables and figures of 05/06
def _result(task_correct: dict[str, list[tuple[bool, bool]]], label=""):
    """An EvalResult from {task: [(robust correct, published correct), ...]}."""
    from orca_utils.evaluation.engine import EvalResult, summarize

    recs = pd.DataFrame([{"task": t, "id": f"{t}/{i}", "correct": r, "failed": not r and i == 1,
                          "published_correct": p, "published_failed": False, "prediction": "x", "prompt": "p"}
                         for t, rows in task_correct.items() for i, (r, p) in enumerate(rows)])
    return EvalResult(recs, *summarize(recs), 1.0, label)


def _zs(results):
    from orca_utils.evaluation.zero_shot import ZeroShotRun

    items = {t: [None] * len(rows) for t, rows in next(iter(results.values())).records.groupby("task",
                                                                                                 sort=False)}
    return ZeroShotRun("bbh", items, results=results)


BEFORE = {"boolean_expressions": [(True, True), (False, False), (True, False), (False, False)],
          "word_sorting": [(False, False), (False, False)]}
AFTER = {"boolean_expressions": [(True, True), (True, True), (True, True), (False, False)],
         "word_sorting": [(True, True), (False, False)]}


def test_accuracy_table_has_both_conventions_and_intervals():
    from orca_utils.evaluation.zero_shot import accuracy_table

    table = accuracy_table(_zs({"m": _result(BEFORE)})).set_index("task")
    row = table.loc["Boolean Expressions"]
    assert row["m: acc %"] == 50.0 and row["m: published acc %"] == 25.0
    assert row["m: acc 95% CI"] == format_interval(*wilson_interval(2, 4))
    assert row["m: published 95% CI"] == format_interval(*wilson_interval(1, 4))
    assert row["m: extraction failures %"] == 25.0
    ours = table.loc["macro average (all 2 tasks run, ours)"]          # word_sorting is not in the paper's table
    assert ours["m: acc %"] == 25.0 and ours["m: published acc %"] == 12.5
    assert ours["m: acc 95% CI"].startswith("[") and ours["paper Orca-13B"] == "not available"
    papers = table.loc["macro average (paper's 23 tasks, 1 of them run; paper columns: all 23)"]   # paper's set only
    assert papers["m: acc %"] == 50.0 and papers["m: published acc %"] == 25.0 and papers["items"] == 4
    assert papers["m: acc 95% CI"].startswith("[") and papers["paper Orca-13B"] == "49.7"
    assert table.loc["micro average", "m: published 95% CI"] == format_interval(*wilson_interval(1, 6))


def test_bbh_paper_average_is_over_the_papers_23_tasks_and_agieval_over_its_8():
    from orca_utils.evaluation.tasks import task_specs
    from orca_utils.evaluation.zero_shot import macro_rows, paper_task_set

    bbh = paper_task_set("bbh")
    assert len(bbh) == 23 and not {"dyck_languages", "multistep_arithmetic_two", "object_counting",
                                   "word_sorting"} & set(bbh)
    all_bbh = {s.name: [None] for s in task_specs("bbh")}
    from orca_utils.evaluation.zero_shot import ZeroShotRun

    rows = macro_rows(ZeroShotRun("bbh", all_bbh))
    assert [(r[0], r[2]) for r in rows] == [("macro average (paper's 23 tasks)", True),
                                            ("macro average (all 27 tasks run, ours)", False)]
    agi = macro_rows(ZeroShotRun("agieval", {s.name: [None] for s in task_specs("agieval")}))
    assert agi == [("macro average (8 tasks, the paper's set)", None, True)]     # Table 8 averages all 8
    # a run of some of the paper's tasks only (the rehearsal's 4) says so: never "the paper's set"
    some = macro_rows(ZeroShotRun("bbh", {t: [None] for t in bbh[:4]}))
    assert some == [("macro average (paper's 23 tasks, 4 of them run; paper columns: all 23)", bbh[:4], True)]


def test_relative_improvement_and_paired_tables():
    from orca_utils.evaluation.zero_shot import paired_table, relative_improvement

    zs = _zs({"before": _result(BEFORE), "after": _result(AFTER)})
    rel = relative_improvement(zs, "before", "after").set_index("task")
    assert rel.loc["boolean_expressions", "ours: after over before (%)"] == 50.0
    assert rel.loc["boolean_expressions", "ours (published): after over before (%)"] == 200.0
    assert rel.loc["boolean_expressions", "ours: McNemar p"] == 1.0          # b = 0, c = 1
    assert pd.isna(rel.loc["word_sorting", "ours: after over before (%)"])   # 0% before: undefined
    assert pd.isna(rel.loc["word_sorting", "ours 95% CI low (%)"])
    paired = paired_table(zs, "before", "after").set_index("task")
    assert paired.loc["all items", "paired items"] == 6
    assert (paired.loc["all items", "right only before"], paired.loc["all items", "right only after"]) == (0, 2)
    assert paired.loc["all items", "McNemar p"] == 0.5                      # 2 * (1/2)^2
    assert paired.loc["all items", "published: right only after"] == 3
    assert paired.loc["all items", "published: McNemar p"] == 0.25
    assert paired_table(zs, "before", "absent").empty


def test_figures_mark_missing_values_instead_of_zero_bars():
    from orca_utils.evaluation.zero_shot import plot_accuracy, plot_relative_improvement, relative_improvement

    zs = _zs({"before": _result(BEFORE), "after": _result(AFTER)})
    fig = plot_relative_improvement(relative_improvement(zs, "before", "after"), "t")
    ax = fig.axes[0]
    widths = sorted(round(p.get_width(), 1) for p in ax.patches)
    assert 0.0 not in widths                          # word_sorting: no paper value, 0% before: no bar at all
    assert sum(t.get_text().strip() == "n/a" for t in ax.texts) == 3
    assert ax.collections, "error bars drawn"
    legacy = _result(BEFORE)
    legacy.records = legacy.records.drop(columns=["published_correct", "published_failed"])
    fig = plot_accuracy(_zs({"before": legacy, "after": _result(AFTER)}), "t")
    ax = fig.axes[0]
    ours = [p for p in ax.patches if p.get_gid().endswith("|ours")]
    assert len(ours) == 2 * 3                           # 2 models x (2 tasks + the average); 0% is a real bar
    assert any(p.get_gid() == "before|word_sorting|ours" and p.get_width() == 0.0 for p in ours)
    paper = [p.get_gid() for p in ax.patches if p.get_gid().startswith("paper")]
    assert len(paper) == 4 * 2 and not any("|word_sorting|" in g for g in paper)   # not in the paper's table
    assert [t.get_gid() for t in ax.texts if "n/a" in t.get_text()] == ["paper|word_sorting|missing"]
    diamonds = [line for line in ax.lines if line.get_marker() == "D"]
    assert len(diamonds) == 3, "published convention: only the model that has it (legacy records have none)"
    import matplotlib.pyplot as plt

    plt.close("all")


def test_system_message_table_pairs_with_the_first_message():
    from orca_utils.evaluation.zero_shot import ZeroShotRun, system_message_table

    zs = ZeroShotRun("bbh", {"boolean_expressions": [None] * 4},
                     system_messages={1: _result({"boolean_expressions": BEFORE["boolean_expressions"]}),
                                      5: _result({"boolean_expressions": AFTER["boolean_expressions"]})})
    table = system_message_table(zs).set_index("system message id")
    assert pd.isna(table.loc[1, "McNemar p vs message 1"]) and table.loc[5, "McNemar p vs message 1"] == 1.0
    assert table.loc[5, "micro 95% CI"] == format_interval(*wilson_interval(3, 4))
    assert table.loc[1, "published macro acc %"] == 25.0


# ---------------------------------------------------------------- TruthfulQA MC (08)
def test_truthfulqa_tables_carry_intervals_and_paired_test():
    from orca_utils.safety import paired_mc, plot_truthfulqa, summarise_mc

    base = pd.DataFrame({"id": range(10), "category": ["Health"] * 5 + ["Law"] * 5,
                         "mc1": [1.0] * 5 + [0.0] * 5, "mc2": [0.5] * 10})
    tuned = base.assign(mc1=[1.0] * 10, mc2=[0.7] * 10)
    table = summarise_mc(base, "base").set_index("category")
    overall = table.loc["Overall"]
    assert overall["mc1"] == 50.0
    assert (overall["mc1_ci95_low"], overall["mc1_ci95_high"]) == pytest.approx((23.6593, 76.3407), abs=1e-3)
    assert overall["mc2_ci95_low"] == overall["mc2_ci95_high"] == pytest.approx(50.0)
    paired = paired_mc({"base": base, "tuned": tuned}).iloc[0]
    assert (paired["mc1 right only before"], paired["mc1 right only after"]) == (0, 5)
    assert paired["mc1 McNemar p"] == pytest.approx(2 / 32)
    assert paired["mc2 after - before (points)"] == pytest.approx(20.0)
    assert paired["mc2 difference 95% CI low"] == pytest.approx(20.0)
    both = pd.concat([summarise_mc(base, "base"), summarise_mc(tuned, "tuned")], ignore_index=True)
    fig = plot_truthfulqa(both, "not available")
    assert len(fig.axes[0].patches) == 4 and fig.axes[0].lines, "bars with error bars"
    import matplotlib.pyplot as plt

    plt.close("all")


def test_zero_shot_metrics_carry_published_and_defined_intervals_only():
    import json

    from orca_utils.evaluation.zero_shot import zero_shot_metrics

    zs = _zs({"before": _result(BEFORE)})
    zs.slots = {"before": "base"}
    metrics = zero_shot_metrics(zs)
    assert metrics["bbh/base/published_macro_accuracy"] == 12.5
    assert metrics["bbh/base/boolean_expressions/published_accuracy"] == 25.0
    assert metrics["bbh/base/macro_accuracy_ci95_low"] <= 25.0 <= metrics["bbh/base/macro_accuracy_ci95_high"]
    # the paper's average is over its 23 tasks: word_sorting is left out of that one, kept in ours
    assert metrics["bbh/base/paper_tasks_macro_accuracy"] == 50.0 and metrics["bbh/base/macro_accuracy"] == 25.0
    assert metrics["bbh/base/paper_tasks_published_macro_accuracy"] == 25.0 and metrics["bbh/n_paper_tasks"] == 1
    one = _zs({"before": _result({"boolean_expressions": [(True, True)], "word_sorting": [(False, False)]})})
    one.slots = {"before": "base"}
    keys = zero_shot_metrics(one)
    assert "bbh/base/macro_accuracy_ci95_low" not in keys          # 1 item per task: undefined, left out
    json.dumps(keys, allow_nan=False)


def test_the_notebooks_metrics_call_adds_the_provenance_and_names_the_benchmark():
    from orca_utils.evaluation.zero_shot import summary_metrics, zero_shot_metrics

    zs = _zs({"before": _result(BEFORE)})
    zs.slots, zs.data_origin = {"before": "base"}, "local"
    metrics, provenance = summary_metrics(zs)
    assert metrics == zero_shot_metrics(zs)
    assert provenance == {"models": "before", "data": "local", "paper": "orca_utils.reference"}
    assert (zs.benchmark, zs.name) == ("bbh", "BBH")


def test_figure_average_is_over_the_papers_tasks():
    from orca_utils.evaluation.figures import AVERAGE, _ours

    zs = _zs({"m": _result(BEFORE)})                      # boolean_expressions 50%, word_sorting (not the paper's) 0%
    assert _ours(zs, "m", "robust", AVERAGE)[0] == 50.0
