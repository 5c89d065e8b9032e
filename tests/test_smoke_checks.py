"""The smoke run's plausibility checks (`smoke_checks.py`) catch what they are for, on made-up metrics."""
from __future__ import annotations

import json

from smoke_checks import consistency_problems, plausibility_problems, rule_for, value_problems


def test_rules_by_key():
    assert rule_for("packing/llama/paper/packing_factor") == ">1"
    assert rule_for("agieval/base/lsat_ar/extraction_failure_rate") == "0-100"
    assert rule_for("open_ended/m/all/flip_rate") == "0-1"
    assert rule_for("open_ended/m/all/relative_mean_pct") == ">=0"      # may exceed 100
    assert rule_for("stage1/heldout_loss") == ">0"
    assert rule_for("stage1/status/ok") == "count"


def test_values_out_of_range_are_reported():
    bad = {"packing/llama/paper/packing_factor": 0.9, "stage1/train_loss": float("nan"), "bbh/base/macro_accuracy":
           101.0, "open_ended/unparseable_share": 1.5, "stage1/rows": -1, "stage1/steps": 2.5,
           "open_ended/m/all/relative_mean_pct": 130.0, "open_ended/m/all/flip_rate": None}
    found = value_problems("nb", bad)
    assert len(found) == 6 and all(line.startswith("nb: ") for line in found), found


def _run(changes: dict | None = None) -> dict:
    """Three consistent notebooks' metrics, with `changes` ({(notebook, key): value}) applied."""
    m = {"01_sampling": {"pool/rows": 100, "stage1/rows": 10, "stage2/rows": 4, "stage1/cot/rows": 10,
                         "stage2/cot/rows": 4},
         "02_augmentation": {"stage1/requests": 10, "stage1/train_rows": 9, "stage1/cached": 0, "stage1/status/ok": 9,
                             "stage1/status/truncated": 1, "stage2/requests": 4, "stage2/train_rows": 4,
                             "stage2/cached": 0, "stage2/status/ok": 4},
         "03_packing": {"samples/rows": 13, "samples/from_02": True, "packing/llama/dropped": 0,
                        "packing/llama/best_fit/packing_factor": 3.0, "packing/llama/paper/packing_factor": 2.5}}
    for (nb, key), value in (changes or {}).items():
        m[nb][key] = value
    return m


def test_counts_between_notebooks():
    assert consistency_problems(_run()) == []
    [line] = consistency_problems(_run({("02_augmentation", "stage1/requests"): 11,
                                        ("02_augmentation", "stage1/status/ok"): 10,
                                        ("02_augmentation", "stage1/train_rows"): 10,
                                        ("03_packing", "samples/rows"): 14}))
    assert line == "02: stage1 sent 11 requests for 01's 10 queries"
    [line] = consistency_problems(_run({("03_packing", "samples/rows"): 12}))
    assert line.startswith("03: 12 samples from 02")
    found = consistency_problems(_run({("02_augmentation", "stage2/train_rows"): 5}))
    assert any("stage2 train rows above ok responses" in line for line in found), found


def test_the_funnel_shrinks_to_the_training_rows():
    funnel = {f"stage1/funnel/{k}": v for k, v in (("requests", 10), ("answered", 10), ("after_refusal", 10),
                                                     ("after_truncated", 9), ("after_label_agreement", 9))}
    assert consistency_problems(_run({("02_augmentation", k): v for k, v in funnel.items()})) == []
    grows = {**funnel, "stage1/funnel/after_label_agreement": 10}
    found = consistency_problems(_run({("02_augmentation", k): v for k, v in grows.items()}))
    assert any("funnel steps" in line for line in found) and any("last step" in line for line in found), found


def test_on_a_run_folder(tmp_path):
    for nb, metrics in _run().items():
        (tmp_path / nb).mkdir()
        (tmp_path / nb / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    assert plausibility_problems(tmp_path) == []
    assert plausibility_problems(tmp_path / "empty") == [f"{tmp_path / 'empty'}: no metrics.json found"]
