"""Run folders: figures as PNG+PDF with provenance, tables as CSV+MD, metrics merged into metrics.json."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from orca_utils.reference import NOT_AVAILABLE, format_paper_value, paper_block  # noqa: E402
from orca_utils.runs import setup_notebook  # noqa: E402


def test_save_fig_table_metrics(tmp_path):
    cfg, run = setup_notebook("03_packing", "smoke", run_dir=str(tmp_path), quiet=True)
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    paths = run.save_fig(fig, "lengths", provenance="model: tiny; data: fixture")
    assert [p.name for p in paths] == ["fig_lengths.png", "fig_lengths.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    csv, md = run.save_table(pd.DataFrame({"a": [1], "b": ["x"]}), "demo", provenance="data: fixture")
    assert csv.read_text().splitlines()[0] == "a,b"
    assert "_data: fixture_" in md.read_text() and "| b" in md.read_text()
    run.save_metrics({"x/y": 1})
    run.save_metrics({"x/z": 2.5}, provenance={"model": "tiny"})
    saved = json.loads((tmp_path / "03_packing" / "metrics.json").read_text())
    assert saved["metrics"] == {"x/y": 1, "x/z": 2.5} and saved["provenance"] == {"model": "tiny"}
    assert saved["params_hash"] == run.params_hash and saved["profile"] == "smoke"


def test_provenance_footer_sits_below_the_axis_labels(tmp_path):
    """A tall figure (the BBH one) once had its footer drawn over its x label."""
    cfg, run = setup_notebook("06_bbh", "smoke", run_dir=str(tmp_path), quiet=True)
    fig, ax = plt.subplots(figsize=(8, 9))
    ax.barh([f"task_{i}" for i in range(27)], range(27))
    label = ax.set_xlabel("relative improvement (%)")
    fig.tight_layout()                     # the x label touches the bottom edge, where the footer used to go
    run.save_fig(fig, "tall", provenance="models: tiny stand-in; " * 12)
    fig.canvas.draw()                      # measure in the figure's own frame (saving "tight" shifts it)
    renderer = fig.canvas.get_renderer()
    footer = fig.texts[-1].get_window_extent(renderer)
    assert footer.y1 <= label.get_window_extent(renderer).y0
    assert footer.y1 <= ax.get_tightbbox(renderer).y0
    plt.close(fig)


def test_paper_values_keep_their_status():
    assert format_paper_value(None) == NOT_AVAILABLE
    assert format_paper_value(41.7, "verified") == "41.7"
    assert format_paper_value(41.66, "recalled") == "41.7 (unverified)"
    assert paper_block("agieval_zero_shot")["average"]["Orca-13B"]["value"] == 41.7


def test_a_rerun_starts_its_metrics_afresh(tmp_path):
    """Saves within one execution merge; a new execution in a used folder does not keep the old run's keys."""
    _, first = setup_notebook("03_packing", "smoke", run_dir=str(tmp_path), quiet=True)
    first.save_metrics({"old/only": 1, "both": 1})
    first.save_metrics({"more": 2})
    path = tmp_path / "03_packing" / "metrics.json"
    assert json.loads(path.read_text())["metrics"] == {"old/only": 1, "both": 1, "more": 2}
    _, again = setup_notebook("03_packing", "smoke", run_dir=str(tmp_path), quiet=True)
    again.started = first.started + 1.0           # a later execution (two setups can share a clock tick)
    again.save_metrics({"both": 3})
    assert json.loads(path.read_text())["metrics"] == {"both": 3}
