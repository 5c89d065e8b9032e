"""The report's figures that set ours beside the paper's (05/06's per-task and relative-improvement figures, 07's
relative scores) say so when none of our values is there, with the reason read from their data: the paper's bars
beside "n/a" marks are never left to be read as a drawing error. A figure with any value of ours carries no note."""
from __future__ import annotations

import io
import math

import matplotlib
import pandas as pd
import pytest

from orca_utils import figure_style

matplotlib.use("Agg")

NAN = math.nan


def _notes(fig) -> list[str]:
    return [t.get_text() for t in fig.texts if t.get_gid() == figure_style.OURS_MISSING_GID]


@pytest.fixture(autouse=True)
def _close():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_the_note_is_drawn_only_when_every_value_of_ours_is_missing():
    import matplotlib.pyplot as plt

    for values, drawn in (([NAN, None], True), ([], True), ([NAN, 0.0], False), ([12.5], False)):
        fig = plt.figure()
        note = figure_style.note_missing_ours(fig, values, "no model was scored")
        assert (note == "ours: n/a, no model was scored") is drawn and _notes(fig) == ([note] if drawn else [])
    svg = io.StringIO()
    fig = plt.figure()
    figure_style.note_missing_ours(fig, [NAN], "no model was scored")
    fig.savefig(svg, format="svg", bbox_inches="tight")
    assert f'id="{figure_style.OURS_MISSING_GID}"' in svg.getvalue(), "the note travels with the saved figure"


def _summary(relative: float, n_prompts=3, parsed=(0, 0), unparseable=6, errors=0, reference_failed=0):
    rows = []
    for name in ("vicuna_bench", "all"):
        rows.append({"reference": "SmolLM2-135M-Instruct (local stand-in reference)", "set": name,
                     "n_prompts": n_prompts, "n_parsed_candidate_first": parsed[0],
                     "n_parsed_reference_first": parsed[1], "n_unparseable": unparseable, "n_errors": errors,
                     "relative_candidate_first_pct": relative, "relative_reference_first_pct": relative,
                     "relative_mean_pct": relative, "n_reference_failed": reference_failed})
    return pd.DataFrame(rows)


def test_open_ended_figure_says_why_it_has_no_score_of_ours():
    from orca_utils.open_ended import paper_relative_scores, plot_relative_scores

    paper = paper_relative_scores()
    cases = [  # (summary, the note): the smoke run's case first (a stand-in judge whose replies never parse)
        (_summary(NAN), "ours: n/a, the judge's replies could not be read (6 of 6 unparseable)"),
        (_summary(NAN, unparseable=0, errors=6), "ours: n/a, the judge calls failed (6 of 6)"),
        (_summary(NAN, n_prompts=0, unparseable=0, reference_failed=3),
         "ours: n/a, the reference gave no answer to judge (3 failed)"),
        (_summary(NAN, parsed=(3, 3), unparseable=0), "ours: n/a, the judge gave the reference 0 points in one "
                                                      "order: no ratio"),
    ]
    for summary, note in cases:
        assert _notes(plot_relative_scores(summary, paper, candidate="student")) == [note]
    assert _notes(plot_relative_scores(_summary(71.25, parsed=(3, 3), unparseable=0), paper)) == []


def _result(task_correct: dict[str, list[bool]], label: str):
    from orca_utils.evaluation.engine import EvalResult, summarize

    recs = pd.DataFrame([{"task": t, "id": f"{t}/{i}", "correct": c, "failed": False, "published_correct": c,
                          "published_failed": False, "prediction": "x", "prompt": "p"}
                         for t, rows in task_correct.items() for i, c in enumerate(rows)])
    return EvalResult(recs, *summarize(recs), 1.0, label)


def _zs(results: dict):
    from orca_utils.evaluation.zero_shot import ZeroShotRun

    return ZeroShotRun("bbh", {"boolean_expressions": [None] * 2, "word_sorting": [None] * 2}, results=results)


def test_relative_improvement_figure_says_why_it_has_no_value_of_ours():
    from orca_utils.evaluation.zero_shot import plot_relative_improvement, relative_improvement

    zero = {"boolean_expressions": [False, False], "word_sorting": [False, False]}
    some = {"boolean_expressions": [True, False], "word_sorting": [False, True]}
    after = {"boolean_expressions": [True, True], "word_sorting": [True, False]}
    no_student = relative_improvement(_zs({"before": _result(some, "before")}), "before", "after")
    zero_before = relative_improvement(_zs({"before": _result(zero, "before"), "after": _result(after, "after")}),
                                       "before", "after")
    scored = relative_improvement(_zs({"before": _result(some, "before"), "after": _result(after, "after")}),
                                  "before", "after")
    assert _notes(plot_relative_improvement(no_student, "t")) == [
        "ours: n/a, no item was scored by both the untuned and the tuned model"]
    assert _notes(plot_relative_improvement(zero_before, "t")) == [
        "ours: n/a, the untuned model scored 0% on every paired task: no relative improvement over 0%"]
    assert _notes(plot_relative_improvement(scored, "t")) == []


def test_per_task_figure_says_when_no_model_was_scored():
    from orca_utils.evaluation.figures import plot_per_task

    assert _notes(plot_per_task(_zs({}), "BBH")) == ["ours: n/a, no model was scored"]
    scored = _zs({"m": _result({"boolean_expressions": [True, False], "word_sorting": [False, False]}, "m")})
    assert _notes(plot_per_task(scored, "BBH")) == []
