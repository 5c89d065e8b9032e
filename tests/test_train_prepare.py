"""04's data is prepared before the launch, outside any collective; the global batch is the param, not the GPU count."""
from __future__ import annotations

import inspect
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from orca_utils import train, train_data
from orca_utils.config import ConfigError, load_profile
from orca_utils.train import _run_for, batch_plan, planned_world_size, prepare_stage, train_stage

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import make_fake_augmentation, make_tiny_student, tiny_overrides  # noqa: E402


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory) -> Path:
    return make_tiny_student(tmp_path_factory.mktemp("tiny") / "student")


class _Stop(Exception):
    """Raised where the model would load: the data step is what these tests look at."""


def _no_barrier(desc=None):
    raise AssertionError("no collective may wrap the data step")


def _rank(monkeypatch, world_size: int) -> dict:
    """Run `train_stage` as one rank of a `world_size` launch, up to the model load; return what the data step got."""
    seen: dict = {"tokenized": 0}
    plain = train.prepare_stage_data

    def spy(*a, **kw):
        seen["prepare"] = kw.get("prepare")
        seen["data"] = plain(*a, **kw)
        return seen["data"]

    tokenize = train_data.tokenize_arrow

    def counted(*a, **kw):
        seen["tokenized"] += 1
        return tokenize(*a, **kw)

    monkeypatch.setattr(train, "prepare_stage_data", spy)
    monkeypatch.setattr(train_data, "tokenize_arrow", counted)
    monkeypatch.setattr(train, "_sft_config", lambda cfg, stage, out, world=None: SimpleNamespace(
        world_size=world_size, main_process_first=_no_barrier))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))

    def stop(*a, **kw):
        raise _Stop

    monkeypatch.setattr(train, "load_student_model", stop)
    return seen


def test_launched_ranks_open_the_prepared_cache_without_tokenizing(tmp_path, tiny_student, monkeypatch):
    make_fake_augmentation(tmp_path)
    cfg, run = _run_for("smoke", str(tmp_path), tiny_overrides(tiny_student))
    stats = prepare_stage(cfg, run, 1, log=lambda *a: None)          # what the launcher runs before the launch
    assert train_data.manifest_path(run.dir / "data_cache", 1).is_file()
    seen = _rank(monkeypatch, world_size=2)
    with pytest.raises(_Stop):
        train_stage(cfg, run, 1, log=lambda *a: None)
    assert seen["prepare"] is False and seen["tokenized"] == 0, "a launched rank must not tokenize"
    data = seen["data"]
    assert data["stats"]["samples"] == stats["samples"] and data["stats"]["prepared_here"] is False
    rows = [data["train_dataset"][i] for i in range(len(data["train_dataset"]))]
    assert sum(len(r["sample_ids"]) for r in rows) == stats["samples"] and rows[0]["input_ids"]


def test_a_missing_or_stale_cache_fails_the_ranks_in_one_line(tmp_path, tiny_student, monkeypatch):
    make_fake_augmentation(tmp_path)
    cfg, run = _run_for("smoke", str(tmp_path), tiny_overrides(tiny_student))
    seen = _rank(monkeypatch, world_size=2)
    with pytest.raises(train_data.TrainDataError, match=r"stage 1 training data: not prepared in .*--prepare-only") \
            as err:
        train_stage(cfg, run, 1, log=lambda *a: None)
    assert "\n" not in str(err.value) and seen["tokenized"] == 0
    monkeypatch.undo()
    prepare_stage(cfg, run, 1, log=lambda *a: None)
    table = tmp_path / "02_augmentation" / "train_stage1.parquet"
    pd.read_parquet(table).head(30).to_parquet(table)                # 02 reran: the cache no longer matches
    _rank(monkeypatch, world_size=2)
    with pytest.raises(train_data.TrainDataError, match="prepared from other data, tokenizer or params"):
        train_stage(cfg, run, 1, log=lambda *a: None)


