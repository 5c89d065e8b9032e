"""Outputs keyed by what produced them: a profile that extends another reads the other run's upstream outputs.

A notebook's key (`runs.notebook_hash`) is its own params without the profile's name and paths
(`config.params_hash`) plus its upstream notebooks' keys (`contracts.UPSTREAM`). Run folders are fabricated here
(a `run_info.json` per notebook, as `Run.save_metrics` writes it): no notebook runs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from orca_utils.config import UNHASHED_FIELDS, load_profile, params_hash
from orca_utils.contracts import UPSTREAM
from orca_utils.paths import PARAMS_DIR
from orca_utils.runs import OWN_RUN, REUSE_ENV, Run, UpstreamError, notebook_hash
from orca_utils.schemas import NOTEBOOK_SCHEMAS

SMOKE_RUN_NOTEBOOKS = ["01_sampling", "02_augmentation", "03_packing", "04_training", "05_agieval", "06_bbh"]


@pytest.fixture
def params_dir(tmp_path):
    """smoke.yaml beside three variants of it: 07's judge changed, a 04 param changed, a 01 param changed."""
    folder = tmp_path / "params"
    folder.mkdir()
    shutil.copy(PARAMS_DIR / "smoke.yaml", folder / "smoke.yaml")
    (folder / "judge.yaml").write_text("extends: smoke\n07_open_ended:\n  judge:\n    max_tokens: 16\n")
    (folder / "steps.yaml").write_text("extends: judge\n04_training:\n  stage1: {max_steps: 3}\n")
    (folder / "scale.yaml").write_text("extends: judge\n01_sampling:\n  scale: 0.002\n")
    return folder


def _fake_run(root: Path, cfgs: dict, notebooks: list[str], status: str = "ok") -> Path:
    """`root/<nb>/run_info.json` for each of `notebooks`, keyed as a run of `cfgs` would have keyed them."""
    for nb in notebooks:
        (root / nb).mkdir(parents=True, exist_ok=True)
        (root / nb / "run_info.json").write_text(json.dumps(
            {"notebook": nb, "profile": cfgs[nb].profile, "params_hash": notebook_hash(nb, cfgs), "status": status}))
    return root


def _run(notebook: str, cfgs: dict, root: Path, *reuse: Path) -> Run:
    return Run(notebook=notebook, cfg=cfgs[notebook], root=root, all_cfgs=cfgs, reuse=tuple(reuse))


def test_the_graph_names_every_notebook_and_points_back():
    assert list(UPSTREAM) == list(NOTEBOOK_SCHEMAS)
    for notebook, upstream in UPSTREAM.items():
        assert all(up in NOTEBOOK_SCHEMAS and up < notebook for up in upstream), (notebook, upstream)  # no cycle
    assert set(UPSTREAM["10_report"]) == set(NOTEBOOK_SCHEMAS) - {"10_report"}


def test_unhashed_fields_are_real_fields_and_change_no_hash(params_dir):
    fields = set()
    for schema in NOTEBOOK_SCHEMAS.values():
        stack = [schema]
        while stack:
            model = stack.pop()
            fields |= set(model.model_fields)
            stack += [a for f in model.model_fields.values() for a in getattr(f.annotation, "__args__", ())
                      + (f.annotation,) if isinstance(a, type) and hasattr(a, "model_fields")]
    assert UNHASHED_FIELDS <= fields, UNHASHED_FIELDS - fields          # a typo would silently hash everything
    (params_dir / "paths.yaml").write_text(
        "extends: smoke\ncommon:\n  output_dir: elsewhere\n  api_key_env: OTHER_KEY\n"
        "02_augmentation:\n  cache_file: other.sqlite\n  endpoint: {api_key_env: OTHER_KEY}\n"
        "04_training:\n  data_cache_dir: node_local/cache\n  report_to: [tensorboard]\n")
    (params_dir / "label.yaml").write_text("extends: smoke\n07_open_ended:\n  judge: {label: another judge}\n")
    smoke, paths = load_profile("smoke", params_dir=params_dir), load_profile("paths", params_dir=params_dir)
    assert paths["04_training"].data_cache_dir == "node_local/cache" and paths["02_augmentation"].cache_file != \
        smoke["02_augmentation"].cache_file
    assert all(params_hash(smoke[nb]) == params_hash(paths[nb]) for nb in NOTEBOOK_SCHEMAS)
    label = load_profile("label", params_dir=params_dir)
    assert params_hash(label["07_open_ended"]) != params_hash(smoke["07_open_ended"])   # labels land in tables


def test_a_judge_ablation_keys_only_07_and_10_apart(params_dir):
    smoke, judge = load_profile("smoke", params_dir=params_dir), load_profile("judge", params_dir=params_dir)
    assert judge["07_open_ended"].judge.max_tokens == 16 and judge["01_sampling"].profile == "judge"
    differ = [nb for nb in NOTEBOOK_SCHEMAS if notebook_hash(nb, smoke) != notebook_hash(nb, judge)]
    assert differ == ["07_open_ended", "10_report"]


