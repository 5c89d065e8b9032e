"""The whole smoke pipeline through papermill, as `make smoke` runs it, with each notebook's metrics checked.

One run (session-scoped, into a temp folder) serves every assertion; it is the slowest test (minutes).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from orca_utils.schemas import NOTEBOOK_SCHEMAS

pytestmark = pytest.mark.slow

# Metrics each notebook must report (slash-path keys; a trailing "*" matches any key with that prefix).
EXPECTED_METRICS: dict[str, list[str]] = {stem: [] for stem in NOTEBOOK_SCHEMAS}


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
    out, _ = smoke_run
    saved = json.loads((out / stem / "metrics.json").read_text())
    assert saved["notebook"] == stem and saved["metrics"], stem
    for key in EXPECTED_METRICS[stem]:
        if key.endswith("*"):
            assert any(k.startswith(key[:-1]) for k in saved["metrics"]), (stem, key, sorted(saved["metrics"]))
        else:
            assert key in saved["metrics"], (stem, key, sorted(saved["metrics"]))
