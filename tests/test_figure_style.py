"""One figure style: a model keeps its colour from one notebook's figure to the next, the paper's models keep
fixed colours, and library code never picks matplotlib's backend (headless runs fall back to Agg on their own)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import matplotlib.colors as mcolors
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from orca_utils import figure_style
from orca_utils.paths import REPO_ROOT

BASE = "SmolLM2-135M-Instruct (untuned, offline stand-in student)"          # params/smoke.yaml base_model_label
TUNED = f"student tuned by 04_training (from {BASE})"                        # open_ended.tuned_student's label


def _zs(models: list[str]):
    from orca_utils.evaluation.engine import EvalResult, summarize
    from orca_utils.evaluation.zero_shot import ZeroShotRun

    results = {}
    for k, model in enumerate(models):
        recs = pd.DataFrame([{"task": "boolean_expressions", "id": f"b/{i}", "correct": (i + k) % 2 == 0,
                              "failed": False, "published_correct": i == 0, "published_failed": False,
                              "prediction": "x", "prompt": "p"} for i in range(4)])
        results[model] = EvalResult(recs, *summarize(recs), 1.0, model)
    return ZeroShotRun("bbh", {"boolean_expressions": [None] * 4}, results=results)


def _truthfulqa_table(models: list[str]) -> pd.DataFrame:
    from orca_utils.safety import summarise_mc

    frames = []
    for k, model in enumerate(models):
        mc = pd.DataFrame({"id": range(6), "category": ["Health"] * 6, "mc1": [float((i + k) % 2) for i in range(6)],
                           "mc2": [0.4 + 0.1 * k] * 6})
        frames.append(summarise_mc(mc, model))
    return pd.concat(frames, ignore_index=True)


def _hex(color) -> str:
    return mcolors.to_hex(color, keep_alpha=False)


def test_a_model_has_one_colour_in_the_accuracy_and_truthfulqa_figures():
    import matplotlib.pyplot as plt

    from orca_utils.evaluation.zero_shot import plot_accuracy
    from orca_utils.safety import plot_truthfulqa

    acc = plot_accuracy(_zs([BASE, TUNED]), "BBH")          # 05 / 06
    tqa = plot_truthfulqa(_truthfulqa_table([BASE, TUNED]), "not available")   # 08
    acc_colors = {}
    for patch in acc.axes[0].patches:                       # each bar's gid: "<series>|<task>|<status>"
        series, _task, status = patch.get_gid().split("|")
        if status == "ours":
            acc_colors.setdefault(series, set()).add(_hex(patch.get_facecolor()))
    diamonds = {_hex(line.get_markeredgecolor()) for line in acc.axes[0].lines if line.get_marker() == "D"}
    assert set(acc_colors) == {BASE, TUNED}
    assert all(len(c) == 1 for c in acc_colors.values()), acc_colors    # every task and the average
    assert diamonds == set().union(*acc_colors.values()), "the published convention in the model's colour"
    tqa_bars = [p for p in tqa.axes[0].patches]
    assert len(tqa_bars) == 4                                # 2 models x (MC1, MC2), models in table order
    tqa_colors = {BASE: {_hex(tqa_bars[0].get_facecolor()), _hex(tqa_bars[2].get_facecolor())},
                  TUNED: {_hex(tqa_bars[1].get_facecolor()), _hex(tqa_bars[3].get_facecolor())}}
    assert tqa_colors == acc_colors
    assert acc_colors[BASE] == {figure_style.ROLE_COLORS["untuned student"]}
    assert acc_colors[TUNED] == {figure_style.ROLE_COLORS["tuned student"]}
    plt.close("all")


def test_paper_models_keep_fixed_colours_and_roles_are_read_from_labels():
    assert figure_style.color_for("gpt-4-0613") == figure_style.PAPER_COLORS["GPT-4"]
    assert figure_style.color_for("gpt-3.5-turbo") == figure_style.color_for("ChatGPT")
    assert figure_style.color_for("paper: Orca-13B over Vicuna-13B (%)") == figure_style.PAPER_COLORS["Orca-13B"]
    assert figure_style.color_for("text-davinci-003") == figure_style.PAPER_COLORS["text-davinci-003"]
    assert figure_style.role_of("LLaMA-13B tuned on GPT-4 responses") == "tuned student"
    assert figure_style.role_of("SmolLM2 + Orca tuning (notebook 04 student)") == "tuned student"
    assert figure_style.role_of("stage 2") == "stage-2 teacher"
    assert figure_style.role_of("answer_only") == "answer_only"
    assert figure_style.color_for("x", role="explanation") == figure_style.ROLE_COLORS["explanation"]
    assert figure_style.color_for("some stand-in") == figure_style.color_for("some stand-in")   # stable
    colours = list(figure_style.PAPER_COLORS.values()) + list(figure_style.ROLE_COLORS.values())
    assert len(set(colours)) == len(colours), "every paper model and role has its own colour"


def test_library_code_never_switches_the_backend():
    hits = [f"{p.name}: {m.group(0)}" for p in (REPO_ROOT / "orca_utils").rglob("*.py")
            for m in re.finditer(r"matplotlib\.use\(|pyplot\.switch_backend\(|plt\.switch_backend\(", p.read_text())]
    assert not hits, hits


@pytest.mark.timeout(300)
def test_figures_draw_and_save_headless_without_a_backend_setting(tmp_path):
    """No MPLBACKEND, no display: matplotlib falls back to a headless backend and the figure saves as PNG, PDF and
    SVG (what `Run.save_fig` writes)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY"}}
    code = ("import matplotlib.pyplot as plt, sys\n"
            "from orca_utils.train_report import plot_loss_curves\n"
            "fig, ax = plt.subplots()\n"
            "ax.plot([0, 1], [1, 0])\n"
            "for ext in ('png', 'pdf', 'svg'):\n"
            "    fig.savefig(sys.argv[1] + '.' + ext)\n"
            "import matplotlib\n"
            "print(matplotlib.get_backend().lower())\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "fig")], env=env, capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=240)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "agg"
    assert all((tmp_path / f"fig.{ext}").stat().st_size > 0 for ext in ("png", "pdf", "svg"))


def _colors_of(fig) -> set[str]:
    """Face colours of bars/boxes and colours of lines in every axes of a figure."""
    out = set()
    for ax in fig.axes:
        out |= {_hex(p.get_facecolor()) for p in ax.patches if p.get_visible()}
        out |= {_hex(line.get_color()) for line in ax.lines}
    return out


def test_every_figure_function_draws_with_the_shared_colours():
    import matplotlib.pyplot as plt
    import numpy as np

    from orca_utils.augmentation import plot_length_distributions as plot_responses
    from orca_utils.packing_analysis import plot_length_distributions, plot_packing
    from orca_utils.safety import plot_toxigen
    from orca_utils.train_report import plot_loss_curves

    responses = {"stage 1": pd.DataFrame({"status": ["ok"] * 4, "system_message_id": [1, 1, 2, 2],
                                          "response": ["a b", "a b c", "a", "a b c d"], "teacher": ["t"] * 4})}
    fig = plot_responses(responses, lambda text: len(text.split()))
    assert figure_style.ROLE_COLORS["stage-1 teacher"] in _colors_of(fig)

    curves = [{"stage": 1, "steps": 2, "history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5,
                                                                            "eval_loss": 1.7}]},
              {"stage": 2, "steps": 2, "history": [{"step": 1, "loss": 1.4}, {"step": 2, "loss": 1.2}]}]
    fig = plot_loss_curves(curves, "loss")
    assert {figure_style.ROLE_COLORS["stage-1 teacher"], figure_style.ROLE_COLORS["stage-2 teacher"]} <= \
        _colors_of(fig)

    rng = np.random.default_rng(0)
    lengths = pd.DataFrame({"prompt_tokens": rng.integers(5, 50, 40), "response_tokens": rng.integers(5, 80, 40),
                            "collection": ["cot", "niv2"] * 20, "system_message_id": [1, 2, 3, 4] * 10})
    lengths["total_tokens"] = lengths["prompt_tokens"] + lengths["response_tokens"]
    assert figure_style.color_for("prompt") in _colors_of(plot_length_distributions(lengths, "lengths"))
    grid = pd.DataFrame({"tokenizer": ["LLaMA-13B tokenizer"] * 2, "method": ["best-fit"] * 2, "max_len": [512, 1024],
                         "packing_factor": [2.0, 3.5], "padding_fraction": [0.1, 0.05]})
    assert figure_style.PAPER_COLORS["LLaMA-13B"] in _colors_of(plot_packing(grid, 3.0, "paper", "packing"))


    tox = pd.DataFrame({"model": [BASE] * 4, "group": ["a", "a", "b", "b"], "kind": ["hate", "neutral"] * 2,
                        "mean_toxicity": [0.4, 0.1, 0.3, 0.2]})
    assert _colors_of(plot_toxigen(tox)) & {figure_style.ROLE_COLORS["untuned student"]}
    plt.close("all")