def test_the_ablation_reads_04_from_the_smoke_run(params_dir, tmp_path):
    smoke, judge = load_profile("smoke", params_dir=params_dir), load_profile("judge", params_dir=params_dir)
    smoke_root = _fake_run(tmp_path / "runs" / "smoke", smoke, SMOKE_RUN_NOTEBOOKS)
    run = _run("07_open_ended", judge, tmp_path / "runs" / "judge", smoke_root)
    run._write_info("running")
    assert run.upstream("04_training") == smoke_root / "04_training"
    record = {"04_training": {"from": str(smoke_root), "params_hash": notebook_hash("04_training", smoke)}}
    assert run.upstream_sources == record
    assert json.loads((run.dir / "run_info.json").read_text())["upstream"] == record    # recorded at once
    alone = _run("07_open_ended", judge, tmp_path / "runs" / "judge")                    # without the reuse folder
    with pytest.raises(UpstreamError, match="04_training has no outputs"):
        alone.upstream("04_training")
    assert alone.upstream("04_training", required=False) is None


def test_own_outputs_come_first_and_a_stale_own_copy_gives_way(params_dir, tmp_path):
    smoke, judge = load_profile("smoke", params_dir=params_dir), load_profile("judge", params_dir=params_dir)
    steps = load_profile("steps", params_dir=params_dir)
    smoke_root = _fake_run(tmp_path / "smoke", smoke, SMOKE_RUN_NOTEBOOKS)
    own = _fake_run(tmp_path / "judge", judge, ["04_training"])
    run = _run("05_agieval", judge, own, smoke_root)
    assert run.upstream("04_training") == own / "04_training"
    assert run.upstream_sources["04_training"]["from"] == OWN_RUN
    _fake_run(own, steps, ["04_training"])                  # own copy now from other params: the reused one fits
    assert _run("05_agieval", judge, own, smoke_root).upstream("04_training") == smoke_root / "04_training"


def test_a_changed_04_param_stops_05_with_one_line(params_dir, tmp_path):
    smoke, steps = load_profile("smoke", params_dir=params_dir), load_profile("steps", params_dir=params_dir)
    smoke_root = _fake_run(tmp_path / "smoke", smoke, SMOKE_RUN_NOTEBOOKS)
    run = _run("05_agieval", steps, tmp_path / "steps", smoke_root)
    assert _run("04_training", steps, tmp_path / "steps", smoke_root).upstream("02_augmentation") == \
        smoke_root / "02_augmentation"                      # 04's own inputs are still the smoke run's
    with pytest.raises(UpstreamError) as err:
        run.upstream("04_training")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"04_training's outputs under {smoke_root / '04_training'} were computed from other "
                              f"params")
    assert message.endswith("rerun it (python -m orca_utils run --profile steps --only 04)")


def test_a_changed_01_param_reaches_05_through_02_and_04(params_dir, tmp_path):
    smoke, scale = load_profile("smoke", params_dir=params_dir), load_profile("scale", params_dir=params_dir)
    assert params_hash(scale["04_training"]) == params_hash(smoke["04_training"])     # 04's own params: alike
    smoke_root = _fake_run(tmp_path / "smoke", smoke, SMOKE_RUN_NOTEBOOKS)
    for notebook, upstream in (("02_augmentation", "01_sampling"), ("05_agieval", "04_training")):
        with pytest.raises(UpstreamError, match=f"{upstream}'s outputs .* computed from other params"):
            _run(notebook, scale, tmp_path / "scale", smoke_root).upstream(upstream)


def test_an_unfinished_reused_run_is_refused(params_dir, tmp_path):
    smoke = load_profile("smoke", params_dir=params_dir)
    root = _fake_run(tmp_path / "smoke", smoke, ["04_training"], status="running")
    with pytest.raises(UpstreamError, match="did not finish"):
        _run("06_bbh", smoke, tmp_path / "other", root).upstream("04_training")


def test_reuse_folders_from_the_environment(params_dir, tmp_path, monkeypatch):
    """What 04's launched ranks see: they build their Run without a reuse argument."""
    smoke = load_profile("smoke", params_dir=params_dir)
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(REUSE_ENV, f"{a}{os.pathsep}{b}")
    run = Run(notebook="04_training", cfg=smoke["04_training"], root=tmp_path / "own", all_cfgs=smoke)
    assert run.reuse == (a, b)
    _fake_run(b, smoke, ["01_sampling", "02_augmentation"])
    assert run.upstream("02_augmentation") == b / "02_augmentation"


def test_setup_notebook_exports_its_reuse_folders(tmp_path, monkeypatch):
    from orca_utils.runs import setup_notebook

    monkeypatch.setenv(REUSE_ENV, "")                          # recorded (absent before): removed after the test
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    _, run = setup_notebook("07_open_ended", "smoke", run_dir=str(tmp_path / "own"), reuse="base", quiet=True)
    assert run.reuse == (tmp_path / "base",)
    assert os.environ[REUSE_ENV] == str(tmp_path / "base")
    assert json.loads((run.dir / "run_info.json").read_text())["upstream"] == {}


def test_run_refuses_a_missing_reuse_folder(tmp_path, capsys):
    from orca_utils.cli import main

    code = main(["run", "--profile", "smoke", "--only", "07", "--run-dir", str(tmp_path / "own"),
                 "--reuse", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and f"--reuse {tmp_path / 'nowhere'}: no such run folder" in err
    assert not (tmp_path / "own").exists()                      # refused before any work
