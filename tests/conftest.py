"""Shared fixtures: the repo's folders, a scratch params dir, and markers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def repo() -> Path:
    return REPO


# ---- CI: no silent skips -----------------------------------------------------------------------------------------
# Under CI=true (.ci/run) every test is expected to run: the data root, torch, the tokenizers and the smoke model are
# all there. A skip there means something CI should have is missing, so it fails the run, with the skip's reason;
# the few skips CI may legitimately take are listed here with why. Every skip is listed at the end of the run.
EXPECTED_CI_SKIPS: dict[str, str] = {
    # "tests/test_x.py::test_y": "why CI may skip it",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail") and item.nodeid not in EXPECTED_CI_SKIPS:
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI=true ({_skip_reason(report)}): CI is expected to run this test; "
                           f"install what it needs in .ci/run, or list it in tests/conftest.py EXPECTED_CI_SKIPS")


def pytest_collectreport(report):
    if _in_ci() and report.skipped and report.nodeid not in EXPECTED_CI_SKIPS:
        report.outcome = "failed"
        report.longrepr = (f"module skipped under CI=true ({_skip_reason(report)}): CI is expected to run it; "
                           f"install what it needs in .ci/run, or list it in tests/conftest.py EXPECTED_CI_SKIPS")


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.section(f"skipped tests ({len(skipped)})")
        for report in skipped:
            terminalreporter.line(f"{report.nodeid}: {_skip_reason(report)}")
