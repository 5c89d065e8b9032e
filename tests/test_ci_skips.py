"""Under CI=true a skipped test fails with its reason (tests/conftest.py); elsewhere it is listed at the end."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text("import pytest\n\n\ndef test_needs_data():\n"
                                            "    pytest.skip('no data root here')\n\n\ndef test_runs():\n"
                                            "    assert True\n")
    env = {**os.environ, "CI": "true" if ci else ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_a_skip_fails_under_ci_with_its_reason(tmp_path):
    proc = _run(tmp_path, ci=True)
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 1 passed" in proc.stdout
    assert "skipped under CI=true (Skipped: no data root here)" in proc.stdout


def test_a_skip_outside_ci_is_listed_with_its_reason(tmp_path):
    proc = _run(tmp_path, ci=False)
    assert proc.returncode == 0, proc.stdout
    assert "skipped tests (1)" in proc.stdout and "test_needs_data: Skipped: no data root here" in proc.stdout
