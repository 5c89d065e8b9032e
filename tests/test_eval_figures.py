"""05/06's per-task figure in the paper's form: every task (and the macro average) is a group, ours beside the
paper's models with the numbers the reference holds; recalled numbers pale, missing ones "n/a", never a bar."""
from __future__ import annotations

import matplotlib.colors as mcolors
import pandas as pd
import pytest

from orca_utils import figure_style
from orca_utils.evaluation.figures import AVERAGE, PALE, plot_per_task
from orca_utils.evaluation.tasks import task_specs

BASE = "SmolLM2-135M-Instruct (untuned, offline stand-in student)"
TUNED = "SmolLM2-135M-Instruct + Orca tuning (notebook 04 student)"


def _zs(benchmark: str, tasks: list[str], n: int = 4):
    from orca_utils.evaluation.engine import EvalResult, summarize
    from orca_utils.evaluation.zero_shot import ZeroShotRun

    results = {}
    for k, model in enumerate((BASE, TUNED)):
        recs = pd.DataFrame([{"task": t, "id": f"{t}/{i}", "correct": i < 1 + k + j % 2, "failed": False,
                              "published_correct": i == 0, "published_failed": False, "prediction": "x",
                              "prompt": "p"} for j, t in enumerate(tasks) for i in range(n)])
        results[model] = EvalResult(recs, *summarize(recs), 1.0, model)
    return ZeroShotRun(benchmark, {t: [None] * n for t in tasks}, results=results)


def _drawn(fig) -> tuple[dict[str, object], dict[str, object], list[str]]:
    """({gid: bar}, {gid: n/a text}, y tick labels) over every panel."""
    bars, texts, ticks = {}, {}, []
    for ax in fig.axes:
        bars.update({p.get_gid(): p for p in ax.patches if p.get_gid()})
        texts.update({t.get_gid(): t for t in ax.texts if t.get_gid()})
        ticks += [t.get_text() for t in ax.get_yticklabels()]
    return bars, texts, ticks


def _status(bars: dict, series: str, task: str) -> str | None:
    hits = [g.split("|")[2] for g in bars if g.startswith(f"{series}|{task}|")]
    assert len(hits) <= 1, hits
    return hits[0] if hits else None


def test_bbh_every_task_is_a_group_ours_beside_the_papers_and_absent_tasks_are_na():
    import matplotlib.pyplot as plt

    tasks = [s.name for s in task_specs("bbh")]                     # all 27: two panels
    fig = plot_per_task(_zs("bbh", tasks), "BBH")
    bars, texts, ticks = _drawn(fig)
    assert len(fig.axes) == 2
    labels = [s.label for s in task_specs("bbh")]
    assert sorted(ticks) == sorted([*labels, "Average (macro, the paper's)"]), "every task once, and the average"
    models = ["ChatGPT", "GPT-4", "Vicuna-13B", "Orca-13B"]
    absent = {"dyck_languages", "multistep_arithmetic_two", "object_counting", "word_sorting"}
    for task in [*tasks, AVERAGE]:
        for ours in (BASE, TUNED):
            assert _status(bars, ours, task) == "ours", (ours, task)
        for model in models:
            status = _status(bars, f"paper: {model}", task)
            if task in absent:
                assert status is None, f"{model} on {task}: the paper has no number, no bar may stand for it"
            else:
                assert status == ("verified" if task == AVERAGE else "single-source"), (model, task, status)
        if task in absent:
            assert texts[f"paper|{task}|missing"].get_text().strip().startswith("n/a")
    # the paper's numbers, as the reference has them, in the paper models' colours, hatched
    chatgpt = bars["paper: ChatGPT|boolean_expressions|single-source"]
    assert chatgpt.get_width() == pytest.approx(82.8)
    assert mcolors.to_hex(chatgpt.get_facecolor(), keep_alpha=False) == figure_style.PAPER_COLORS["ChatGPT"]
    assert chatgpt.get_hatch() == figure_style.PAPER_HATCH and chatgpt.get_alpha() == 1.0
    assert bars[f"paper: Orca-13B|{AVERAGE}|verified"].get_width() == pytest.approx(49.7)
    # ours: the robust accuracy, in the role's colour
    base = bars[f"{BASE}|boolean_expressions|ours"]
    assert base.get_width() == pytest.approx(25.0)                 # 1 of 4 right
    assert mcolors.to_hex(base.get_facecolor(), keep_alpha=False) == figure_style.ROLE_COLORS["untuned student"]
    assert not [g for g, p in bars.items() if g.startswith("paper") and p.get_width() == 0], "no zero paper bar"
    assert any(ax.collections for ax in fig.axes), "Wilson intervals drawn as error bars"
    plt.close("all")


def test_agieval_recalled_numbers_are_pale_sourced_ones_solid_and_missing_averages_na():
    import matplotlib.pyplot as plt

    fig = plot_per_task(_zs("agieval", ["lsat-ar", "sat-math"]), "AGIEval")
    bars, texts, ticks = _drawn(fig)
    assert ticks == ["LSAT-AR", "SAT-Math", "Average (macro, the paper's)"]       # the run's tasks, in order
    gpt4 = bars["paper: GPT-4|lsat-ar|recalled"]                     # Table 8 as recalled: unverified
    assert gpt4.get_width() == pytest.approx(35.2) and gpt4.get_alpha() == PALE
    orca = bars["paper: Orca-13B|sat-math|single-source"]            # read from a source: solid
    assert orca.get_width() == pytest.approx(32.3) and orca.get_alpha() == 1.0
    td3 = bars["paper: text-davinci-003|lsat-ar|recalled"]           # the reference's "TD-003" column
    assert mcolors.to_hex(td3.get_facecolor(), keep_alpha=False) == figure_style.PAPER_COLORS["text-davinci-003"]
    assert _status(bars, "paper: Human Avg", "lsat-ar") is None      # human baselines stay in the table
    # averages: the table's ("not available" for GPT-4 and TD-003), so "n/a" and no bar
    for model in ("GPT-4", "text-davinci-003"):
        assert _status(bars, f"paper: {model}", AVERAGE) is None
        assert texts[f"paper: {model}|{AVERAGE}|missing"].get_text().strip() == "n/a"
    assert bars[f"paper: ChatGPT|{AVERAGE}|verified"].get_width() == pytest.approx(47.2)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "pale: paper number recalled, unverified" in legend
    assert f"ours: {TUNED}" in legend and "paper: text-davinci-003" in legend
    plt.close("all")
