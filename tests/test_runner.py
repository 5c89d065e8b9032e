"""The papermill runner: order, selection, manifest, reuse of upstream outputs, and the failure path."""
from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from orca_utils.runner import discover_notebooks, select_notebooks
from orca_utils.runs import UpstreamError, setup_notebook


def _notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# fixture"),
        nbformat.v4.new_code_cell('profile = "smoke"\nrun_dir = ""\noverrides = ""\nreuse = ""',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f'from orca_utils.runs import setup_notebook\n'
                                  f'cfg, run = setup_notebook("{path.stem}", profile, run_dir=run_dir or None, '
                                  f'overrides=overrides, reuse=reuse)'),
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(nb, path)


def _run(args, tmp_path):
    return subprocess.run([sys.executable, "-m", "orca_utils", "run", "--profile", "smoke", "--run-dir",
                           str(tmp_path / "out"), "--notebooks-dir", str(tmp_path / "nbs"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def fixture_notebooks(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_sampling.ipynb", 'run.save_metrics({"rows": 3})\nprint("first done")')
    _notebook(nbs / "02_augmentation.ipynb",
              'up = run.upstream("01_sampling")\nprint("reached", up.name)\n'
              'raise RuntimeError("deliberate failure in the fixture")')
    _notebook(nbs / "03_packing.ipynb", 'run.save_metrics({"never": 1})')
    return nbs


def test_select_notebooks(repo):
    found = discover_notebooks(repo / "notebooks")
    assert [p.stem[:2] for p in found] == [f"{i:02d}" for i in range(1, 11)]
    assert [p.stem for p in select_notebooks(found, only=["3", "05_agieval"])] == ["03_packing", "05_agieval"]
    assert select_notebooks(found, start="09")[0].stem == "09_explanation_vs_answer"
    with pytest.raises(ValueError, match="no such notebook"):
        select_notebooks(found, only=["42"])


@pytest.mark.slow
def test_failing_notebook_stops_run_keeps_partial_output_and_exits_nonzero(fixture_notebooks, tmp_path):
    proc = _run([], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "deliberate failure in the fixture" in proc.stderr          # the notebook's own error is shown
    out = tmp_path / "out"
    partial = nbformat.read(out / "02_augmentation" / "02_augmentation.ipynb", as_version=4)
    texts = json.dumps([c.get("outputs", []) for c in partial.cells])
    assert "reached 01_sampling" in texts and "deliberate failure" in texts   # partial copy kept with its outputs
    assert not (out / "03_packing").exists()                                   # the run stopped
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["notebooks"]["01_sampling"]["status"] == "ok"
    assert manifest["notebooks"]["02_augmentation"]["status"] == "failed"
    assert "deliberate failure" in manifest["notebooks"]["02_augmentation"]["error"]
    assert manifest["git"]["commit"] and manifest["versions"]["torch"]


@pytest.mark.slow
def test_manifest_and_only_reuse_upstream(fixture_notebooks, tmp_path):
    _notebook(fixture_notebooks / "02_augmentation.ipynb",
              'up = run.upstream("01_sampling")\nrun.save_metrics({"ok": 1})')
    assert _run(["--only", "01", "02"], tmp_path).returncode == 0
    proc = _run(["--only", "02"], tmp_path)                     # reuses 01's outputs
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = manifest["notebooks"]["02_augmentation"]
    assert entry["status"] == "ok" and entry["duration_s"] > 0 and entry["params_hash"] and entry["seed"] == 0
    metrics = json.loads((tmp_path / "out" / "01_sampling" / "metrics.json").read_text())
    assert metrics["metrics"] == {"rows": 3}
    assert metrics["params_hash"] == manifest["notebooks"]["01_sampling"]["params_hash"]
    assert entry["upstream"] == {"01_sampling": {"from": "this run", "params_hash": metrics["params_hash"]}}
    proc = _run(["--only", "02", "--run-dir", str(tmp_path / "again"), "--reuse", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 0, proc.stderr                  # 01 read from the first run's folder, not copied
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert again["reuse"] == [str(tmp_path / "out")] and not (tmp_path / "again" / "01_sampling").exists()
    assert again["notebooks"]["02_augmentation"]["upstream"]["01_sampling"]["from"] == str(tmp_path / "out")
    proc = _run(["--only", "02", "--params-override", "seed=5"], tmp_path)   # 01 is now stale
    assert proc.returncode == 1
    assert "01_sampling's outputs" in proc.stderr and "computed from other params" in proc.stderr


def test_upstream_missing_and_stale(tmp_path):
    _, first = setup_notebook("01_sampling", "smoke", run_dir=str(tmp_path), quiet=True)
    _, second = setup_notebook("02_augmentation", "smoke", run_dir=str(tmp_path), quiet=True)
    with pytest.raises(UpstreamError, match="did not finish"):
        second.upstream("01_sampling")
    first.save_metrics({"rows": 1})
    assert second.upstream("01_sampling") == tmp_path / "01_sampling"
    _, third = setup_notebook("03_packing", "smoke", run_dir=str(tmp_path / "other"), quiet=True)
    assert third.upstream("02_augmentation", required=False) is None
    with pytest.raises(UpstreamError, match="no outputs"):
        third.upstream("02_augmentation")
    with pytest.raises(UpstreamError, match="contracts.UPSTREAM does not list 03_packing"):
        second.upstream("03_packing", required=False)        # 02 does not read 03: its key could not cover it
    _, changed = setup_notebook("02_augmentation", "smoke", run_dir=str(tmp_path), overrides="seed=9", quiet=True)
    with pytest.raises(UpstreamError, match="computed from other params"):
        changed.upstream("01_sampling")


def test_kernel_options_ask_for_curve_keys():
    import zmq
    from jupyter_client.manager import AsyncKernelManager, KernelManager

    from orca_utils.runner import kernel_options

    if not zmq.has("curve") or "transport_encryption" not in KernelManager.class_traits():
        pytest.skip("jupyter_client < 8.10 or a libzmq without Curve: the kernel starts unencrypted, as before")
    options = kernel_options()
    assert options
    km = AsyncKernelManager(kernel_name="python3", **options)
    assert km.transport_encryption == "auto"
    assert "curve" in km.kernel_spec.metadata.get("supported_encryption", []), "else no keys are provisioned"


@pytest.mark.slow
def test_a_run_does_not_print_the_kernel_tcp_warning(tmp_path):
    """The kernel starts with CurveZMQ keys (`runner.kernel_options`), so ipykernel's warning "Kernel is running
    over TCP without encryption" is not in the run's log (it was printed once per notebook before)."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_sampling.ipynb", 'print("kernel ran")')
    proc = _run(["--only", "01"], tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "without encryption" not in log, log
    executed = nbformat.read(tmp_path / "out" / "01_sampling" / "01_sampling.ipynb", as_version=4)
    assert "kernel ran" in json.dumps(executed.cells[-1].outputs)
