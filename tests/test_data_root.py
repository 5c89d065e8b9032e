"""Data-root resolution order: data_dir param, then $ORCA_DATA_DIR, then ../shared/data, then the pinned GitHub
files (tests/test_public_sources.py), then the hub."""
from __future__ import annotations

import pytest

from orca_utils import data
from orca_utils.data import DatasetNotFoundError, resolve_data_root, resolve_dataset


@pytest.fixture
def roots(tmp_path, monkeypatch):
    explicit, env, shared = (tmp_path / n for n in ("explicit", "env", "shared"))
    for root in (explicit, env, shared):
        (root / "data" / "bbh").mkdir(parents=True)
    monkeypatch.setattr(data, "SHARED_DIR", shared)
    monkeypatch.setenv("ORCA_DATA_DIR", str(env / "data"))
    # GitHub downloads go to an empty cache from a base that refuses connections: these tests never reach GitHub
    monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ORCA_GITHUB_RAW_BASE", "http://127.0.0.1:9")
    return explicit / "data", env / "data", shared / "data"


def test_explicit_param_wins(roots):
    explicit, env, shared = roots
    loc = resolve_dataset("bbh", data_dir=explicit)
    assert loc.path == explicit / "bbh" and loc.origin == "data_dir param"
    assert resolve_data_root(explicit) == explicit


def test_env_var_second(roots):
    _, env, _ = roots
    loc = resolve_dataset("bbh")
    assert loc.path == env / "bbh" and loc.origin == "$ORCA_DATA_DIR"


def test_shared_third(roots, monkeypatch):
    _, _, shared = roots
    monkeypatch.delenv("ORCA_DATA_DIR")
    loc = resolve_dataset("bbh")
    assert loc.path == shared / "bbh" and loc.origin == "../shared/data"


def test_falls_through_a_root_that_lacks_the_dataset(roots):
    explicit, env, _ = roots
    (env / "agieval").mkdir()
    loc = resolve_dataset("agieval", data_dir=explicit)
    assert loc.path == env / "agieval"


def test_missing_everywhere_offline_lists_every_path_and_hub_id(roots):
    explicit, env, shared = roots
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("truthfulqa", data_dir=explicit, offline=True)
    msg = str(info.value)
    for path in (explicit / "truthfulqa", env / "truthfulqa", shared / "truthfulqa"):
        assert str(path) in msg
    assert "truthfulqa/truthful_qa (skipped: offline)" in msg


def test_hub_is_tried_last_when_online(roots, monkeypatch):
    calls = []

    def fake_snapshot(repo_id, repo_type, allow_patterns):
        calls.append((repo_id, repo_type))
        raise ConnectionError("no network here")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for root in roots:
        (root / "bbh").rmdir()
    with pytest.raises(DatasetNotFoundError, match=r"hub: lukaemon/bbh \(ConnectionError: no network here\)"):
        resolve_dataset("bbh", data_dir=roots[0], offline=False)
    assert calls == [("lukaemon/bbh", "dataset")]


def test_hub_snapshot_is_used_when_it_succeeds(roots, monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp_path / "snap"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for root in roots:
        (root / "bbh").rmdir()
    loc = resolve_dataset("bbh", data_dir=roots[0], offline=False)
    assert loc.from_hub and loc.path == tmp_path / "snap"


def test_real_shared_data_is_found():
    loc = resolve_dataset("bbh")
    assert (loc.path / "boolean_expressions.json").exists()


def test_an_explicit_root_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    from orca_utils.data import DatasetNotFoundError, resolve_dataset

    with pytest.raises(DatasetNotFoundError, match=r"data_dir param: .*missing-root: no such directory"):
        resolve_dataset("bbh", data_dir=str(tmp_path / "missing-root"))
    monkeypatch.setenv("ORCA_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(DatasetNotFoundError, match=r"\$ORCA_DATA_DIR: .*typo: no such directory"):
        resolve_dataset("bbh")
