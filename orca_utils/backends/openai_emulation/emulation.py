"""`Emulation`: the settings of the emulation mode and the behaviours that read them.

The Model objects of `GET /v1/models` (shutdown dates, listed models), the 401 of `require_api_key`, the
control-plane faults of `/v1/files` and `/v1/batches`, and the checks of a chat-completions request (model, per-model
capabilities, schema), with the reasoning plan and usage details of an accepted one. The Batch API's default limits
(`BATCH_MAX_LINES`, `BATCH_MAX_BYTES`, `COMPLETION_WINDOW_S`, `BATCH_ENQUEUED_TOKEN_LIMIT`) are `Emulation`'s field
defaults, so they live here; the batch life cycle itself is in `batches`.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import Completion
from .capabilities import (CHAT_MODEL, DEFAULT_CAPABILITIES, DEFAULT_REASONING_TOKENS, GENERIC_REASONING,
                           REASONING_EFFORTS, ModelCapabilities, ReasoningPlan)
from .errors import openai_error
from .request_schema import DEFAULT_OPENAPI_PATH, RequestSchemas

__all__ = ["Emulation", "BATCH_MAX_LINES", "BATCH_MAX_BYTES", "COMPLETION_WINDOW_S", "BATCH_ENQUEUED_TOKEN_LIMIT"]

# Batch limits. `CreateBatchRequest.input_file_id` in OpenAI's OpenAPI: "The file can contain up to 50,000 requests,
# and can be up to 200 MB in size." `completion_window`: "Currently only `24h` is supported."
BATCH_MAX_LINES = 50_000
BATCH_MAX_BYTES = 200_000_000
COMPLETION_WINDOW_S = 24 * 3600.0
# The per-model batch queue limit differs per model and usage tier (help.openai.com "Batch API FAQ": "each usage
# tier has an associated batch rate limit ... the maximum number of input tokens"; a community.openai.com post
# quotes tier 1's "Batch Queue Limit": 90,000 for gpt-4o, 2,000,000 for gpt-4o-mini and gpt-3.5-turbo;
# openai/openai-python#2084 shows "Limit: 2,000,000 enqueued tokens" for gpt-4o-mini). The emulator's default is
# 2,000,000.
BATCH_ENQUEUED_TOKEN_LIMIT = 2_000_000


@dataclass
class Emulation:
    """OpenAI behaviours the emulation mode reproduces (the package docstring lists them; sources in the comments).

    Models: today (what `shutdown_date`s are compared with), shutdown_dates (overrides the registry's, model ->
    date or None), shutdown_date_field ("always": every Model object carries `shutdown_date`, null where none is
    announced; "announced": only where one is), list_shut_down_models (also list the registry's models already shut
    down, with their date), model_created / owned_by (the Model object's fields), dialects (overrides
    `models.dialect_for` for models without capabilities), capabilities (model -> ModelCapabilities),
    reasoning_tokens (effort -> hidden tokens per request).
    Validation: openapi_path (OpenAI's OpenAPI description; None or absent file: no schema validation).
    Batch API: batch_enqueued_token_limit (per model, emulated prompt tokens of its batches in validating /
    in_progress / finalizing; None: no limit), batch_max_lines, batch_max_bytes, batch_validation_s (time in
    `validating`), batch_latency_s (time in `in_progress` before the last line finishes; lines finish evenly over it),
    batch_finalizing_s, completion_window_s (then `expired`), batch_stalled_lines (the last N lines of every batch
    never finish, so the batch expires: the switch for expiry tests).
    Control plane: control_plane_fault_every (every Nth call to /v1/files or /v1/batches answers 429 with
    Retry-After, then 500, alternately; 0: never), retry_after_s, require_api_key (401 without a bearer key).
    """

    today: dt.date = field(default_factory=dt.date.today)
    require_api_key: bool = False
    batch_enqueued_token_limit: int | None = BATCH_ENQUEUED_TOKEN_LIMIT
    control_plane_fault_every: int = 0
    retry_after_s: float = 0.05
    shutdown_dates: dict[str, str | None] = field(default_factory=dict)
    dialects: dict[str, str] = field(default_factory=dict)
    shutdown_date_field: str = "always"
    list_shut_down_models: bool = True
    model_created: int = 1686935002
    owned_by: str = "openai"
    capabilities: dict[str, ModelCapabilities] = field(default_factory=lambda: dict(DEFAULT_CAPABILITIES))
    reasoning_tokens: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_REASONING_TOKENS))
    openapi_path: str | Path | None = DEFAULT_OPENAPI_PATH
    batch_max_lines: int = BATCH_MAX_LINES
    batch_max_bytes: int = BATCH_MAX_BYTES
    batch_validation_s: float = 0.05
    batch_latency_s: float = 0.2
    batch_finalizing_s: float = 0.02
    completion_window_s: float = COMPLETION_WINDOW_S
    batch_stalled_lines: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.shutdown_date_field not in ("always", "announced"):
            raise ValueError(f"Emulation.shutdown_date_field: {self.shutdown_date_field!r}: 'always' or 'announced'")
        for model, caps in self.capabilities.items():
            bad = [e for e in caps.efforts if e not in REASONING_EFFORTS]
            if bad:
                raise ValueError(f"Emulation.capabilities[{model!r}]: efforts {bad} are not in {REASONING_EFFORTS}")

    # ---- models -------------------------------------------------------------------------------------------------
    def shutdown_date(self, model: str) -> str | None:
        if model in self.shutdown_dates:
            return self.shutdown_dates[model]
        from ...chat_api.registry import lookup

        entry = lookup(model)
        return entry.shutdown_date if entry else None

    def is_shut_down(self, model: str) -> bool:
        date = self.shutdown_date(model)
        return bool(date) and dt.date.fromisoformat(date) <= self.today

    def dialect(self, model: str) -> str:
        from ...chat_api.registry import dialect_for

        if model in self.capabilities:
            return "reasoning" if self.capabilities[model].reasoning else "chat"
        return self.dialects.get(model) or dialect_for(model)

    def capabilities_for(self, model: str) -> ModelCapabilities:
        if model in self.capabilities:
            return self.capabilities[model]
        return GENERIC_REASONING if self.dialect(model) == "reasoning" else CHAT_MODEL

    def listed_models(self, served) -> dict[str, str | None]:
        """id -> shutdown_date of what `GET /v1/models` lists: the served models (and retired registry models)."""
        from ...chat_api.registry import REGISTRY

        listed = {m: self.shutdown_date(m) for m in served}
        if self.list_shut_down_models:
            for m in list(REGISTRY) + list(self.shutdown_dates):
                if m not in listed and self.is_shut_down(m):
                    listed[m] = self.shutdown_date(m)
        return listed

    def model_objects(self, served) -> list[dict]:
        # OpenAPI `Model` (openai/openai-openapi@f85dbe2): required id, object ("model"), created, owned_by;
        # `shutdown_date` ("The date when the model will shut down, or null if not announced", added by commit
        # 23e6f5b, 2026-08-14) is optional, so both shapes are valid: null, or absent where none is announced.
        out = []
        for model, date in self.listed_models(served).items():
            obj: dict[str, Any] = {"id": model, "object": "model", "created": self.model_created,
                                   "owned_by": self.owned_by}
            if date is not None or self.shutdown_date_field == "always":
                obj["shutdown_date"] = date
            out.append(obj)
        return out

    # ---- control plane ------------------------------------------------------------------------------------------
    def auth_error(self, authorization: str) -> tuple[int, dict] | None:
        # The 401 for a request without a key (continuedev/continue#11228, gpt-4o-mini: "401 You didn't provide an
        # API key. You need to provide your API key in an Authorization header using Bearer auth (i.e.
        # Authorization: Bearer YOUR_KEY), ..."). The quoted answers show no `code`; `missing_api_key` is the
        # emulator's own.
        if self.require_api_key and (not authorization.lower().startswith("bearer ") or not authorization[7:].strip()):
            return 401, openai_error("You didn't provide an API key. You need to provide your API key in an "
                                     "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                                     code="missing_api_key")
        return None

    def control_plane_fault(self, stats: dict, method: str, path: str) -> tuple[int, dict, dict] | None:
        """(status, body, headers) when this control-plane call is one of the faulty ones, else None."""
        if not self.control_plane_fault_every or not (path.startswith("/v1/files") or path.startswith("/v1/batches")):
            return None
        with self._lock:
            stats["control_calls"] = stats.get("control_calls", 0) + 1
            n = stats["control_calls"]
            if n % self.control_plane_fault_every:
                return None
            stats["control_faults"] = stats.get("control_faults", 0) + 1
        if (n // self.control_plane_fault_every) % 2:
            # OpenAPI `components.responses.TooManyRequests` (openai/openai-openapi@f85dbe2, on every endpoint
            # since commit ca34204): 429 with an ErrorResponse body and `Retry-After`, "the minimum number of
            # seconds to wait before retrying", an integer >= 1. A shorter emulated wait is also sent as
            # `retry-after-ms`, which OpenAI's SDK reads first (openai-python `_base_client.py`).
            headers = {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}
            if self.retry_after_s < 1:
                headers["retry-after-ms"] = str(max(1, round(self.retry_after_s * 1000)))
            return 429, openai_error(f"emulated rate limit on {method} {path}", "requests", None,
                                     "rate_limit_exceeded"), headers
        return 500, openai_error(f"emulated server error on {method} {path}", "server_error"), {}

    # ---- chat completions ---------------------------------------------------------------------------------------
    def schemas(self) -> RequestSchemas | None:
        return RequestSchemas.load(self.openapi_path) if self.openapi_path else None

    def chat_request_error(self, served, body: Any) -> tuple[int, dict] | None:
        """(status, error body) OpenAI would answer for this chat-completions body, or None when acceptable."""
        schemas = self.schemas()
        if schemas is not None:
            refusal = schemas.chat_error(body)
            if refusal:
                return refusal
        if not isinstance(body, dict):
            return 400, openai_error("The request body must be a JSON object.")
        model = body.get("model")
        if model not in served or self.is_shut_down(str(model)):
            # 404 "The model `gpt-4o` does not exist or you do not have access to it.", type invalid_request_error,
            # param null, code model_not_found (shobrook/wut#14, ksred/GitPilotAI#12).
            return 404, openai_error(f"The model `{model}` does not exist or you do not have access to it.",
                                     code="model_not_found")
        caps = self.capabilities_for(model)
        effort = body.get("reasoning_effort")
        if not caps.reasoning:
            if effort is not None:
                # A chat model given `reasoning_effort` (yaroslavyaroslav/OpenAI-sublime-text#146, gpt-4o-mini;
                # coroot/coroot#698): 400 "Unrecognized request argument supplied: reasoning_effort", no param, no code.
                return 400, openai_error("Unrecognized request argument supplied: reasoning_effort")
            return None
        if body.get("max_tokens") is not None:
            # microsoft/vscode-copilot-release#8065, griptape-ai/ComfyUI-Griptape#312 (gpt-5): 400 "Unsupported
            # parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            # param max_tokens, code unsupported_parameter.
            return 400, openai_error("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                                     "'max_completion_tokens' instead.", param="max_tokens",
                                     code="unsupported_parameter")
        if effort is not None and effort not in caps.efforts:
            # egoist/chatwise-releases#1257 (gpt-5.2-chat): 400 "Unsupported value: 'reasoning_effort' does not
            # support 'high' with this model. Supported values are: 'medium'.", param reasoning_effort, code
            # unsupported_value.
            return 400, openai_error(f"Unsupported value: 'reasoning_effort' does not support {effort!r} with this "
                                     f"model. Supported values are: {_enumerate(caps.efforts)}.",
                                     param="reasoning_effort", code="unsupported_value")
        temperature = body.get("temperature")
        effective = effort if effort is not None else caps.default_effort
        if temperature is not None and temperature != 1 and not (
                caps.sampling_with_effort_none and effective == "none"):
            # owndev/Open-WebUI-Functions#98 (gpt-5), QwenLM/qwen-code#921 (gpt-5-mini): 400 "Unsupported value:
            # 'temperature' does not support 0.01 with this model. Only the default (1) value is supported.", param
            # temperature, code unsupported_value.
            return 400, openai_error(f"Unsupported value: 'temperature' does not support {temperature} with this "
                                     "model. Only the default (1) value is supported.", param="temperature",
                                     code="unsupported_value")
        if body.get("stop") is not None and not caps.accepts_stop:
            # huggingface/smolagents#1893 (gpt-5.2), FlowiseAI/Flowise#5046 (gpt-5).
            return 400, openai_error("Unsupported parameter: 'stop' is not supported with this model.",
                                     param="stop", code="unsupported_parameter")
        return None

    def reasoning_plan(self, body: dict) -> ReasoningPlan | None:
        """Hidden reasoning of an accepted request to a reasoning model (None for chat models).

        OpenAPI `CreateChatCompletionRequest.max_completion_tokens`: "An upper bound for the number of tokens that can
        be generated for a completion, including visible output tokens and reasoning tokens." When the reasoning
        takes the whole bound, the answer has no visible text and `finish_reason: "length"`, with every completion
        token reported as reasoning (community.openai.com "GPT-5 on minimal ...": max_completion_tokens 400 ->
        completion_tokens=400, reasoning_tokens=400, no output; "Inconsistent token limits with o3-mini ... empty
        response": finish_reason "length").
        """
        caps = self.capabilities_for(body.get("model"))
        if not caps.reasoning:
            return None
        effort = body.get("reasoning_effort") or caps.default_effort
        wanted = int(self.reasoning_tokens.get(effort or "", 0))
        cap = body.get("max_completion_tokens")
        cap = int(cap) if cap is not None else None
        spent = wanted if cap is None else min(wanted, cap)
        return ReasoningPlan(effort, spent, None if cap is None else cap - spent, cap)

    @staticmethod
    def shape_completion(completion: Completion, plan: ReasoningPlan | None) -> Completion:
        """The backend's answer cut to the visible room the plan leaves (text at ~4 characters a token)."""
        if plan is None or plan.room is None or completion.completion_tokens <= plan.room:
            return completion
        text = completion.text[: max(0, plan.room) * 4] if plan.room > 0 else ""
        return Completion(text, "length", completion.prompt_tokens, max(0, plan.room))

    @staticmethod
    def usage_details(chat_body: dict, plan: ReasoningPlan | None) -> dict:
        """Add the reasoning tokens to a chat.completion body's usage (OpenAPI `CompletionUsage`:
        `completion_tokens_details.reasoning_tokens`, "Tokens generated by the model for reasoning", included in
        `completion_tokens`)."""
        reasoning = plan.reasoning_tokens if plan else 0
        usage = chat_body.setdefault("usage", {})
        usage["completion_tokens"] = int(usage.get("completion_tokens") or 0) + reasoning
        usage["total_tokens"] = int(usage.get("prompt_tokens") or 0) + usage["completion_tokens"]
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning, "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0, "audio_tokens": 0}
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        return chat_body

    def batch_create_error(self, body: Any) -> tuple[int, dict] | None:
        schemas = self.schemas()
        return schemas.batch_create_error(body) if schemas is not None else None


def _enumerate(values) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
