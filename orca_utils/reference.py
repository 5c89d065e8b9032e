"""The Orca paper's numbers, as reference data shipped in the package (`reference/orca_paper_tables.json`).

Each block carries its `source` and `status`. Show what the file holds and nothing else:
- `verified` / `single-source`: the value as it is,
- `recalled`: the value marked "(unverified)",
- missing (`null`, or a block with status `missing`): "not available". Never fill a gap.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

NOT_AVAILABLE = "not available"


@lru_cache(maxsize=1)
def paper_tables() -> dict[str, Any]:
    text = resources.files("orca_utils").joinpath("reference/orca_paper_tables.json").read_text()
    return json.loads(text)


def paper_block(name: str) -> dict[str, Any]:
    tables = paper_tables()
    if name not in tables:
        raise KeyError(f"no block {name!r} in the paper reference; blocks: {sorted(tables)}")
    return tables[name]


def format_paper_value(value: Any, status: str | None = None, digits: int = 1) -> str:
    """`41.7`, `41.7 (unverified)` for recalled numbers, `not available` for missing ones."""
    if value is None:
        return NOT_AVAILABLE
    text = f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    if status and "recalled" in status:
        text += " (unverified)"
    return text
