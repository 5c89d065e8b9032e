"""Moved to `orca_utils.backends.openai_emulation`; re-exported here for one release."""
from __future__ import annotations

from ..backends.openai_emulation import (BATCH_ENQUEUED_TOKEN_LIMIT, BATCH_MAX_BYTES, BATCH_MAX_LINES, CHAT_MODEL,
                                         COMPLETION_WINDOW_S, DEFAULT_CAPABILITIES, DEFAULT_OPENAPI_PATH,
                                         DEFAULT_REASONING_TOKENS, GENERIC_REASONING, REASONING_EFFORTS, Emulation,
                                         ModelCapabilities, ReasoningPlan, RequestSchemas, emulated_prompt_tokens,
                                         openai_error, start_batch)

__all__ = ["Emulation", "ModelCapabilities", "ReasoningPlan", "REASONING_EFFORTS", "DEFAULT_CAPABILITIES",
           "DEFAULT_OPENAPI_PATH", "RequestSchemas", "openai_error", "emulated_prompt_tokens", "start_batch",
           "GENERIC_REASONING", "CHAT_MODEL", "DEFAULT_REASONING_TOKENS", "BATCH_MAX_LINES", "BATCH_MAX_BYTES",
           "COMPLETION_WINDOW_S", "BATCH_ENQUEUED_TOKEN_LIMIT"]
