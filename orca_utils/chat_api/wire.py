"""The chat-completions wire format, shared by the teacher client, its Batch mode and the OpenAI-compatible backend.

`ChatRequest` and its body in either dialect (`request_body`, `request_json`), its cache key (`request_key`) and its
prompt identity (`prompt_key`: the key less max_tokens, stop and temperature, for reuse across those), how a
response is classified (`classify_response`, `cut_client_side`), how prompt tokens are estimated
(`prompt_tokens_of`), how a failed call is retried (`retry_after`, `backoff`), and the one error that stops a run
(`TeacherConfigError`, worded by `config_error_message`). A leaf: it imports only the model registry beside it.
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol

from .registry import accepts_stop, effort_error, retired_on

__all__ = ["TeacherConfigError", "CONFIG_ERROR_CODES", "ChatRequest", "request_body", "request_json",
           "config_error_message", "classify_response", "Classified", "cut_client_side", "sends_stop",
           "request_params_error", "rough_tokens", "prompt_tokens_of", "retry_after",
           "backoff", "short_error", "request_key", "prompt_key", "prompt_key_of_json", "max_tokens_of_json"]


class TeacherConfigError(RuntimeError):
    """The endpoint refuses every request (bad key, no access, unknown or retired model, wrong dialect)."""


def request_key(model: str, messages: list[dict], max_tokens: int, temperature: float,
                stop: list[str] | None) -> str:
    """SHA-256 of everything that determines a response (the endpoint and the key do not)."""
    payload = json.dumps({"model": model, "messages": [{"role": m["role"], "content": m["content"]}
                                                       for m in messages],
                          "max_tokens": int(max_tokens), "temperature": float(temperature),
                          "stop": list(stop or [])}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def prompt_key(model: str, messages: list[dict], dialect: str = "chat", reasoning_effort: str | None = None) -> str:
    """SHA-256 of a request's prompt identity: the model, the messages, the dialect and the effort; not max_tokens,
    stop or temperature. The model stays in it: another teacher asked the same query never gets this one's answer."""
    payload = json.dumps({"model": model, "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                          "dialect": dialect, "reasoning_effort": reasoning_effort}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _body(request_json_text: str) -> dict:
    body = json.loads(request_json_text)
    if not isinstance(body, dict):
        raise ValueError("a request body is a JSON object")
    return body


def prompt_key_of_json(request_json_text: str) -> str:
    """`prompt_key` of a stored request body (`request_json`): `max_completion_tokens` marks the reasoning dialect."""
    body = _body(request_json_text)
    dialect = "reasoning" if "max_completion_tokens" in body else "chat"
    return prompt_key(body["model"], body["messages"], dialect, body.get("reasoning_effort"))


def max_tokens_of_json(request_json_text: str) -> int | None:
    """The output cap a stored request body was sent with (`max_tokens` or `max_completion_tokens`), or None."""
    try:
        body = _body(request_json_text)
    except (ValueError, TypeError):
        return None
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(cap) if cap is not None else None


CONFIG_ERROR_CODES = {"model_not_found", "unsupported_parameter", "unsupported_value", "invalid_api_key",
                      "missing_api_key", "model_not_supported"}


@dataclass
class ChatRequest:
    id: str
    model: str
    messages: list[dict]
    max_tokens: int
    temperature: float = 0.0
    stop: list[str] | None = None
    dialect: str = "chat"                 # "chat" | "reasoning" (orca_utils.chat_api.registry)
    reasoning_effort: str | None = None

    @property
    def key(self) -> str:
        if self.dialect == "chat":
            # An effort in the chat dialect (vLLM's gpt-oss) is part of the key; without one the key is unchanged.
            marker = [f"<effort:{self.reasoning_effort}>"] if self.reasoning_effort else []
            return request_key(self.model, self.messages, self.max_tokens, self.temperature,
                               (list(self.stop or []) + marker) if marker else self.stop)
        # A reasoning request sends no temperature: the key records the dialect and effort instead.
        return request_key(self.model, self.messages, self.max_tokens, -1.0,
                           list(self.stop or []) + [f"<dialect:{self.dialect}:{self.reasoning_effort}>"])

    @property
    def prompt_key(self) -> str:
        """The prompt identity (`prompt_key`): what a cached answer under another max_tokens/stop/temperature must
        share to be reused (`TeacherEndpointParams.resend_statuses`)."""
        return prompt_key(self.model, self.messages, self.dialect, self.reasoning_effort)


def sends_stop(req: ChatRequest) -> bool:
    """Whether `stop` goes out: not to a model that rejects it (`models.accepts_stop`: 400 unsupported_parameter
    from reasoning models that cannot switch reasoning off, e.g. gpt-6.1-sol, GPT-5, the o-series)."""
    return bool(req.stop) and accepts_stop(req.model)


def request_body(req: ChatRequest) -> dict:
    """The chat-completions body for `req` in its dialect (the same for chat calls and Batch lines).

    `reasoning_effort` goes out in both dialects when set: OpenAI's reasoning models take it with
    `max_completion_tokens`; vLLM serving gpt-oss takes it in a plain chat request (its chat-completions
    `reasoning_effort`, https://docs.vllm.ai/en/latest/features/reasoning_outputs.html). `stop` is left out for a
    model that rejects it (`sends_stop`); the client cuts the answer at the stop string instead
    (`cut_client_side`), so what is scored is the same.
    """
    body: dict[str, Any] = {"model": req.model, "messages": req.messages}
    if req.dialect == "reasoning":
        body["max_completion_tokens"] = req.max_tokens
    else:
        body["max_tokens"] = req.max_tokens
        body["temperature"] = req.temperature
    if req.reasoning_effort:
        body["reasoning_effort"] = req.reasoning_effort
    if sends_stop(req):
        body["stop"] = list(req.stop)
    return body


def request_params_error(req: ChatRequest) -> str | None:
    """One line when the request's params cannot work for its model (an effort outside the model's set), checked
    before anything is sent; None when fine."""
    return effort_error(req.model, req.reasoning_effort)


def config_error_message(model: str, status: int | None, error: dict | None) -> str | None:
    """One line naming the model and the param to change when an error means every request will fail, else None.

    `error` is the API's error object (`{"message", "code", "param", ...}`); None for non-configuration errors
    (rate limits, server errors, a single over-long prompt).
    """
    error = error or {}
    code, param = error.get("code"), error.get("param")
    text = " ".join(str(error.get("message") or "").split())[:200]
    if status in (401, 403) or code in ("invalid_api_key", "missing_api_key"):
        return (f"model {model!r}: HTTP {status} from the endpoint ({text}): check the key in the environment "
                f"variable named by the endpoint's `api_key_env`, and that it has access to this model")
    if status == 404 or code in ("model_not_found", "model_not_supported"):
        retired = retired_on(model)
        why = f"shut down on {retired}" if retired else "not served by this endpoint"
        return (f"model {model!r} is {why} (HTTP {status} {code or ''}): change the teacher's `model` param "
                f"(`python -m orca_utils validate --profile <profile> --deep` lists what the endpoint serves)")
    if status == 400 and code in ("unsupported_parameter", "unsupported_value"):
        if param in ("max_tokens", "temperature"):
            fix = "set the teacher's `api_dialect: reasoning` (max_completion_tokens, no temperature)"
        elif param in ("max_completion_tokens", "reasoning_effort"):
            fix = "set the teacher's `api_dialect: chat`, or `reasoning_effort: null`"
        else:
            fix = f"remove or change the teacher param that sets `{param}`"
        return f"model {model!r} rejects `{param}` (HTTP 400 {code}: {text}): {fix}"
    return None


def short_error(exc: Exception, limit: int = 300) -> str:
    """An exception's text on one line, at most `limit` characters (for error records and messages)."""
    return " ".join(str(exc).split())[:limit]


def request_json(req: ChatRequest) -> str:
    """`request_body` as JSON: what the cache stores as a record's request (and a Batch line's body)."""
    return json.dumps(request_body(req), ensure_ascii=False)


class Classified(NamedTuple):
    status: str
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0


def classify_response(body: dict) -> Classified:
    """A chat.completion body -> (status, text, finish_reason, prompt_tokens, completion_tokens, reasoning_tokens).

    Only `message.content` is the answer: reasoning text (vLLM's `message.reasoning_content`, or `reasoning` in
    newer releases) never enters it. Hidden reasoning tokens are read from
    `usage.completion_tokens_details.reasoning_tokens` (0 when absent); they count against the output cap, so a
    small cap can end in `finish_reason: "length"` with no content: status `empty` (counted, never dropped).
    """
    choices = body.get("choices") or []
    if not choices:
        raise ValueError("response has no choices")
    choice, usage = choices[0], body.get("usage") or {}
    message = choice.get("message") or {}
    text, reason = message.get("content") or "", choice.get("finish_reason")
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    rt = int(((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    if reason == "content_filter":
        status = "content_filter"
    elif message.get("refusal"):
        status, text = "refused", message["refusal"]
    elif not text.strip():
        status = "empty"
    elif reason == "length":
        status = "truncated"
    else:
        status = "ok"
    return Classified(status, text, reason, pt, ct, rt)


def cut_client_side(req_stop: list[str] | None, stop_sent: bool, out: Classified) -> Classified:
    """When `stop` was not sent (the model rejects it), cut the answer at the earliest stop string as the server
    would have: a hit ends the answer with `finish_reason: "stop"` (a `truncated` answer cut there is `ok`)."""
    if stop_sent or not req_stop or out.status not in ("ok", "truncated"):
        return out
    cut = min((i for i in (out.text.find(s) for s in req_stop if s) if i != -1), default=-1)
    if cut == -1:
        return out
    text = out.text[:cut]
    return out._replace(text=text, finish_reason="stop", status="ok" if text.strip() else "empty")


def rough_tokens(text: str) -> int:
    """A token count without a tokenizer: 4 characters a token (at least 1)."""
    return max(1, len(text) // 4)


def prompt_tokens_of(messages: list[dict], count_tokens: Callable[[str], int] = rough_tokens) -> int:
    """Prompt tokens of a chat as OpenAI counts them: each message's content, 4 per message, 3 for the reply."""
    return sum(count_tokens(m["content"]) + 4 for m in messages) + 3   # chat format overhead per message + reply


def retry_after(exc: Exception) -> float | None:
    """Seconds the server asks to wait (`retry-after-ms` or `retry-after`: seconds or an HTTP date), or None."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class RetryTimes(Protocol):
    """What `backoff` reads of an endpoint's params (`orca_utils.schemas.TeacherEndpointParams`)."""

    backoff_base_s: float
    backoff_max_s: float


def backoff(attempt: int, endpoint: RetryTimes) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(backoff_max_s, backoff_base_s * 2^(attempt-1)))."""
    return random.uniform(0, min(endpoint.backoff_max_s, endpoint.backoff_base_s * 2 ** (attempt - 1)))
