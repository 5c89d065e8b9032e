"""Moved to `orca_utils.backends.served` and `orca_utils.backends.resident`; re-exported here for one release."""
from __future__ import annotations

from .backends.resident import generation_backend
from .backends.served import (ENGINES, ServedModel, ServeTarget, ServingError, hub_chat_template,
                              plain_template_file, serve_target, served_model, served_model_dir, server_command)

__all__ = ["ENGINES", "ServeTarget", "ServedModel", "ServingError", "generation_backend", "hub_chat_template",
           "plain_template_file", "serve_target", "served_model_dir", "server_command", "served_model"]
