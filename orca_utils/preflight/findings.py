"""What a check returns (`Finding`: `Problem`, `Warn`, `Note`), its options and the `Report`; the constants
and helpers every part of preflight shares (`param_owner`, `hub_offline`).
"""
from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["ASSUMED_PROMPT_TOKENS", "Finding", "GB", "GPU_NOTEBOOKS", "Note", "OPENAI_BASE_URL", "Options", "Problem",
           "Report", "WARN_DAYS", "Warn", "hub_offline", "param_owner"]


OPENAI_BASE_URL = "https://api.openai.com/v1"
WARN_DAYS = 30                     # a shutdown date this close is a warning
ASSUMED_PROMPT_TOKENS = 1024       # prompt length for the KV cache where no param caps it
GPU_NOTEBOOKS = ("04_training", "05_agieval", "06_bbh", "07_open_ended", "08_safety")
GB = 1e9


# ---- findings and report ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    param: str                     # `<notebook>.<dotted.param>` (or `common.<param>`)
    message: str                   # `<what is wrong>: <what to do>`
    level: ClassVar[str] = "note"

    def __str__(self) -> str:
        line = f"{self.param}: {self.message}"
        return line if self.level == "problem" else f"{self.level}: {line}"


class Problem(Finding):
    """Would fail the run (or waste it): exit 2."""
    level = "problem"


class Warn(Finding):
    """Will fail soon (a model shutting down within 30 days); does not fail the check."""
    level = "warning"


class Note(Finding):
    """What was checked, skipped or estimated."""
    level = "note"


@dataclass
class Options:
    today: dt.date = field(default_factory=dt.date.today)
    hub_api: Any = None                            # huggingface_hub.HfApi() when None
    gpus: list[tuple[int, int]] | None = None      # (free, total) bytes per CUDA device; None: ask torch
    timeout_s: float = 10.0
    hub_unreachable: bool = False                  # set by check_model_specs: later checks use the cache only


@dataclass
class Report:
    findings: list[Finding]

    def of(self, level: str) -> list[Finding]:
        return [f for f in self.findings if f.level == level]

    @property
    def ok(self) -> bool:
        return not self.of("problem")

    def lines(self) -> list[str]:
        return [str(f) for level in ("problem", "warning", "note") for f in self.of(level)]

    def summary(self) -> str:
        counts = ", ".join(f"{len(self.of(lv))} {lv}(s)" for lv in ("problem", "warning", "note"))
        return f"preflight: {counts}: " + ("ready" if self.ok else "fix the problem lines above before running")


def param_owner(cfgs: dict, name: str, stem: str) -> str:
    """`common` when `stem`'s value of `name` is the one most blocks share (so it came from `common`), else `stem`."""
    values = Counter(repr(getattr(c, name, None)) for c in cfgs.values())
    return "common" if values[repr(getattr(cfgs[stem], name))] * 2 > len(cfgs) else stem


def hub_offline(cfg) -> bool:
    return cfg.offline or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
