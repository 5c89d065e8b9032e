"""The local server's OpenAI emulation mode, written from OpenAI's documentation and API reference.

`orca_utils.teacher.local_server` serves pluggable backends over an OpenAI-compatible HTTP API; with
`emulate=Emulation(...)` it also behaves the way OpenAI's API does where a paper-scale run can break. Every
behaviour here comes from OpenAI's published material (each cites its source in a comment: the OpenAPI description
of `github.com/openai/openai-openapi`, OpenAI's help center, or a GitHub issue that quotes an answer of the API),
never from our own client (`teacher/client.py`, `teacher/batch.py`), so that the tests driving the client through
this emulation can fail where the client misreads the API. All limits and delays are this module's own defaults,
configurable per `Emulation` field; none is read from the client's params.

What is emulated (see `Emulation` for the fields):
- `GET /v1/models`: OpenAI's Model object (`id`, `object: "model"`, `created`, `owned_by`, `shutdown_date`: a date
  where one is announced, else null, or absent with `shutdown_date_field="announced"`); shut-down and unknown models
  get 404 `model_not_found` on requests.
- Chat completions per model capabilities (`ModelCapabilities`): reasoning models reject `max_tokens`, a
  temperature other than 1, an effort outside their subset and (where the model does) `stop`; hidden reasoning
  tokens per effort count against `max_completion_tokens` and are reported in
  `usage.completion_tokens_details.reasoning_tokens`.
- Request validation against OpenAI's OpenAPI description (`CreateChatCompletionRequest`, `CreateBatchRequest`):
  a field the schema does not define or a value of the wrong type is answered 400 `invalid_request_error` naming
  the field. The schema is read from `Emulation.openapi_path` (default: the pinned, trimmed copy in
  `tests/fixtures/openai_openapi/`, found when the package runs from the repository); when that file is absent (or
  `jsonschema` is not installed) validation is skipped with one logged warning.
- The Batch API's life cycle: `POST /v1/batches` answers `validating`; validation (line count, size, JSON, duplicate
  `custom_id`, `url`, one model per batch) and the per-model enqueued-token limit are checked afterwards, so a refused
  batch becomes `failed` with `errors.data` on a later retrieve; accepted batches stay `in_progress` for
  `batch_latency_s`, then `finalizing` and `completed`; a batch whose `completion_window_s` passes first ends
  `expired`, keeping the output of the lines it finished, the others in the error file as `batch_expired`.
- Control-plane faults (`control_plane_fault_every`: 429 with Retry-After, or 500) and `require_api_key` (401).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .protocol import Completion, ServerFault

__all__ = ["Emulation", "ModelCapabilities", "ReasoningPlan", "REASONING_EFFORTS", "DEFAULT_CAPABILITIES",
           "DEFAULT_OPENAPI_PATH", "RequestSchemas", "openai_error", "emulated_prompt_tokens", "start_batch"]

log = logging.getLogger(__name__)

# OpenAPI `ReasoningEffort` (openai/openai-openapi@f85dbe2, openapi.json, components.schemas.ReasoningEffort): "Currently
# supported values are none, minimal, low, medium, high, xhigh, and max ... Not all reasoning models support every
# value"; its `default` is "medium".
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")

# The pinned, trimmed copy of OpenAI's OpenAPI description (tests/fixtures/openai_openapi/README.md says where from).
DEFAULT_OPENAPI_PATH = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "openai_openapi"
                        / "openapi.trimmed.json")


@dataclass(frozen=True)
class ModelCapabilities:
    """What one model accepts on `POST /v1/chat/completions`.

    reasoning: a reasoning model (`max_completion_tokens` only, hidden reasoning tokens, default temperature only).
    efforts: the `reasoning_effort` values it accepts (a subset of `REASONING_EFFORTS`); default_effort: the one used
    when the request sends none. accepts_stop: whether `stop` is accepted. sampling_with_effort_none: whether a
    temperature other than 1 is accepted while the (effective) effort is `none`.
    """

    reasoning: bool = False
    efforts: tuple[str, ...] = ()
    default_effort: str | None = None
    accepts_stop: bool = True
    sampling_with_effort_none: bool = False


# Sources for the table:
# - ReasoningEffort's description in OpenAI's OpenAPI (as above, and as quoted by
#   docs.rs/agentsdk-openai ReasoningEffort): models that default to `none` (gpt-5.1) run without reasoning; "All
#   models before gpt-5.1 default to medium reasoning effort, and do not support none".
# - BerriAI/litellm#28662: models that support `reasoning_effort='none'` accept `stop`; gpt-5 and gpt-5-mini, which
#   have no `none`, keep rejecting it. huggingface/smolagents#1893 quotes the refusal: 400 "Unsupported parameter:
#   'stop' is not supported with this model.", param `stop`, code `unsupported_parameter`.
# - orca_utils.teacher.models (the registry): gpt-6-luna "reasoning_effort none..max (temperature only with none)",
#   gpt-6.1-sol "reasoning_effort low..max (no none/minimal)".
DEFAULT_CAPABILITIES: dict[str, ModelCapabilities] = {
    "gpt-6-luna": ModelCapabilities(reasoning=True, efforts=REASONING_EFFORTS, default_effort="none",
                                    accepts_stop=True, sampling_with_effort_none=True),
    "gpt-6.1-sol": ModelCapabilities(reasoning=True, efforts=("low", "medium", "high", "xhigh", "max"),
                                     default_effort="medium", accepts_stop=False),
}
# A reasoning model the table does not name: the pre-gpt-5.1 family (no `none`, default `medium`, no `stop`).
GENERIC_REASONING = ModelCapabilities(reasoning=True, efforts=("minimal", "low", "medium", "high"),
                                      default_effort="medium", accepts_stop=False)
CHAT_MODEL = ModelCapabilities()

# Hidden reasoning tokens per request by effort: the emulator's own, deterministic numbers (OpenAI publishes none;
# the OpenAPI text only says that lower effort means "fewer tokens used on reasoning").
DEFAULT_REASONING_TOKENS = {"none": 0, "minimal": 16, "low": 64, "medium": 256, "high": 1024, "xhigh": 2048,
                            "max": 4096}

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


def openai_error(message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> dict:
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}` (the shape every issue quoted here shows)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def emulated_prompt_tokens(body: dict) -> int:
    """The emulator's own prompt-token count, without a tokenizer.

    OpenAI's cookbook ("How to count tokens with tiktoken", chat models): 3 tokens per message, 1 more for a
    `name`, 3 to prime the reply; the text itself at OpenAI's rule of thumb of about 4 characters a token
    (help.openai.com "What are tokens and how to count them?"), rounded up. Text parts of list contents are counted;
    other parts (images, audio, files) count 0.
    """
    total = 3
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += 3 + (1 if message.get("name") else 0)
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        total += math.ceil(len(str(content or "")) / 4)
    return total


@dataclass(frozen=True)
class ReasoningPlan:
    """How a reasoning request spends `max_completion_tokens`: hidden reasoning first, the rest is visible room."""

    effort: str | None
    reasoning_tokens: int          # spent (at most the cap)
    room: int | None               # visible tokens left; None: no cap sent
    cap: int | None


@dataclass
class Emulation:
    """OpenAI behaviours the emulation mode reproduces (the module docstring lists them; sources in the comments).

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
        from .models import lookup

        entry = lookup(model)
        return entry.shutdown_date if entry else None

    def is_shut_down(self, model: str) -> bool:
        date = self.shutdown_date(model)
        return bool(date) and dt.date.fromisoformat(date) <= self.today

    def dialect(self, model: str) -> str:
        from .models import dialect_for

        if model in self.capabilities:
            return "reasoning" if self.capabilities[model].reasoning else "chat"
        return self.dialects.get(model) or dialect_for(model)

    def capabilities_for(self, model: str) -> ModelCapabilities:
        if model in self.capabilities:
            return self.capabilities[model]
        return GENERIC_REASONING if self.dialect(model) == "reasoning" else CHAT_MODEL

    def listed_models(self, served) -> dict[str, str | None]:
        """id -> shutdown_date of what `GET /v1/models` lists: the served models (and retired registry models)."""
        from .models import REGISTRY

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


