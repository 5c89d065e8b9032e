"""The `score` command: score saved model outputs with the same extractor the notebooks use.

    python -m orca_utils score --benchmark bbh --task date_understanding outputs.jsonl

Each line of the JSONL file holds at least `prediction` (the model's text) and `target` (the gold answer), the
format of the model-output dumps published with BBH; `options` (option texts) or BBH's `input` help read answers
given as option text. Prints one JSON line: accuracy and extraction-failure rate (%), counts. Exit 2 on bad input.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .cli import COMMANDS


def _add_score(p):
    p.add_argument("--benchmark", required=True, choices=["bbh", "agieval"])
    p.add_argument("--task", required=True, help="task name, e.g. date_understanding or lsat-ar")
    p.add_argument("file", help="JSONL file with `prediction` and `target` per line")


def _score(args) -> int:
    from .eval_mcq import score_records

    path = Path(args.file)
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            print(f"error: {path} line {i}: not JSON ({exc.msg})", file=sys.stderr)
            return 2
    try:
        result = score_records(rows, args.benchmark, args.task)
    except ValueError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"file": path.name, **result}))
    return 0


COMMANDS["score"] = (_add_score, _score)
