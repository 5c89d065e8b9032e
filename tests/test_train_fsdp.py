"""FSDP at CPU scale: the paper profile's FSDP config trains 2 CPU ranks, writes sharded checkpoints (one file per
rank), resumes from them exactly, and saves one consolidated student.

accelerate only switches FSDP on for accelerators; with `device: cpu` and an FSDP config, `launch_command` starts
`orca_utils.fsdp_cpu`, which makes accelerate run FSDP on the CPU ranks. The FSDP settings are the paper's
(params/accelerate/fsdp_1node_8gpu.yaml) with 2 processes and no mixed precision.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from orca_utils.paths import PARAMS_DIR
from orca_utils.train import _run_for, checkpoint_dir, launch_command, launch_stage, stage_model_dir

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import make_fake_augmentation, make_tiny_student, tiny_overrides  # noqa: E402


def _fsdp_config(tmp: Path) -> Path:
    config = yaml.safe_load((PARAMS_DIR / "accelerate" / "fsdp_1node_8gpu.yaml").read_text())
    config.update(num_processes=2, mixed_precision="no")
    path = tmp / "fsdp_2cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _overrides(student: Path, config: Path) -> list[str]:
    return tiny_overrides(student, accelerate_config=str(config), launcher="accelerate")


def _launch(root: Path, student: Path, config: Path) -> tuple[object, dict]:
    if not (root / "02_augmentation").exists():
        make_fake_augmentation(root)
    overrides = _overrides(student, config)
    cfg, run = _run_for("smoke", str(root), overrides)
    cmd = launch_command(cfg, run, 1, overrides)
    assert cmd[cmd.index("--profile") - 1] == "orca_utils.fsdp_cpu", cmd
    lines: list[str] = []
    try:
        return run, launch_stage(cfg, run, 1, overrides, log=lines.append)
    except RuntimeError:
        print("\n".join(lines[-60:]))
        raise


def test_fsdp_config_on_cpu_runs_through_the_fsdp_entry_point(tmp_path):
    student = tmp_path / "student"
    cfg, run = _run_for("smoke", str(tmp_path), _overrides(student, _fsdp_config(tmp_path)))
    assert "orca_utils.fsdp_cpu" in launch_command(cfg, run, 1)
    gpu_cfg = cfg.model_copy(update={"device": "cuda"})
    assert "orca_utils.train" in launch_command(gpu_cfg, run, 1), "GPUs take accelerate's own FSDP"
    ddp = cfg.model_copy(update={"accelerate_config": None})
    assert "orca_utils.train" in launch_command(ddp, run, 1)


@pytest.mark.slow
def test_fsdp_sharded_checkpoints_resume_and_consolidate(tmp_path):
    import torch
    from safetensors.torch import load_file

    student = make_tiny_student(tmp_path / "student")
    config = _fsdp_config(tmp_path)
    run_a, full = _launch(tmp_path / "a", student, config)
    assert full["distributed_type"] == "FSDP" and full["fsdp_version"] == 2
    assert full["world_size"] == 2 and full["steps"] == 4 and full["resumed_from"] is None
    ckpt = checkpoint_dir(run_a, 1) / "checkpoint-2"
    # sharded: one distributed-checkpoint file per rank for the model and for the optimizer, no full copy
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):
        files = sorted(p.name for p in (ckpt / part).glob("*.distcp"))
        assert files == ["__0_0.distcp", "__1_0.distcp"], (part, files)
    assert not list(ckpt.glob("*.safetensors")) and not list(ckpt.glob("pytorch_model.bin"))
    # an interrupted run: only the step-2 checkpoint exists; the rerun resumes from the shards
    root_b = tmp_path / "b"
    make_fake_augmentation(root_b)
    cfg_b, run_b = _run_for("smoke", str(root_b), _overrides(student, config))
    shutil.copytree(ckpt, checkpoint_dir(run_b, 1) / "checkpoint-2")
    run_b, resumed = _launch(root_b, student, config)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 4
    # exact resume, as under DDP (tests/test_train_run.py): the same samples in the same order and the same losses
    la, lb = ({h["step"]: h["loss"] for h in r["history"] if "loss" in h} for r in (full, resumed))
    for step in (3, 4):
        assert lb[step] == pytest.approx(la[step], rel=1e-5), (step, lb[step], la[step])
    assert resumed["eval_loss_final"] == pytest.approx(full["eval_loss_final"], rel=1e-5)
    assert 5 < la[1] < 15, f"the logged loss is the global mean token loss (about ln 32001 = 10.4), not {la[1]}"
    # one consolidated student: full tensors (LLaMA + [[PAD]] rows), the same weights after an exact resume
    a = load_file(str(stage_model_dir(run_a, 1) / "model.safetensors"))
    b = load_file(str(stage_model_dir(run_b, 1) / "model.safetensors"))
    assert a["model.embed_tokens.weight"].shape[0] == 32001
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-5, atol=1e-6), name
    # and training moved the weights: the consolidated student is not the untrained one
    start = load_file(str(student / "model.safetensors"))
    assert not torch.equal(start["model.layers.0.mlp.up_proj.weight"], a["model.layers.0.mlp.up_proj.weight"])
