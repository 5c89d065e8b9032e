"""Compare the metrics of two run folders, notebook by notebook, skipping timing figures.

    .venv/bin/python tests/compare_metrics.py <before run dir> <after run dir>

Each folder is a profile's run (`outputs/<profile>/` or a test's run folder) with `<notebook>/metrics.json`.
Used to check that a refactoring left the smoke metrics identical (same seeds); prints one line per notebook and
exits 1 when any value differs.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

TIMING = ("per_s", "seconds", "duration", "wall", "elapsed")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def compare(before: Path, after: Path) -> int:
    differing = 0
    for path in sorted(before.glob("*/metrics.json")):
        notebook = path.parent.name
        other = after / notebook / "metrics.json"
        if not other.exists():
            print(f"{notebook}: missing in {after}")
            differing += 1
            continue
        a, b = (json.loads(p.read_text())["metrics"] for p in (path, other))
        diffs = [f"  {k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in sorted(set(a) | set(b))
                 if not any(t in k for t in TIMING) and not _same(a.get(k, "<absent>"), b.get(k, "<absent>"))]
        print(f"{notebook}: " + ("identical" if not diffs else f"{len(diffs)} differ") + f" ({len(a)} metrics)")
        if diffs:
            print("\n".join(diffs[:15]))
        differing += bool(diffs)
    print("RESULT", "identical" if not differing else f"{differing} notebooks differ")
    return 1 if differing else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))