def test_a_single_process_prepares_itself_without_a_barrier(tmp_path, tiny_student, monkeypatch):
    make_fake_augmentation(tmp_path)
    cfg, run = _run_for("smoke", str(tmp_path), tiny_overrides(tiny_student))
    seen = _rank(monkeypatch, world_size=1)
    with pytest.raises(_Stop):
        train_stage(cfg, run, 1, log=lambda *a: None)
    assert seen["prepare"] is True and seen["tokenized"] == 1   # the whole table once (train and held-out), here
    assert "main_process_first" not in inspect.getsource(train.train_stage)


def test_prepare_only_command_writes_the_cache(tmp_path, tiny_student):
    make_fake_augmentation(tmp_path)
    overrides = [x for o in tiny_overrides(tiny_student) for x in ("--params-override", o)]
    rc = train.main(["--profile", "smoke", "--stage", "1", "--run-dir", str(tmp_path), "--prepare-only", *overrides])
    assert rc == 0 and list((tmp_path / "04_training" / "data_cache").glob("stage1_prepared.json"))


# ---- the global batch ------------------------------------------------------------------------------------------
def test_global_batch_is_the_same_on_8_and_24_ranks():
    cfg = load_profile("paper", overrides=["04_training.global_batch_size=96"])["04_training"]
    on8, on24 = batch_plan(cfg, 8), batch_plan(cfg, 24)
    assert on8["global_batch_size"] == on24["global_batch_size"] == 96
    assert (on8["gradient_accumulation_steps"], on24["gradient_accumulation_steps"]) == (6, 2)
    multinode = load_profile("paper", overrides=["04_training.accelerate_config=params/accelerate/fsdp_multinode.yaml",
                                                 "04_training.num_processes=8"])["04_training"]
    assert planned_world_size(multinode) == 24 and planned_world_size(cfg) == 8
    paper = load_profile("paper")["04_training"]
    assert batch_plan(paper, 8) == {"global_batch_size": 96, "per_device_batch_size": 2,
                                    "gradient_accumulation_steps": 6, "world_size": 8}
    assert batch_plan(paper, 24)["gradient_accumulation_steps"] == 2       # the paper profile on fsdp_multinode
    with pytest.raises(ValueError, match=r"^04_training.global_batch_size: 96 rows is not a multiple of "
                                         r"per_device_batch_size 2 x 32 ranks = 64") as err:
        batch_plan(paper, 32)
    assert "\n" not in str(err.value)


def test_accumulation_is_the_alternative_not_both():
    smoke = load_profile("smoke")["04_training"]
    assert batch_plan(smoke, 1)["gradient_accumulation_steps"] == 1                  # neither set: 1
    acc = load_profile("smoke", overrides=["04_training.gradient_accumulation_steps=3"])["04_training"]
    assert batch_plan(acc, 4)["global_batch_size"] == acc.per_device_batch_size * 4 * 3
    with pytest.raises(ConfigError, match="set one"):
        load_profile("smoke", overrides=["04_training.gradient_accumulation_steps=3",
                                         "04_training.global_batch_size=12"])


def test_sft_config_takes_the_accumulation_from_the_global_batch(tmp_path):
    cfg = load_profile("smoke", overrides=["04_training.global_batch_size=32"])["04_training"]
    assert train._sft_config(cfg, 1, tmp_path, world_size=8).gradient_accumulation_steps == 2
    assert train._sft_config(cfg, 1, tmp_path, world_size=2).gradient_accumulation_steps == 8


def test_stage_metrics_record_the_batch():
    from orca_utils.train_report import stage_metrics

    result = {"stage": 1, "train_loss_final": 1.0, "eval_loss_final": 1.1, "steps": 3, "tokens_per_s": 9.0,
              "useful_tokens": 90, "data": {"samples_per_row": 2.5}, "global_batch_size": 128,
              "per_device_batch_size": 2, "gradient_accumulation_steps": 8, "world_size": 8}
    m = stage_metrics(result)
    assert (m["stage1/global_batch_size"], m["stage1/per_device_batch_size"], m["stage1/gradient_accumulation_steps"],
            m["stage1/world_size"]) == (128, 2, 8, 8) and m["stage1/train_loss"] == 1.0
