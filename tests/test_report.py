"""The run report: built from a small fake outputs tree, every image it references exists, missing notebooks are
marked missing, provenance badges tell stand-ins from real teachers."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from orca_utils.report import build_report, classify_provenance


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.ids, self.links = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src"))
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path, dpi=40)
    plt.close(fig)


def _notebook(root: Path, nb: str, provenance: dict, tables=(), figures=()) -> None:
    folder = root / nb
    folder.mkdir(parents=True)
    for name in tables:
        pd.DataFrame({"task": ["a", "b"], "accuracy_pct": [12.5, 40.0]}).to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.md").write_text(f"| table |\n\n_{'; '.join(provenance.values())}_\n")
    for name in figures:
        _png(folder / f"{name}.png")
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"x/y": 1}, "provenance": provenance}))
    (folder / "run_info.json").write_text(json.dumps({"status": "ok", "params_hash": "h"}))


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "outputs" / "smoke"
    _notebook(root, "01_sampling", {"data": "FLAN-v2 sample (offline)"}, tables=["tab_system_messages"])
    _notebook(root, "03_packing", {"tokenizer": "LLaMA tokenizer", "teacher": "data teacher (FLAN-v2 CoT)"},
              figures=["fig_lengths", "fig_packing"])
    _notebook(root, "06_bbh", {"model": "LLaMA-13B tuned on GPT-4 responses"}, tables=["tab_bbh"],
              figures=["fig_bbh"])
    (root / "manifest.json").write_text(json.dumps({
        "profile": "smoke", "git": {"commit": "abc123", "dirty": False}, "status": "ok",
        "notebooks": {"01_sampling": {"status": "ok", "duration_s": 3.2, "started": "t0", "finished": "t1"}}}))
    return root


def test_report_images_exist_and_missing_sections_are_marked(fake_root):
    summary = build_report(fake_root, pdf=False)
    page = (fake_root / "report" / "report.html").read_text()
    refs = _Refs()
    refs.feed(page)
    assert len(refs.images) == 3
    for src in refs.images:
        assert not src.startswith("/") and (fake_root / "report" / src).is_file(), src
    assert set(refs.links) <= refs.ids                       # every table-of-contents link has its target
    assert set(summary["missing"]) == {"02_augmentation", "04_training", "05_agieval", "07_open_ended",
                                       "08_safety", "09_explanation_vs_answer"}
    assert page.count("MISSING:") == 6 and "--only 04" in page
    assert summary["sections"]["06_bbh"] == {"status": "ok", "badge": "real teacher/model", "tables": 1,
                                             "figures": 1}
    assert summary["sections"]["03_packing"]["badge"] == "offline stand-in"
    assert "abc123" in page and "40.0" in page


def test_report_survives_moving_the_folder_and_writes_a_pdf(fake_root, tmp_path):
    build_report(fake_root, pdf=True)
    moved = tmp_path / "elsewhere"
    (fake_root / "report").rename(moved)
    refs = _Refs()
    refs.feed((moved / "report.html").read_text())
    assert refs.images and all((moved / src).is_file() for src in refs.images)
    assert (moved / "report.pdf").read_bytes()[:4] == b"%PDF"


def test_report_of_an_empty_tree_lists_everything_missing(tmp_path):
    summary = build_report(tmp_path, pdf=False)
    assert len(summary["missing"]) == 9
    assert "no manifest.json" in (tmp_path / "report" / "report.html").read_text()


def test_classify_provenance():
    assert classify_provenance([]) == "unknown"
    assert classify_provenance(["SmolLM2-135M-Instruct (local stand-in teacher)"]) == "offline stand-in"
    assert classify_provenance(["gpt-4-0613 via api.openai.com", "LLaMA-13B"]) == "real teacher/model"


def test_report_metrics_come_from_the_summary_in_one_call(fake_root):
    """Notebook 10 saves `report.summary_metrics`: what its cells computed from the sections table before."""
    from orca_utils.report import sections_table, summary_metrics

    summary = build_report(fake_root, pdf=False)
    sections = pd.DataFrame.from_dict(summary["sections"], orient="index")
    pd.testing.assert_frame_equal(sections_table(summary), sections)
    metrics, provenance = summary_metrics(summary)
    assert metrics == {"report/figures": len(summary["images"]), "report/tables": int(sections["tables"].sum()),
                       "report/sections_ok": int((sections["status"] == "ok").sum()),
                       "report/sections_missing": len(summary["missing"])}
    assert (metrics["report/figures"], metrics["report/sections_missing"]) == (3, 6)
    assert provenance == {"report": "gathered from this profile's notebook outputs; badges per section"}
