"""Moved to `orca_utils.chat_api.wire` and `orca_utils.backends.base`; re-exported here for one release."""
from __future__ import annotations

from ..backends.base import Completion, ServerFault
from ..backends.base import Servable as Backend   # the served-backend protocol, renamed `Servable`
from ..chat_api.wire import (CONFIG_ERROR_CODES, ChatRequest, Classified, TeacherConfigError, backoff,
                             classify_response, config_error_message, cut_client_side, prompt_tokens_of, request_body,
                             request_json, request_params_error, retry_after, rough_tokens, sends_stop, short_error)

__all__ = ["TeacherConfigError", "CONFIG_ERROR_CODES", "ChatRequest", "request_body", "request_json",
           "config_error_message", "classify_response", "Classified", "cut_client_side", "sends_stop",
           "request_params_error", "rough_tokens", "prompt_tokens_of", "retry_after",
           "backoff", "short_error", "Completion", "Backend", "ServerFault"]
