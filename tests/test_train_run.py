"""Training runs (notebook 04) on a tiny random LLaMA: exact resume, progressive stage 2, distributed entry point."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from orca_utils.train import _run_for, checkpoint_dir, load_student, stage_model_dir, train_stage

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import make_fake_augmentation, make_tiny_student, tiny_overrides  # noqa: E402


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory) -> Path:
    return make_tiny_student(tmp_path_factory.mktemp("tiny") / "student")


def _setup(root: Path, student: Path, **extra):
    make_fake_augmentation(root)
    return _run_for("smoke", str(root), tiny_overrides(student, **extra))


def _losses(result: dict) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in result["history"] if "loss" in h}


def _data_log(run, stage: int, rank: int = 0) -> list[list[str]]:
    path = run.dir / "data_log" / f"stage{stage}_rank{rank}.jsonl"
    return [json.loads(line)["sample_ids"] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_losses(tmp_path, tiny_student):
    cfg_a, run_a = _setup(tmp_path / "a", tiny_student)
    full = train_stage(cfg_a, run_a, 1, log=lambda *a: None)
    assert full["steps"] == 4 and full["resumed_from"] is None
    # an interrupted run: only the step-2 checkpoint exists, as if the process died after saving it
    cfg_b, run_b = _setup(tmp_path / "b", tiny_student)
    src, dst = checkpoint_dir(run_a, 1) / "checkpoint-2", checkpoint_dir(run_b, 1) / "checkpoint-2"
    shutil.copytree(src, dst)
    resumed = train_stage(cfg_b, run_b, 1, log=lambda *a: None)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 4
    a, b = _losses(full), _losses(resumed)
    assert set(b) >= {3, 4}
    for step in (3, 4):
        assert b[step] == pytest.approx(a[step], rel=1e-6), f"step {step}: resumed {b[step]} != {a[step]}"
    # same data position: the batches after the checkpoint hold the same samples
    assert _data_log(run_b, 1)[:2] == _data_log(run_a, 1)[2:4]
    assert resumed["eval_loss_final"] == pytest.approx(full["eval_loss_final"], rel=1e-6)


@pytest.mark.slow
def test_stage2_starts_from_stage1_weights(tmp_path, tiny_student):
    cfg, run = _setup(tmp_path, tiny_student)
    with pytest.raises(FileNotFoundError, match="stage 2 starts from stage 1"):
        load_student(cfg, run, 2)
    train_stage(cfg, run, 1, log=lambda *a: None)
    stage1 = load_student(cfg, run, 1)[0].state_dict()          # the untuned student (pad row added)
    start2, tok2 = load_student(cfg, run, 2)
    from transformers import AutoModelForCausalLM

    saved1 = AutoModelForCausalLM.from_pretrained(stage_model_dir(run, 1)).state_dict()
    for name, value in start2.state_dict().items():
        assert torch.equal(value, saved1[name]), name
    assert any(not torch.equal(v, stage1[k]) for k, v in saved1.items()), "stage 1 changed no weight"
    assert tok2.pad_token_id != tok2.eos_token_id
    result = train_stage(cfg, run, 2, log=lambda *a: None)
    assert result["steps"] == 3 and (run.dir / "student" / "config.json").exists()
    assert (run.dir / "student" / "tokenizer_config.json").exists()
    assert set(json.loads((run.dir / "stage2_result.json").read_text())) >= {"train_loss_final", "eval_loss_final"}


@pytest.mark.slow
def test_accelerate_launch_two_cpu_ranks_train_disjoint_data(tmp_path, tiny_student):
    """The distributed path of the GPU profile: `accelerate launch` of the same entry point, 2 ranks (gloo, CPU)."""
    from orca_utils.train import launch_command, launch_stage

    make_fake_augmentation(tmp_path)
    overrides = tiny_overrides(tiny_student, **{"stage1.max_steps": 3, "num_processes": 2})
    cfg, run = _run_for("smoke", str(tmp_path), overrides)
    cmd = launch_command(cfg, run, 1, overrides)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "orca_utils.train" in cmd
    lines: list[str] = []
    result = launch_stage(cfg, run, 1, overrides, log=lines.append)
    assert result["world_size"] == 2 and result["steps"] == 3, "\n".join(lines[-30:])
    # the model is loaded once the process group exists (FSDP's cpu_ram_efficient_loading / ZeRO-3 init need it)
    assert result["distributed_before_model_load"] is True
    # the launcher tokenized into Arrow once, before the launch; both ranks only opened the same memory-mapped files
    assert result["data"]["storage"] == "arrow" and list((tmp_path / "token_store").rglob("*.arrow"))
    assert list((run.dir / "data_cache").glob("plan_stage1_*.npz"))
    assert result["data"]["prepared_here"] is False and any("training data prepared in" in x for x in lines)
    # the batch: 2 rows per device x 2 ranks x 1 accumulation, recorded beside the world size
    assert (result["global_batch_size"], result["gradient_accumulation_steps"], result["world_size"]) == (4, 1, 2)
    logged = [json.loads(x) for x in (run.dir / "train_log_stage1.jsonl").read_text().splitlines()]
    assert any("loss" in e for e in logged) and list((checkpoint_dir(run, 1) / "runs").rglob("events.out.*"))
    # the first 3 batches of each rank are the 3 steps trained (accelerate's loader collates one batch ahead)
    rank0, rank1 = ({i for ids in _data_log(run, 1, r)[:3] for i in ids} for r in (0, 1))
    assert rank0 and rank1 and not rank0 & rank1, "the two ranks must see disjoint samples"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(stage_model_dir(run, 1))
    assert model.get_input_embeddings().num_embeddings == 32001      # LLaMA + [[PAD]]
    assert [p.name for p in run.dir.glob("student*")] == ["student_stage1"]


def test_fsdp_leaves_activation_checkpointing_to_the_plugin(tmp_path, tiny_student, monkeypatch):
    from orca_utils.train import _sft_config

    make_fake_augmentation(tmp_path)
    cfg, _ = _run_for("smoke", str(tmp_path), tiny_overrides(tiny_student, gradient_checkpointing=True))
    assert _sft_config(cfg, 1, tmp_path / "o").activation_checkpointing is True
    monkeypatch.setattr("orca_utils.train._fsdp_launched", lambda: True)
    assert _sft_config(cfg, 1, tmp_path / "o").activation_checkpointing is False
    for name in ("fsdp_1node_8gpu", "fsdp_multinode"):
        import yaml

        from orca_utils.paths import PARAMS_DIR

        fsdp = yaml.safe_load((PARAMS_DIR / "accelerate" / f"{name}.yaml").read_text())["fsdp_config"]
        assert fsdp["fsdp_activation_checkpointing"] is True and fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
        assert fsdp["fsdp_cpu_ram_efficient_loading"] is True


@pytest.mark.slow
def test_rerunning_a_finished_stage_returns_it_instead_of_training_a_step_more(tmp_path, tiny_student):
    cfg, run = _setup(tmp_path, tiny_student)
    first = train_stage(cfg, run, 1, log=lambda *a: None)
    lines: list[str] = []
    again = train_stage(cfg, run, 1, log=lines.append)
    assert again == first and "already trained" in lines[0], lines
    # new data from 02 (the table rewritten): the stage is trained again, not returned
    table = tmp_path / "02_augmentation" / "train_stage1.parquet"
    table.write_bytes(table.read_bytes())
    import os

    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 10**9))
    lines.clear()
    third = train_stage(cfg, run, 1, log=lines.append)
    assert not any("already trained" in x for x in lines) and third["stamp"] != first["stamp"]
    assert third["resumed_from"] is None and third["steps"] == first["steps"], "new data never resumes old checkpoints"
