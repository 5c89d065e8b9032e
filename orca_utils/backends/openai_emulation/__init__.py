"""The local server's OpenAI emulation mode, written from OpenAI's documentation and API reference.

`orca_utils.backends.local_server` serves pluggable backends over an OpenAI-compatible HTTP API; with
`emulate=Emulation(...)` it also behaves the way OpenAI's API does where a paper-scale run can break. Every
behaviour here comes from OpenAI's published material (each cites its source in a comment: the OpenAPI description
of `github.com/openai/openai-openapi`, OpenAI's help center, or a GitHub issue that quotes an answer of the API),
never from our own client (`teacher/client.py`, `teacher/batch.py`), so that the tests driving the client through
this emulation can fail where the client misreads the API. All limits and delays are this package's own defaults,
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

Where things are:
- `capabilities`: `ModelCapabilities`, the per-model table, the `reasoning_effort` values, hidden reasoning tokens
  (`ReasoningPlan`) and the emulated prompt-token count.
- `emulation`: the `Emulation` settings: Model objects, API keys, control-plane faults, chat-request checks.
- `request_schema`: `RequestSchemas`, validation against OpenAI's OpenAPI description (`DEFAULT_OPENAPI_PATH`).
- `batches`: `start_batch`, the Batch API's input validation and life cycle.
- `errors`: `openai_error`, OpenAI's error body.
"""
from __future__ import annotations

from .batches import attach_result_files, start_batch
from .capabilities import (CHAT_MODEL, DEFAULT_CAPABILITIES, DEFAULT_REASONING_TOKENS, GENERIC_REASONING,
                           REASONING_EFFORTS, ModelCapabilities, ReasoningPlan, emulated_prompt_tokens)
from .emulation import (BATCH_ENQUEUED_TOKEN_LIMIT, BATCH_MAX_BYTES, BATCH_MAX_LINES, COMPLETION_WINDOW_S,
                        Emulation)
from .errors import openai_error
from .request_schema import DEFAULT_OPENAPI_PATH, RequestSchemas

__all__ = ["Emulation", "ModelCapabilities", "ReasoningPlan", "REASONING_EFFORTS", "DEFAULT_CAPABILITIES",
           "DEFAULT_OPENAPI_PATH", "RequestSchemas", "openai_error", "emulated_prompt_tokens", "start_batch",
           "attach_result_files",
           # public names of the single module that its `__all__` left out, still importable from the package
           "GENERIC_REASONING", "CHAT_MODEL", "DEFAULT_REASONING_TOKENS", "BATCH_MAX_LINES", "BATCH_MAX_BYTES",
           "COMPLETION_WINDOW_S", "BATCH_ENQUEUED_TOKEN_LIMIT"]
