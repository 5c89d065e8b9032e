"""The whole smoke pipeline through papermill, as `make smoke` runs it, with each notebook's metrics checked:
the keys it must report, their values in range and the counts consistent from one notebook to the next
(`smoke_checks.py`, which also runs on any run folder: `.venv/bin/python tests/smoke_checks.py outputs/smoke`).

One run (session-scoped, into a temp folder) serves every assertion; it is the slowest test (minutes).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from compare_metrics import GOLDEN, differences, run_metrics
from smoke_checks import consistency_problems, load_metrics, value_problems

from orca_utils.schemas import NOTEBOOK_SCHEMAS

pytestmark = pytest.mark.slow

# Metrics each notebook must report (slash-path keys; a trailing "*" matches any key with that prefix).
EXPECTED_METRICS: dict[str, list[str]] = {
    "01_sampling": ["stage1/rows", "stage2/rows", "stage1/cot/rows", "stage1/niv2/rows", "stage1/t0/shortfall",
                    "pool/malformed", "contamination/bbh/items_with_overlap"],
    "02_augmentation": ["stage1/status/ok", "stage2/status/ok", "stage1/train_rows", "stage2/train_rows",
                        "stage1/estimate_usd"],
    "03_packing": ["packing/llama/paper/packing_factor", "packing/llama/best_fit/packing_factor",
                   "packing/paper_reference/packing_factor", "lengths/llama/response_mean"],
    "04_training": ["stage1/train_loss", "stage1/heldout_loss", "stage2/train_loss", "stage2/heldout_loss",
                    "stage1/tokens_per_s", "student/dir"],
    "05_agieval": ["agieval/base/macro_accuracy", "agieval/student/macro_accuracy", "agieval/base/lsat_ar/*"],
    "06_bbh": ["bbh/base/macro_accuracy", "bbh/student/macro_accuracy", "bbh/base/word_sorting/*"],
    "07_open_ended": ["open_ended/n_prompts", "open_ended/unparseable_share"],
    "08_safety": ["truthfulqa/base/mc1", "truthfulqa/base/mc2", "truthfulqa/student/mc1", "toxigen/n_prompts"],
    "09_explanation_vs_answer": ["experiment/all/answer_only/accuracy_pct", "experiment/all/explanation/accuracy_pct",
                                 "experiment/all/progressive/accuracy_pct", "experiment/tokens_per_variant"],
    "10_report": ["report/sections_ok", "report/sections_missing", "report/figures"],
}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "orca_utils", "run", "--profile", "smoke", "--run-dir", str(out)],
                          capture_output=True, text=True, timeout=3000)
    duration = time.time() - t0
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, f"pipeline failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    return out, duration


def test_manifest_lists_every_notebook_ok(smoke_run):
    out, duration = smoke_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert list(manifest["notebooks"]) == list(NOTEBOOK_SCHEMAS)
    for stem, entry in manifest["notebooks"].items():
        assert entry["status"] == "ok", stem
        assert entry["duration_s"] > 0 and entry["params_hash"], stem
        assert (out / entry["output"]).exists(), stem
    print(f"smoke pipeline: {duration:.0f}s; per notebook: "
          + ", ".join(f"{s} {e['duration_s']:.0f}s" for s, e in manifest["notebooks"].items()))


@pytest.mark.parametrize("stem", list(NOTEBOOK_SCHEMAS))
def test_notebook_metrics(smoke_run, stem):
    """Every notebook reports its key figures; the training gets the data it is sized for."""
    out, _ = smoke_run
    saved = json.loads((out / stem / "metrics.json").read_text())
    assert saved["notebook"] == stem and saved["metrics"], stem
    for key in EXPECTED_METRICS[stem]:
        if key.endswith("*"):
            assert any(k.startswith(key[:-1]) for k in saved["metrics"]), (stem, key, sorted(saved["metrics"]))
        else:
            assert key in saved["metrics"], (stem, key, sorted(saved["metrics"]))
    problems = value_problems(stem, saved["metrics"])
    assert not problems, "\n".join(problems)


def test_counts_agree_between_notebooks(smoke_run):
    """01's rows = 02's requests (up to 02's cap), 02's ok rows = its training rows = 03's samples, 05/06 score the
    same items for each model, 07's prompts add up, 08 scores 04's student, 10 misses no notebook."""
    out, _ = smoke_run
    metrics = load_metrics(out)
    assert list(metrics) == list(NOTEBOOK_SCHEMAS)
    problems = consistency_problems(metrics)
    assert not problems, "\n".join(problems)


def test_stages_feed_each_other(smoke_run):
    out, _ = smoke_run
    metrics = {s: json.loads((out / s / "metrics.json").read_text())["metrics"] for s in NOTEBOOK_SCHEMAS}
    assert metrics["02_augmentation"]["stage1/requests"] == metrics["01_sampling"]["stage1/rows"]
    assert metrics["02_augmentation"]["stage2/train_rows"] >= 8, "stage 2 needs finished (not truncated) answers"
    assert (out / "04_training" / "student" / "config.json").exists()
    assert (out / "report" / "report.html").exists()
    assert metrics["10_report"]["report/sections_missing"] == 0, "every notebook feeds the report"


def test_metrics_match_the_golden_file(smoke_run):
    """Every smoke metric (timings left out) equals the committed golden file's: a refactoring that moves a number
    fails here. After a change that is meant to move them: `.venv/bin/python tests/compare_metrics.py
    --write-golden outputs/smoke` (from a fresh `make smoke`), and say why in the commit."""
    out, _ = smoke_run
    golden = json.loads(GOLDEN.read_text())["metrics"]
    diffs = differences(golden, run_metrics(out))
    assert not diffs, "\n".join(f"{nb}: " + "; ".join(d[:8]) for nb, d in diffs.items())


def test_every_notebook_says_what_produced_it(smoke_run):
    """Each metrics.json carries its structured `sources`; the report's badge follows from them: no model for 01
    (sampling) and 03 (packing), an offline stand-in wherever SmolLM2, a data teacher or a symbolic teacher
    produced the numbers, never "real model" on the smoke profile."""
    from orca_utils.contracts import read_sources
    from orca_utils.provenance import badge

    out, _ = smoke_run
    badges = {stem: badge(read_sources(out / stem)) for stem in NOTEBOOK_SCHEMAS}
    assert all(read_sources(out / stem) is not None for stem in NOTEBOOK_SCHEMAS), badges
    assert badges["01_sampling"] == badges["03_packing"] == "no model", badges
    stand_ins = ("02_augmentation", "04_training", "05_agieval", "06_bbh", "07_open_ended", "08_safety",
                 "09_explanation_vs_answer")
    assert all(badges[s] == "offline stand-in" for s in stand_ins), badges


def test_teacher_data_goes_through_the_funnel(smoke_run):
    """02's data funnel: `tab_data_funnel` counts requests -> answered -> each filter per stage (duplicates,
    refusals, truncation, label agreement at least), at least one smoke row is rejected, every reject has its
    reason, and the training tables carry what the teacher saw beside what the student trains with."""
    import pandas as pd

    out, _ = smoke_run
    folder = out / "02_augmentation"
    funnel = pd.read_csv(folder / "tab_data_funnel.csv")
    for stage in ("stage1", "stage2"):
        steps = funnel.loc[funnel["stage"] == stage, "step"].tolist()
        assert {"requests", "answered", "after_refusal", "after_truncated", "after_duplicate_query",
                "after_duplicate_response", "after_label_agreement"} <= set(steps), steps
    rejects = pd.read_csv(folder / "tab_data_funnel_rejects.csv")
    assert len(rejects) >= 1 and rejects["reason"].notna().all() and rejects["filter"].notna().all()
    for stage in ("stage1", "stage2"):
        train = pd.read_parquet(folder / f"train_{stage}.parquet")
        assert not set(train["id"]) & set(rejects.loc[rejects["stage"] == stage, "id"]), "a reject was trained on"
        assert (train["teacher_system_message"] == train["system_message"]).all()   # smoke follows Orca 1


def test_report_pdf_never_ends_a_page_with_a_heading(smoke_run):
    """The smoke run's report.pdf, read page by page: no page ends with a section heading, the lines under it or a
    table's caption (the keep rules themselves are tested on a built document in test_report_pdf.py)."""
    from test_report_pdf import _pages_ending_with_a_heading

    out, _ = smoke_run
    report = out / "report"
    assert _pages_ending_with_a_heading(report / "report.pdf", (report / "report.html").read_text()) == []


def test_an_ablation_of_the_judge_reuses_the_smoke_run(smoke_run, tmp_path):
    """The ablation path end to end: 07 with another judge setting, in its own folder, reads 01-06's outputs from
    the smoke run without copying them (the manifest says where they came from); a changed 04 param instead stops
    05 with one line naming the notebook to rerun."""
    out, _ = smoke_run
    ablation = tmp_path / "judge_ablation"
    run = [sys.executable, "-m", "orca_utils", "run", "--profile", "smoke", "--run-dir", str(ablation),
           "--reuse", str(out)]
    proc = subprocess.run(run + ["--only", "07", "--params-override", "07_open_ended.judge.max_tokens=16"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    manifest = json.loads((ablation / "manifest.json").read_text())
    assert manifest["notebooks"]["07_open_ended"]["upstream"]["04_training"]["from"] == str(out)
    assert not (ablation / "04_training").exists()
    stale = subprocess.run(run + ["--only", "05", "--params-override", "04_training.stage1.max_steps=3"],
                           capture_output=True, text=True, timeout=900)
    assert stale.returncode != 0
    assert "04_training" in stale.stdout + stale.stderr and "rerun it" in stale.stdout + stale.stderr
