"""Moved to `orca_utils.backends` and `orca_utils.teacher.backend`; re-exported here for one release."""
from __future__ import annotations

from .backends.base import Completion, Conversation, cut_at_stop, to_messages
from .backends.hf import HFBackend
from .backends.openai_backend import OpenAIBackend
from .teacher.backend import TeacherClientBackend

__all__ = ["Completion", "HFBackend", "OpenAIBackend", "TeacherClientBackend", "Conversation", "to_messages",
           "cut_at_stop"]
