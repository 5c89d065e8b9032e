"""The rehearsal profile: every notebook through the paper profile's code paths, offline, on CPU (minutes).

`params/rehearsal.yaml` extends `params/paper.yaml` and overrides only sizes and endpoints; one run into a temp folder
serves every assertion. The preflight (`validate --deep`) must pass on it too.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from orca_utils.config import load_profile
from orca_utils.schemas import NOTEBOOK_SCHEMAS
from orca_utils.train import accelerate_config_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def rehearsal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal") / "run"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "orca_utils", "run", "--profile", "rehearsal", "--run-dir",
                           str(out)], capture_output=True, text=True, timeout=1800)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, f"rehearsal failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    return out, time.time() - t0


def _metrics(out, stem):
    return json.loads((out / stem / "metrics.json").read_text())["metrics"]


def test_every_notebook_ok_and_the_manifest_says_it_extends_paper(rehearsal_run):
    out, duration = rehearsal_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["extends"] == ["paper"]
    assert list(manifest["notebooks"]) == list(NOTEBOOK_SCHEMAS)
    assert all(e["status"] == "ok" for e in manifest["notebooks"].values())
    print(f"rehearsal: {duration:.0f}s; " + ", ".join(f"{s} {e['duration_s']:.0f}s"
                                                      for s, e in manifest["notebooks"].items()))


def test_rehearsal_overrides_only_sizes_and_endpoints():
    """The code-path switches are the paper's: hub-layout sampling, Batch API, accelerate, generation mode."""
    paper, rehearsal = load_profile("paper"), load_profile("rehearsal")
    assert rehearsal["01_sampling"].source == paper["01_sampling"].source == "hub"
    for key in ("batch_mode", "check_models"):
        assert getattr(rehearsal["02_augmentation"].endpoint, key) == getattr(paper["02_augmentation"].endpoint, key)
    for stage in ("stage1", "stage2"):
        ours, theirs = getattr(rehearsal["02_augmentation"], stage), getattr(paper["02_augmentation"], stage)
        assert (ours.model, ours.dialect) == (theirs.model, theirs.dialect) and ours.dialect == "reasoning"
    assert rehearsal["04_training"].launcher == paper["04_training"].launcher == "accelerate"
    assert rehearsal["04_training"].num_processes == 2
    # the paper's FSDP settings, on 2 CPU ranks (orca_utils/fsdp_cpu.py runs them there)
    configs = [yaml.safe_load(accelerate_config_path(p["04_training"].accelerate_config).read_text())
               for p in (paper, rehearsal)]
    assert configs[0]["distributed_type"] == configs[1]["distributed_type"] == "FSDP"
    assert configs[0]["fsdp_config"] == configs[1]["fsdp_config"]
    assert configs[1]["num_processes"] == 2
    assert rehearsal["05_agieval"].mode == rehearsal["06_bbh"].mode == paper["06_bbh"].mode == "generate"
    assert rehearsal["07_open_ended"].judge.model == paper["07_open_ended"].judge.model


def test_paper_path_figures(rehearsal_run):
    out, _ = rehearsal_run
    sampling, teacher, training = (_metrics(out, s) for s in ("01_sampling", "02_augmentation", "04_training"))
    assert all(sampling[f"stage1/{c}/rows"] > 0 for c in ("cot", "niv2", "t0", "flan2021")), sampling
    for stage in ("stage1", "stage2"):
        assert teacher[f"{stage}/requests"] == sampling[f"{stage}/rows"]
        assert teacher[f"{stage}/status/ok"] == teacher[f"{stage}/requests"], teacher
    assert teacher["stage1/batches"] > 1, "the rolling window submitted one batch only"
    # The emulated API's own enqueued-token limit is below the client's budget (params/rehearsal.yaml): batches
    # were refused after create and went again, several were in flight, and every request above was answered.
    assert teacher["stage1/batches_refused"] > 0 and teacher["stage1/max_in_flight"] > 1, teacher
    for stage in ("stage1", "stage2"):
        assert 0 < training[f"{stage}/train_loss"] < 20 and training[f"{stage}/steps"] > 0
    run_info = json.loads((out / "04_training" / "stage1_result.json").read_text())
    assert run_info.get("world_size", run_info.get("num_processes")) == 2, run_info
    # FSDP on the 2 ranks: sharded checkpoints (one distributed-checkpoint file per rank), one consolidated student
    assert run_info["distributed_type"] == "FSDP" and run_info["fsdp_version"] == 2, run_info
    shards = sorted(p.name for p in (out / "04_training" / "checkpoints").rglob("pytorch_model_fsdp_0/*.distcp"))
    assert shards and set(shards) == {"__0_0.distcp", "__1_0.distcp"}, shards
    assert (out / "04_training" / "student" / "model.safetensors").exists()


def test_preflight_passes_on_the_rehearsal_profile():
    proc = subprocess.run([sys.executable, "-m", "orca_utils", "validate", "--profile", "rehearsal", "--deep"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