def test_open_ended_figure_draws_ours_beside_the_papers_with_intervals_and_na():
    """07 the paper's way: horizontal bars relative to the reference, ours (the candidate's colour, the two orders
    as an error bar) beside the paper's Orca-13B and Vicuna-13B (their colours, hatched); missing: "n/a"."""
    import matplotlib.pyplot as plt

    from orca_utils.open_ended import plot_relative_scores

    summary = pd.DataFrame({"set": ["vicuna_bench", "wizardlm", "all"], "reference": ["ChatGPT"] * 3,
                            "relative_candidate_first_pct": [70.0, float("nan"), 70.0],
                            "relative_reference_first_pct": [80.0, float("nan"), 80.0],
                            "relative_mean_pct": [75.0, float("nan"), 75.0]})
    paper = pd.DataFrame([{"set": s, "paper_reference": ref, "paper_model": m, "value": v,
                           "shown": "not available" if v is None else f"{v} (unverified)"}
                          for s, v in (("vicuna_bench", 95.0), ("wizardlm", None), ("all", 90.0))
                          for ref in ("ChatGPT", "GPT-4") for m in ("Orca-13B", "Vicuna-13B")])
    fig = plot_relative_scores(summary, paper, candidate=TUNED)
    ax = fig.axes[0]
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    ours = next(c for label, c in bars.items() if label.startswith("ours vs ChatGPT"))
    orca = next(c for label, c in bars.items() if label.startswith("paper: Orca-13B vs ChatGPT"))
    assert {_hex(p.get_facecolor()) for p in ours.patches} == {figure_style.ROLE_COLORS["tuned student"]}
    assert {_hex(p.get_facecolor()) for p in orca.patches} == {figure_style.PAPER_COLORS["Orca-13B"]}
    assert all(p.get_hatch() == figure_style.PAPER_HATCH for p in orca.patches)
    assert len(ours.patches) == 2 and len(orca.patches) == 2            # wizardlm missing for all three series
    assert sum(t.get_text().strip() == "n/a" for t in ax.texts) == 3
    assert any(abs(p.get_width() - 75.0) < 1e-9 for p in ours.patches)
    assert ax.collections, "ours: the two orders drawn as an error bar"
    assert "Average (all sets)" in [t.get_text() for t in ax.get_yticklabels()]
    plt.close("all")


def test_colours_and_style_can_be_changed_from_the_environment(tmp_path, monkeypatch):
    import json

    import matplotlib as mpl
    import pytest

    from orca_utils import figure_style

    (tmp_path / "colors.json").write_text(json.dumps({"tuned student": "#000000"}))
    monkeypatch.setenv("ORCA_FIGURE_COLORS", str(tmp_path / "colors.json"))
    assert figure_style.color_for("student tuned by 04_training") == "#000000"
    assert figure_style.color_for("GPT-4") == figure_style.PAPER_COLORS["GPT-4"]
    (tmp_path / "colors.json").write_text(json.dumps({"my model": "#000000"}))
    with pytest.raises(ValueError, match="unknown keys"):
        figure_style.color_for("x")
    monkeypatch.delenv("ORCA_FIGURE_COLORS")
    (tmp_path / "big.mplstyle").write_text("axes.titlesize: 21\n")
    monkeypatch.setenv("ORCA_FIGURE_STYLE", str(tmp_path / "big.mplstyle"))
    figure_style.apply()
    assert mpl.rcParams["axes.titlesize"] == 21
