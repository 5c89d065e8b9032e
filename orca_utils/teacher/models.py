"""Moved to `orca_utils.chat_api.registry`; re-exported here for one release."""
from __future__ import annotations

from ..chat_api.registry import (PAPER_TEACHERS, REASONING_EFFORTS, REGISTRY, TeacherModel, accepts_stop, dialect_for,
                                 effort_error, lookup, retired_on)

__all__ = ["TeacherModel", "REGISTRY", "PAPER_TEACHERS", "REASONING_EFFORTS", "dialect_for", "lookup", "retired_on",
           "accepts_stop", "effort_error"]
