"""Compare the metrics of two run folders, or of a run folder with the committed golden file, skipping timings.

    .venv/bin/python tests/compare_metrics.py <before run dir> <after run dir>
    .venv/bin/python tests/compare_metrics.py --golden <run dir>          # against tests/golden/smoke_metrics.json
    .venv/bin/python tests/compare_metrics.py --write-golden <run dir>    # after a change that is MEANT to move them

Each folder is a profile's run (`outputs/<profile>/` or a test's run folder) with `<notebook>/metrics.json`. The
golden file holds the smoke profile's metrics (timing figures left out); `make test` compares its smoke run with it
(tests/test_notebooks_smoke.py), so a refactoring that changes a number fails. Floats compare to a relative 1e-6
(the smoke run is seeded and single-threaded where it matters; two runs have given identical values). Prints one
line per notebook and exits 1 when any value differs.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

TIMING = ("per_s", "seconds", "duration", "wall", "elapsed")
GOLDEN = Path(__file__).resolve().parent / "golden" / "smoke_metrics.json"
REL_TOL = 1e-6


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    return a == b


def run_metrics(run_dir: Path) -> dict[str, dict]:
    """{notebook: {key: value}} of a run folder, timing figures left out."""
    out = {}
    for path in sorted(Path(run_dir).glob("*/metrics.json")):
        metrics = json.loads(path.read_text())["metrics"]
        out[path.parent.name] = {k: v for k, v in sorted(metrics.items()) if not any(t in k for t in TIMING)}
    return out


def differences(before: dict[str, dict], after: dict[str, dict]) -> dict[str, list[str]]:
    """{notebook: ["key: before -> after", ...]} over every notebook of either side (missing ones included)."""
    diffs = {}
    for notebook in sorted(set(before) | set(after)):
        if notebook not in after or notebook not in before:
            diffs[notebook] = [f"notebook missing {'after' if notebook not in after else 'before'}"]
            continue
        a, b = before[notebook], after[notebook]
        found = [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in sorted(set(a) | set(b))
                 if not _same(a.get(k, "<absent>"), b.get(k, "<absent>"))]
        if found:
            diffs[notebook] = found
    return diffs


def report(before: dict[str, dict], after: dict[str, dict]) -> int:
    diffs = differences(before, after)
    for notebook in sorted(set(before) | set(after)):
        found = diffs.get(notebook, [])
        print(f"{notebook}: " + ("identical" if not found else f"{len(found)} differ")
              + f" ({len(before.get(notebook, {}))} metrics)")
        if found:
            print("\n".join("  " + d for d in found[:15]))
    print("RESULT", "identical" if not diffs else f"{len(diffs)} notebooks differ")
    return 1 if diffs else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--golden":
        return report(json.loads(GOLDEN.read_text())["metrics"], run_metrics(Path(argv[1])))
    if len(argv) == 2 and argv[0] == "--write-golden":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({"profile": "smoke", "note": "written by tests/compare_metrics.py "
                                      "--write-golden; timing figures left out", "metrics": run_metrics(Path(argv[1]))},
                                     indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    if len(argv) == 2:
        return report(run_metrics(Path(argv[0])), run_metrics(Path(argv[1])))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
