"""The `score` command: score saved model outputs with the same conventions the notebooks use.

    python -m orca_utils score --benchmark bbh --task date_understanding [--convention robust|published]
                               [--per-item verdicts.jsonl|verdicts.csv] outputs.jsonl

Input: JSONL, one item per line, with the model's text (`prediction`, or AGIEval's `model_output`) and the gold
answer (`target`, or AGIEval's `label`); `options` (option texts) or the prompt (`input`, `question`, ...) let the
robust reading take an answer given as option text. BBH's released output files (one JSON object whose `outputs`
list holds `{"input", "target", "prediction"}` items) are read too; their "lines" are then the items' positions.

`--convention published` scores exactly as the benchmark's authors did (BBH: the text after the last "So the answer
is" equals the target string; AGIEval: the first capital A-F equals the label), so the accuracy on a released file
equals the published one; `robust` (default) is the project's reader (see `orca_utils.evaluation.extract`). A
target given as option text is compared as text under `published`, and mapped to its letter under `robust` when it
names exactly one option.

Prints one JSON line: accuracy with its Wilson 95% interval, extraction-failure rate (%), counts, and the numbers
of the lines left out. A line that cannot be scored (not JSON, no prediction or target, a target that is no answer
of the task) gets one line on stderr naming the file, the line and what is wrong, and is left out. Exit 2 only when
the file is missing, is not JSONL, or no line could be scored.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ..cli import COMMANDS

PER_ITEM_FIELDS = ("line", "target", "answer", "method", "verdict", "error")


def _add_score(p):
    p.add_argument("--benchmark", required=True, choices=["bbh", "agieval"])
    p.add_argument("--task", required=True, help="task name, e.g. date_understanding or lsat-ar")
    p.add_argument("--convention", choices=["robust", "published"], default="robust",
                   help="robust: the project's reader (default); published: the benchmark authors' own rule")
    p.add_argument("--per-item", metavar="FILE", default=None,
                   help="write each line's extracted answer and verdict here (.jsonl or .csv)")
    p.add_argument("file", help="JSONL file with `prediction` and `target` per line (or a released BBH .json)")


def read_items(path: Path) -> tuple[list, list[int], list[tuple[int, str]]]:
    """(rows, their line numbers, [(line, why)] for lines that are not JSON). Raises ValueError: not JSONL."""
    text = path.read_text()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("outputs"), list):      # BBH's released files
        return whole["outputs"], list(range(1, len(whole["outputs"]) + 1)), []
    rows, numbers, bad = [], [], []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
            numbers.append(i)
        except json.JSONDecodeError as exc:
            bad.append((i, f"not JSON ({exc.msg})"))
    if not rows:
        raise ValueError("not JSONL: no line is a JSON value" if bad else "empty file")
    return rows, numbers, bad


def write_per_item(path: Path, items: list[dict]) -> None:
    rows = [{k: item.get(k) for k in PER_ITEM_FIELDS} for item in sorted(items, key=lambda it: it["line"])]
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=PER_ITEM_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        raise ValueError(f"--per-item {path.name}: expected a .jsonl or .csv file name")


def _score(args) -> int:
    from .engine import NoScorableLines, score_records

    path = Path(args.file)
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    if args.per_item and Path(args.per_item).suffix.lower() not in (".jsonl", ".csv"):
        print(f"error: --per-item {args.per_item}: expected a .jsonl or .csv file name", file=sys.stderr)
        return 2
    try:
        rows, numbers, not_json = read_items(path)
    except (ValueError, UnicodeDecodeError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    for line, why in not_json:
        print(f"warning: {path} line {line}: {why}; line left out", file=sys.stderr)
    try:
        result = score_records(rows, args.benchmark, args.task, args.convention, line_numbers=numbers)
    except NoScorableLines as exc:
        for bad in exc.bad_lines:
            print(f"error: {path} line {bad['line']}: {bad['error']}", file=sys.stderr)
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    for bad in result["bad_lines"]:
        print(f"warning: {path} line {bad['line']}: {bad['error']}; line left out", file=sys.stderr)
    items = result.pop("items") + [{"line": line, "target": None, "answer": None, "method": "",
                                    "verdict": "skipped", "error": why} for line, why in not_json]
    bad_lines = sorted([b["line"] for b in result.pop("bad_lines")] + [line for line, _ in not_json])
    if args.per_item:
        write_per_item(Path(args.per_item), items)
    print(json.dumps({"file": path.name, **result, "bad_lines": len(bad_lines), "bad_line_numbers": bad_lines}))
    return 0


COMMANDS["score"] = (_add_score, _score)