# ---- OpenAPI validation ---------------------------------------------------------------------------------------------
def _nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (which OpenAI's 3.1 document still uses here and there) as JSON Schema."""
    if isinstance(node, list):
        return [_nullable_to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + (["null"] if "null" not in types else [])
            if "enum" in out and None not in out["enum"]:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


_JSON_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean",
               "array": "an array", "object": "an object", "null": "null"}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _param(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class RequestSchemas:
    """Validates request bodies against OpenAI's OpenAPI description (`load` caches one per path)."""

    def __init__(self, document: dict):
        from jsonschema import Draft202012Validator

        self.schemas = _nullable_to_json_schema(document["components"]["schemas"])
        components = {"schemas": self.schemas}
        self.chat = Draft202012Validator({"$ref": "#/components/schemas/CreateChatCompletionRequest",
                                          "components": components})
        self.batch = Draft202012Validator({"$ref": "#/components/schemas/CreateBatchRequest",
                                           "components": components})
        self.chat_fields = self.properties("CreateChatCompletionRequest")
        self.batch_fields = self.properties("CreateBatchRequest")
        self.message_fields = {}
        for variant in self._resolve(self.schemas["ChatCompletionRequestMessage"]).get("oneOf", []):
            schema = self._resolve(variant)
            roles = (schema.get("properties", {}).get("role") or {}).get("enum") or []
            for role in roles:
                self.message_fields[role] = self.properties(schema)

    @staticmethod
    @lru_cache(maxsize=8)
    def _load(path: str) -> RequestSchemas | None:
        p = Path(path)
        if not p.is_file():
            log.warning("OpenAI emulation: no OpenAPI description at %s: request bodies are not validated", p)
            return None
        try:
            return RequestSchemas(json.loads(p.read_text(encoding="utf-8")))
        except ImportError:
            log.warning("OpenAI emulation: jsonschema is not installed: request bodies are not validated")
            return None

    @classmethod
    def load(cls, path: str | Path) -> RequestSchemas | None:
        return cls._load(str(path))

    def _resolve(self, schema: dict) -> dict:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def properties(self, schema: str | dict) -> set[str]:
        """Every property a schema defines, through `$ref` and `allOf` (OpenAI's schemas do not set
        `additionalProperties: false`, so "no undefined field" is enforced from these names)."""
        schema = self._resolve(self.schemas[schema] if isinstance(schema, str) else schema)
        names = set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            names |= self.properties(part)
        return names

    def _error(self, validator, fields: set[str], body: Any) -> tuple[int, dict] | None:
        if isinstance(body, dict):
            unknown = sorted(set(body) - fields)
            if unknown:
                # OpenAI's answer to a field it does not define (xlinx/sd-webui-decadetw-auto-prompt-llm#29: top_k;
                # nashsu/llm_wiki#336: thinking): 400 "Unrecognized request argument supplied: <name>", param and
                # code null. The field is also given as `param` here, so that it is named in a structured way too.
                return 400, openai_error(f"Unrecognized request argument supplied: {', '.join(unknown)}",
                                         param=unknown[0])
            messages = body.get("messages") if validator is self.chat else None
            for i, message in enumerate(messages if isinstance(messages, list) else []):
                if isinstance(message, dict) and message.get("role") in self.message_fields:
                    extra = sorted(set(message) - self.message_fields[message["role"]])
                    if extra:
                        return 400, openai_error(f"Additional properties are not allowed ({extra[0]!r} was "
                                                 f"unexpected) - 'messages.{i}'", param=f"messages[{i}].{extra[0]}")
        from jsonschema.exceptions import best_match

        error = best_match(validator.iter_errors(body))
        if error is None:
            return None
        param = _param(error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            return 400, openai_error(f"Missing required parameter: '{_param([*error.absolute_path, missing])}'.",
                                     param=_param([*error.absolute_path, missing]),
                                     code="missing_required_parameter")
        if error.validator == "type":
            expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
            wanted = " or ".join(_JSON_TYPES.get(t, t) for t in expected if t != "null")
            # Jeffser/Alpaca#904: 400 "Invalid type for 'max_tokens': expected an integer, but got a decimal number
            # instead.", param max_tokens, code invalid_type.
            return 400, openai_error(f"Invalid type for '{param}': expected {wanted}, but got "
                                     f"{_json_kind(error.instance)} instead.", param=param or None,
                                     code="invalid_type")
        return 400, openai_error(f"Invalid value for '{param}': {error.message}", param=param or None,
                                 code="invalid_value")

    def chat_error(self, body: Any) -> tuple[int, dict] | None:
        return self._error(self.chat, self.chat_fields, body)

    def batch_create_error(self, body: Any) -> tuple[int, dict] | None:
        return self._error(self.batch, self.batch_fields, body)


# ---- the Batch API --------------------------------------------------------------------------------------------------
# OpenAPI `Batch.status` (openai/openai-openapi@f85dbe2): validating, failed, in_progress, finalizing, completed,
# expired, cancelling, cancelled; `Batch.errors.data[]` is `BatchError` {code, message, param, line}.
# Validation happens after `POST /v1/batches` has answered `validating`: input-file errors surface as a created
# batch that later reports `status: "failed"` with `errors.data[]` entries (stdapi-ai/stdapi.ai#240, which lists the
# documented codes invalid_json_line, duplicate_custom_id, url_mismatch, model_mismatch, empty_file, too_many_tasks;
# community.openai.com "Undocumented batch behavior: output_file_id not returned at creation, must query
# /v1/batches/{id} to detect errors").
_IN_FLIGHT = ("validating", "in_progress", "finalizing")


def _batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict:
    return {"code": code, "message": message, "param": param, "line": line}


def _line_record(custom_id, status: int | None = None, body: dict | None = None, error: dict | None = None) -> dict:
    # The Batch request output object (OpenAI API reference "The request output object"): id, custom_id,
    # response {status_code, request_id, body} or null, error {code, message} or null.
    rid = f"batch_req_{uuid.uuid4().hex[:24]}"
    response = None if status is None else {"status_code": status, "request_id": rid, "body": body}
    return {"id": rid, "custom_id": custom_id, "response": response, "error": error}


@dataclass
class _Line:
    n: int                      # 1-based line number in the input file
    custom_id: Any
    body: dict
    record: dict | None = None  # the finished output/error record
    ok: bool = False


def _validate_input(emu: Emulation, content: bytes, endpoint: str) -> tuple[list[_Line], list[dict]]:
    """The input file's lines, or the `errors.data` entries that make the batch `failed`."""
    if len(content) > emu.batch_max_bytes:
        # Limit: CreateBatchRequest.input_file_id ("can be up to 200 MB in size"); the code is the emulator's own
        # (no documented code found for it).
        return [], [_batch_error("file_too_large", f"The input file is {len(content):,} bytes; the limit is "
                                 f"{emu.batch_max_bytes:,} bytes.")]
    raw = [(n, text) for n, text in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1)
           if text.strip()]
    if not raw:
        return [], [_batch_error("empty_file", "The input file is empty.")]
    if len(raw) > emu.batch_max_lines:
        return [], [_batch_error("too_many_tasks", f"The batch input file has {len(raw):,} requests; the limit is "
                                 f"{emu.batch_max_lines:,} requests per batch.")]
    lines, errors, seen, model = [], [], set(), None
    for n, text in raw:
        try:
            item = json.loads(text)
        except json.JSONDecodeError:
            errors.append(_batch_error("invalid_json_line", "This line is not parseable as valid JSON.", n))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
            errors.append(_batch_error("invalid_request", "Each line must be an object with custom_id, method, url "
                                       "and an object body.", n, "body"))
            continue
        cid = item.get("custom_id")
        if cid in seen:
            errors.append(_batch_error("duplicate_custom_id", f"The custom_id {cid!r} is used on more than one line; "
                                       "custom_id values must be unique within a batch.", n, "custom_id"))
            continue
        seen.add(cid)
        if item.get("url") != endpoint:
            errors.append(_batch_error("url_mismatch", f"The url {item.get('url')!r} does not match the batch's "
                                       f"endpoint {endpoint!r}.", n, "url"))
            continue
        if str(item.get("method", "")).upper() != "POST":
            # The request input object: "method: The HTTP method to be used for the request. Currently only POST
            # is supported." (the code is the emulator's own).
            errors.append(_batch_error("invalid_method", "Only POST is supported.", n, "method"))
            continue
        line_model = item["body"].get("model")
        if model is None:
            model = line_model
        elif line_model != model:
            errors.append(_batch_error("model_mismatch", f"The model {line_model!r} differs from the batch's model "
                                       f"{model!r}; a batch may use one model only.", n, "body.model"))
            continue
        lines.append(_Line(n, cid, item["body"]))
    return lines, errors


def start_batch(emu: Emulation, state, bid: str, run_batch: Callable, chat_body: Callable,
                add_file: Callable) -> threading.Thread:
    """Run batch `bid` of the server's `state` in a thread, through OpenAI's life cycle (module docstring)."""
    thread = threading.Thread(target=_run_batch_lifecycle, args=(emu, state, bid, run_batch, chat_body, add_file),
                              daemon=True, name=f"emulated-{bid}")
    thread.start()
    return thread


def _now() -> int:
    return int(time.time())


def _sleep_unless_cancelled(batch: dict, seconds: float) -> bool:
    """Sleep `seconds`; True if the batch was cancelled meanwhile."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if batch["status"] == "cancelling":
            return True
        time.sleep(min(0.01, max(0.0, end - time.monotonic())))
    return batch["status"] == "cancelling"


def _run_batch_lifecycle(emu: Emulation, state, bid: str, run_batch, chat_body, add_file) -> None:
    batch = state.batches[bid]
    try:
        _lifecycle(emu, state, batch, run_batch, chat_body, add_file)
    except Exception as exc:  # noqa: BLE001 - an emulator bug ends the batch `failed`, the server stays up
        log.exception("emulated batch %s failed", bid)
        batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": [
            _batch_error("server_error", f"emulator error: {type(exc).__name__}: {exc}")]})
    finally:
        _release(emu, state, batch)


def _release(emu: Emulation, state, batch: dict) -> None:
    """The batch's prompt tokens leave the model's enqueued total (once; before its terminal status shows)."""
    with emu._lock:
        for model, tokens in (batch.pop("_enqueued", None) or {}).items():
            state.enqueued[model] = max(0, state.enqueued.get(model, 0) - tokens)


def _lifecycle(emu: Emulation, state, batch: dict, run_batch, chat_body, add_file) -> None:
    window_end = time.time() + emu.completion_window_s
    if _sleep_unless_cancelled(batch, emu.batch_validation_s):
        batch.update(status="cancelled", cancelled_at=_now())
        return
    lines, errors = _validate_input(emu, state.files[batch["input_file_id"]]["content"], batch["endpoint"])
    if errors:
        batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": errors[:1000]})
        return
    # The enqueued-token limit: per model, the prompt tokens of the batches in validating / in_progress / finalizing
    # plus this one's. OpenAI reports it on the batch, after create (openai/openai-python#2084: a created batch
    # whose errors carry BatchError(code='token_limit_exceeded', line=None, message='Enqueued token limit reached
    # for gpt-4o-mini in organization org-... Limit: 2,000,000 enqueued tokens. Please try again once some
    # in_progress batches have been completed.', param=None)); Azure OpenAI the same way (learn.microsoft.com Q&A
    # 2285577: "the total number of tokens across all enqueued and in-progress batch jobs").
    model = lines[0].body.get("model")
    tokens = sum(emulated_prompt_tokens(line.body) for line in lines)
    limit = emu.batch_enqueued_token_limit
    with emu._lock:
        enqueued = state.enqueued.get(model, 0)
        if limit is not None and enqueued + tokens > limit:
            state.stats["batches_over_token_limit"] = state.stats.get("batches_over_token_limit", 0) + 1
            over = True
        else:
            state.enqueued[model] = enqueued + tokens
            batch["_enqueued"] = {model: tokens}
            over = False
    if over:
        batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": [_batch_error(
            "token_limit_exceeded", f"Enqueued token limit reached for {model} in organization org-emulated. "
            f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches have been "
            f"completed.")]})
        return
    if batch["status"] == "cancelling":
        _release(emu, state, batch)
        batch.update(status="cancelled", cancelled_at=_now())
        return

    batch.update(status="in_progress", in_progress_at=_now())
    batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
    started = time.monotonic()
    _answer_lines(emu, state, lines, run_batch, chat_body)
    stalled = {i for i in range(max(0, len(lines) - emu.batch_stalled_lines), len(lines))} \
        if emu.batch_stalled_lines else set()
    due = [started + emu.batch_latency_s * (i + 1) / len(lines) for i in range(len(lines))]
    finished: set[int] = set()
    end_status = "completed"
    while True:
        now = time.monotonic()
        finished = {i for i in range(len(lines)) if i not in stalled and now >= due[i]}
        batch["request_counts"].update(completed=sum(lines[i].ok for i in finished),
                                       failed=sum(not lines[i].ok for i in finished))
        if len(finished) == len(lines):
            break
        if batch["status"] == "cancelling":
            end_status = "cancelled"
            break
        if time.time() >= window_end:
            # help.openai.com "Batch API FAQ": "If a batch expires (i.e. it could not be completed within the SLA
            # time window), then remaining work is cancelled and any already completed work is returned." The
            # unfinished requests go to the error file with code `batch_expired`: OpenAI's
            # `BatchRequestOutput.error.code` ("batch_expired: The request could not be executed before the
            # completion window ended. batch_cancelled: The batch was cancelled before this request executed.",
            # as generated from OpenAI's OpenAPI in genai-rs/openai-client-base docs/BatchRequestOutputError.md);
            # BerriAI/litellm-docs#1571 describes the same: the line "lands in the error file as batch_expired, and
            # the batch ends expired while keeping the lines that finished in time".
            end_status = "expired"
            break
        time.sleep(0.01)

    if end_status == "completed":
        batch.update(status="finalizing", finalizing_at=_now())
        time.sleep(emu.batch_finalizing_s)
    outputs = [lines[i].record for i in sorted(finished) if lines[i].ok]
    errors_out = [lines[i].record for i in sorted(finished) if not lines[i].ok]
    unfinished = [line for i, line in enumerate(lines) if i not in finished]
    if end_status == "expired":
        errors_out += [_line_record(line.custom_id, error={
            "code": "batch_expired",
            "message": "The request could not be executed before the completion window ended."})
            for line in unfinished]
    elif end_status == "cancelled":
        # `batch_cancelled`: "The batch was cancelled before this request executed." (as above).
        errors_out += [_line_record(line.custom_id, error={"code": "batch_cancelled",
                                                           "message": "This request was cancelled."})
                       for line in unfinished]
    batch["request_counts"].update(completed=len(outputs), failed=len(errors_out))
    if outputs:
        batch["output_file_id"] = add_file("".join(json.dumps(o) + "\n" for o in outputs).encode(),
                                           f"{batch['id']}_output.jsonl", "batch_output")
    if errors_out:
        batch["error_file_id"] = add_file("".join(json.dumps(e) + "\n" for e in errors_out).encode(),
                                          f"{batch['id']}_error.jsonl", "batch_output")
    _release(emu, state, batch)
    batch.update(status=end_status, **{f"{end_status}_at": _now()})


def _answer_lines(emu: Emulation, state, lines: list[_Line], run_batch, chat_body) -> None:
    """Every line's output record: refusals as the chat endpoint would answer them, the rest through the backend."""
    to_run: list[tuple[_Line, dict, ReasoningPlan | None]] = []
    for line in lines:
        refusal = emu.chat_request_error(state.backends, line.body)
        if refusal:
            line.record = _line_record(line.custom_id, refusal[0], refusal[1])
            continue
        plan = emu.reasoning_plan(line.body)
        request = _backend_request(line.body, plan)
        if plan is not None and plan.room is not None and plan.room <= 0:
            line.record = _line_record(line.custom_id, 200, Emulation.usage_details(chat_body(
                line.body["model"], Completion("", "length", emulated_prompt_tokens(line.body), 0)), plan))
            line.ok = True
            continue
        to_run.append((line, request, plan))
    if not to_run:
        return
    model = to_run[0][0].body["model"]
    results = run_batch(state.backends[model], [r for _, r, _ in to_run])
    for (line, _, plan), res in zip(to_run, results):
        if isinstance(res, Completion):
            body = Emulation.usage_details(chat_body(model, Emulation.shape_completion(res, plan)), plan)
            line.record, line.ok = _line_record(line.custom_id, 200, body), True
        elif isinstance(res, ServerFault):
            body = res.body if isinstance(res.body, dict) else {"error": {"message": str(res.body)}}
            line.record = _line_record(line.custom_id, res.status_code, body)
        else:
            line.record = _line_record(line.custom_id, 500, openai_error(f"backend failed: {res}", "server_error"))


def _backend_request(body: dict, plan: ReasoningPlan | None) -> dict:
    """What the backend gets (messages, max_tokens, temperature, stop): the visible room of a reasoning request."""
    stop = body.get("stop")
    if plan is not None:
        cap = plan.room if plan.room is not None else None
    else:
        cap = body.get("max_completion_tokens") if body.get("max_completion_tokens") is not None \
            else body.get("max_tokens")
    temperature = body.get("temperature")
    return {"messages": body.get("messages") or [], "max_tokens": int(cap) if cap is not None else 256,
            "temperature": float(temperature) if temperature is not None else 1.0,
            "stop": [stop] if isinstance(stop, str) else stop}
