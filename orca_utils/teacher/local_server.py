"""Moved to `orca_utils.backends.local_server`; re-exported here for one release."""
from __future__ import annotations

from ..backends.base import Servable as Backend
from ..backends.local_server import Completion, Emulation, ServerFault, build_app, serve_openai_compatible

__all__ = ["Completion", "Backend", "ServerFault", "Emulation", "build_app", "serve_openai_compatible"]
