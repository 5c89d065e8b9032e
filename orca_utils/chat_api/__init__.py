"""The chat-completions API as data: the model registry and the wire format, shared by `backends/` and `teacher/`.

- `registry.py`: what we know about each model a teacher, reference or judge can be (dialect, list price, shutdown
  date, accepted reasoning efforts, whether it takes `stop`);
- `wire.py`: `ChatRequest`, its body in either dialect and its cache key, response classification, the retry
  helpers and `TeacherConfigError`.

A leaf: it imports nothing else of ours, so that both the backends and the teacher client can build on it.
"""
from __future__ import annotations

from .registry import (PAPER_TEACHERS, REASONING_EFFORTS, REGISTRY, TeacherModel, accepts_stop, dialect_for,
                       effort_error, lookup, retired_on)
from .wire import (CONFIG_ERROR_CODES, ChatRequest, Classified, TeacherConfigError, backoff, classify_response,
                   config_error_message, cut_client_side, prompt_tokens_of, request_body, request_json, request_key,
                   request_params_error, retry_after, rough_tokens, sends_stop, short_error)

__all__ = [
    "PAPER_TEACHERS", "REASONING_EFFORTS", "REGISTRY", "TeacherModel", "accepts_stop", "dialect_for", "effort_error",
    "lookup", "retired_on",
    "CONFIG_ERROR_CODES", "ChatRequest", "Classified", "TeacherConfigError", "backoff", "classify_response",
    "config_error_message", "cut_client_side", "prompt_tokens_of", "request_body", "request_json", "request_key",
    "request_params_error", "retry_after", "rough_tokens", "sends_stop", "short_error",
]
