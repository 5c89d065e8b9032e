"""The teacher client: chat requests to any OpenAI-compatible endpoint, cached, rate-limited, retried, costed.

    run = complete_chats(requests, endpoint, cache_path, prices=prices, max_cost_usd=100.0)
    run.results[i].status   # ok | truncated | refused | content_filter | empty | error | not_sent

- Client: `openai.AsyncOpenAI` (or `AsyncAzureOpenAI`) on `endpoint.base_url`; the key is read from the environment
  variable named by `endpoint.api_key_env` and nowhere else (a loopback server needs none).
- Throughput: `endpoint.concurrency` workers; requests paced to `requests_per_minute` and `tokens_per_minute`
  (prompt + max_tokens, as OpenAI counts) by a smooth limiter (GCRA); a 429 pauses every worker for its
  `Retry-After`.
- Retries: 429, 5xx, timeouts, connection errors and malformed responses, with exponential backoff and full jitter,
  up to `endpoint.max_retries`; then the request is recorded with status `error` (re-sent on a later run when
  `retry_errors`). Configuration errors stop the run at once with one line naming the model and the param to
  change (`TeacherConfigError`), and are never cached: 401/403, 404 (unknown or shut-down model), and 400s about
  the request's form (`unsupported_parameter`, `unsupported_value`: a reasoning model sent `max_tokens`).
- Dialects (`ChatRequest.dialect`, from the teacher's `api_dialect`): `chat` sends `max_tokens` and `temperature`;
  `reasoning` sends `max_completion_tokens` (which also pays for hidden reasoning tokens), no temperature, and
  `reasoning_effort` when set. `request_body` (`orca_utils.chat_api.wire`) writes both chat calls and
  Batch lines.
- Before the first request, the endpoint's model list (`GET /v1/models`, when it answers) must hold the model and
  not past its `shutdown_date`; otherwise the run stops before anything is sent.
- Cache: `orca_utils.teacher.cache` (SQLite, WAL, one transaction per record): cached keys are never sent again.
- Cost: `estimate_cost` before spending; `max_cost_usd` refuses a run whose estimate exceeds it and stops sending
  (status `not_sent`, not cached) once the spent plus the next request's worst case would exceed it.
- Batch mode (`endpoint.batch_mode`): `orca_utils.teacher.batch`, into the same cache.
- Per-model facts (`orca_utils.chat_api.registry`): a `reasoning_effort` outside the model's accepted set stops the run
  before anything is sent (one line naming the param); `stop` is not sent to a model that rejects it (the answer is
  cut at the stop string here instead, `protocol.cut_client_side`).
- Hidden reasoning: `usage.completion_tokens_details.reasoning_tokens` is kept per record and summed in
  `stats["reasoning_tokens"]`; answers the reasoning left empty or cut (`finish_reason: "length"` with reasoning
  tokens spent) are counted in `stats["exhausted_by_reasoning"]` and keep their status (`empty`, `truncated`).
An explicit output cap always goes out, and `stop` whenever the request has stop strings and the model takes it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..backends.endpoints import openai_client
from ..chat_api.registry import lookup
from ..chat_api.wire import (ChatRequest, TeacherConfigError, backoff, classify_response, config_error_message,
                             cut_client_side, prompt_tokens_of, request_body, request_json, request_params_error,
                             retry_after, rough_tokens, sends_stop, short_error)
from ..schemas import TeacherEndpointParams
from .batch import run_batches
from .cache import CachedResponse, ResponseCache

# ChatRequest, request_body, classify_response, TeacherConfigError and the retry helpers are shared with the
# Batch mode and the OpenAI-compatible backend: they live in `orca_utils.chat_api.wire` (and are exported by
# `orca_utils.teacher`).
__all__ = ["STATUSES", "ChatResult", "ChatRun", "Prices", "CostEstimate", "CostLimitError", "RateLimiter",
           "make_client", "estimate_cost", "check_models", "emulation_for", "run_chat_async", "complete_chats"]

STATUSES = ("ok", "truncated", "refused", "content_filter", "empty", "error", "not_sent")


class CostLimitError(RuntimeError):
    """The estimated cost of a run exceeds `max_cost_usd`; nothing was sent."""


def _error_object(exc: Exception) -> dict:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    return {}


@dataclass
class ChatResult:
    id: str
    key: str
    status: str
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    attempts: int
    from_cache: bool
    reasoning_tokens: int = 0


@dataclass
class ChatRun:
    results: list[ChatResult]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.results])

    def status_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


@dataclass
class Prices:
    input_usd_per_1k: float = 0.0
    output_usd_per_1k: float = 0.0
    batch_factor: float = 1.0          # 0.5 under the Batch API

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return self.batch_factor * (prompt_tokens * self.input_usd_per_1k
                                    + completion_tokens * self.output_usd_per_1k) / 1000.0


@dataclass
class CostEstimate:
    n_requests: int
    n_cached: int
    prompt_tokens: int
    completion_tokens: int          # expected (or max_tokens when no expectation is given)
    usd: float
    usd_worst_case: float           # every response as long as max_tokens
    token_counter: str

    def check(self, max_cost_usd: float | None) -> None:
        if max_cost_usd is not None and self.usd > max_cost_usd:
            raise CostLimitError(f"estimated cost ${self.usd:,.2f} for {self.n_requests - self.n_cached:,} "
                                 f"uncached requests exceeds max_cost_usd=${max_cost_usd:,.2f}: raise it or send "
                                 f"fewer queries (nothing was sent)")


def estimate_cost(requests: Sequence[ChatRequest], prices: Prices, count_tokens: Callable[[str], int] | None = None,
                  cache: ResponseCache | None = None, expected_completion_tokens: int | None = None,
                  token_counter: str = "chars/4") -> CostEstimate:
    """Cost of the uncached requests: prompt token counts x input price + expected completions x output price."""
    count_tokens = count_tokens or rough_tokens
    unique = {r.key: r for r in requests}
    cached = cache.get_many(unique) if cache else {}
    todo = [r for k, r in unique.items() if k not in cached or cached[k].status == "error"]
    prompt = sum(prompt_tokens_of(r.messages, count_tokens) for r in todo)
    worst = sum(r.max_tokens for r in todo)
    expected = sum(min(expected_completion_tokens or r.max_tokens, r.max_tokens) for r in todo)
    return CostEstimate(len(unique), len(unique) - len(todo), prompt, expected, prices.cost(prompt, expected),
                        prices.cost(prompt, worst), token_counter)


class RateLimiter:
    """Smooth pacing to `requests_per_minute` and `tokens_per_minute` (GCRA, no bursts) plus a shared 429 pause."""

    def __init__(self, requests_per_minute: float, tokens_per_minute: float):
        self.req_interval, self.tok_interval = 60.0 / requests_per_minute, 60.0 / tokens_per_minute
        self.tat_req = self.tat_tok = self.paused_until = 0.0
        self.lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        # The lock is held while waiting: requests leave one at a time, and the next slot is counted from the
        # moment this one really leaves, less a small tolerance (a late wake-up never lets two requests out much
        # closer than the interval, which a server counting over a sliding window would answer with 429).
        async with self.lock:
            while (wait := max(self.tat_req, self.tat_tok, self.paused_until) - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            now = time.monotonic()
            # A wake-up later than the slot may catch up by at most a quarter interval (GCRA tolerance).
            self.tat_req = max(self.tat_req, now - 0.25 * self.req_interval) + self.req_interval
            self.tat_tok = max(self.tat_tok, now) + min(tokens * self.tok_interval, 60.0)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


def emulation_for(endpoint: TeacherEndpointParams):
    """The local server's OpenAI emulation when the endpoint asks for it (`emulate_openai`), else None.

    Its limits come from the endpoint's `emulation` block, never from the client's own params
    (`batch_max_enqueued_tokens` and friends): set it lower than the client's budget and the client must live with
    OpenAI's asynchronous `token_limit_exceeded` refusals, as a real run would.
    """
    if not endpoint.emulate_openai:
        return None
    from ..backends.openai_emulation import Emulation

    emu = endpoint.emulation
    extra = {"reasoning_tokens": dict(emu.reasoning_tokens)} if emu.reasoning_tokens is not None else {}
    return Emulation(batch_enqueued_token_limit=emu.batch_enqueued_token_limit, batch_latency_s=emu.batch_latency_s,
                     completion_window_s=emu.completion_window_s, batch_stalled_lines=emu.batch_stalled_lines,
                     control_plane_fault_every=emu.control_plane_fault_every, **extra)


def make_client(endpoint: TeacherEndpointParams):
    """AsyncOpenAI / AsyncAzureOpenAI with the key from the environment; the client's own retries are off."""
    def missing_key(env: str) -> Exception:
        return TeacherConfigError(f"environment variable {env} is not set: export the API key there (params only "
                                  f"hold the variable's name)")

    return openai_client(endpoint.base_url, endpoint.api_key_env, asynchronous=True, api_type=endpoint.api_type,
                         azure_api_version=endpoint.azure_api_version, timeout_s=endpoint.timeout_s, max_retries=0,
                         missing_key=missing_key)


async def _send(client, req: ChatRequest, endpoint: TeacherEndpointParams, limiter: RateLimiter,
                est_tokens: int, stats: dict) -> CachedResponse:
    """One request with retries; always returns a record (status `error` after the last retry)."""
    import openai

    last_error = "no attempt"
    attempts = 0
    for attempt in range(1, endpoint.max_retries + 2):
        attempts = attempt
        await limiter.acquire(est_tokens)
        stats["sent"] += 1
        wait = None
        try:
            resp = await client.chat.completions.create(**request_body(req))
            body = resp if isinstance(resp, dict) else resp.model_dump()
            out = cut_client_side(req.stop, sends_stop(req), classify_response(body))
            return CachedResponse(req.key, req.model, request_json(req), out.status, out.text, out.finish_reason,
                                  out.prompt_tokens, out.completion_tokens, None, attempts, "chat",
                                  reasoning_tokens=out.reasoning_tokens)
        except openai.RateLimitError as exc:
            stats["rate_limited"] += 1
            wait = retry_after(exc) or backoff(attempt, endpoint)
            limiter.pause(wait)
            last_error = f"429 rate limited: {short_error(exc)}"
        except openai.APIStatusError as exc:
            code = exc.status_code
            message = config_error_message(req.model, code, _error_object(exc))
            if message or code in (401, 403, 404):
                raise TeacherConfigError(message or f"{req.model}: HTTP {code} from the endpoint: {short_error(exc)}") \
                    from None
            if getattr(exc, "code", None) == "content_filter" or "content_filter" in str(exc.body or ""):
                return CachedResponse(req.key, req.model, request_json(req), "content_filter", "", "content_filter",
                                      0, 0, short_error(exc), attempts, "chat")
            if code < 500 and code not in (408, 409):
                return CachedResponse(req.key, req.model, request_json(req), "error", "", None, 0, 0,
                                      f"HTTP {code}: {short_error(exc)}", attempts, "chat")
            wait = retry_after(exc)
            last_error = f"HTTP {code}: {short_error(exc)}"
        except (openai.APIConnectionError, asyncio.TimeoutError) as exc:   # includes APITimeoutError
            last_error = f"{type(exc).__name__}: {short_error(exc)}"
        except (ValueError, TypeError, KeyError, openai.APIResponseValidationError) as exc:   # malformed body
            last_error = f"malformed response: {type(exc).__name__}: {short_error(exc)}"
        stats["retries"] += attempt <= endpoint.max_retries
        if attempt <= endpoint.max_retries:
            await asyncio.sleep(wait if wait is not None else backoff(attempt, endpoint))
    return CachedResponse(req.key, req.model, request_json(req), "error", "", None, 0, 0, last_error, attempts,
                          "chat")


async def check_models(client, models: set[str]) -> None:
    """Stop before anything is sent when the endpoint's model list lacks a model or lists it as shut down.

    Endpoints without a usable `GET /v1/models` (some proxies, Azure deployment names) are not checked here.
    """
    import datetime as dt

    import openai

    try:
        page = await client.models.list()
        listed = {m.id: (m.model_dump() if hasattr(m, "model_dump") else dict(m)) for m in page.data}
    except openai.AuthenticationError as exc:
        raise TeacherConfigError(config_error_message(sorted(models)[0], 401, _error_object(exc))) from None
    except Exception:  # noqa: BLE001 - no model list: the first request will tell
        return
    if not listed:
        return
    for model in sorted(models):
        info = listed.get(model)
        if info is None:
            raise TeacherConfigError(config_error_message(model, 404, {"code": "model_not_found"}))
        # OpenAI's Model object has `shutdown_date` only where a date is announced (null or absent otherwise):
        # then the registry's date, if it has one, is the one to trust.
        shutdown, source = info.get("shutdown_date"), "the endpoint's model list"
        if not shutdown and (entry := lookup(model)) is not None and entry.shutdown_date:
            shutdown, source = entry.shutdown_date, "orca_utils/chat_api/registry.py"
        if shutdown and dt.date.fromisoformat(str(shutdown)[:10]) <= dt.date.today():
            raise TeacherConfigError(f"model {model!r} was shut down on {shutdown} ({source}): "
                                     f"change the teacher's `model` param")


def _result(req: ChatRequest, rec: CachedResponse | None, from_cache: bool) -> ChatResult:
    if rec is None:
        return ChatResult(req.id, req.key, "not_sent", "", None, 0, 0, "max_cost_usd reached", 0, False)
    return ChatResult(req.id, rec.key, rec.status, rec.text, rec.finish_reason, rec.prompt_tokens,
                      rec.completion_tokens, rec.error, rec.attempts, from_cache, int(rec.reasoning_tokens or 0))


async def run_chat_async(requests: Sequence[ChatRequest], endpoint: TeacherEndpointParams, cache: ResponseCache,
                         prices: Prices | None = None, max_cost_usd: float | None = None, progress: bool = True,
                         desc: str = "teacher", client=None,
                         count_tokens: Callable[[str], int] | None = None) -> ChatRun:
    """Send every uncached request (chat or Batch API), store each answer as it arrives; results in input order."""
    prices = prices or Prices()
    count_tokens = count_tokens or rough_tokens
    unique = {r.key: r for r in requests}
    cached = cache.get_many(unique)
    todo = [r for k, r in unique.items()
            if k not in cached or (endpoint.retry_errors and cached[k].status == "error")]
    stats = {"requests": len(requests), "unique": len(unique), "cached": len(unique) - len(todo), "sent": 0,
             "retries": 0, "rate_limited": 0, "spent_usd": 0.0, "prompt_tokens": 0, "completion_tokens": 0,
             "reasoning_tokens": 0, "exhausted_by_reasoning": 0}
    fresh: dict[str, CachedResponse] = {}
    for problem in dict.fromkeys(filter(None, (request_params_error(r) for r in todo))):
        raise TeacherConfigError(problem)              # before anything is sent
    if todo:
        client = client or make_client(endpoint)
        if endpoint.check_models:
            await check_models(client, {r.model for r in todo})
        if endpoint.batch_mode:
            fresh = await run_batches(todo, endpoint, cache, client, stats, prices, max_cost_usd, progress, desc)
        else:
            fresh = await _run_chats(todo, endpoint, cache, client, stats, prices, max_cost_usd, progress, desc,
                                     count_tokens)
    for rec in fresh.values():
        stats["reasoning_tokens"] += int(rec.reasoning_tokens or 0)
        stats["exhausted_by_reasoning"] += (rec.status in ("empty", "truncated") and rec.finish_reason == "length"
                                            and int(rec.reasoning_tokens or 0) > 0)
    results = []
    for r in requests:
        rec = fresh.get(r.key)
        results.append(_result(r, rec, False) if rec else
                       _result(r, cached.get(r.key), True) if r.key in cached else _result(r, None, False))
    return ChatRun(results, stats)


async def _run_chats(todo, endpoint, cache, client, stats, prices, max_cost_usd, progress, desc, count_tokens):
    from tqdm.auto import tqdm

    limiter = RateLimiter(endpoint.requests_per_minute, endpoint.tokens_per_minute)
    queue: asyncio.Queue = asyncio.Queue()
    for r in todo:
        queue.put_nowait(r)
    fresh: dict[str, CachedResponse] = {}
    bar = tqdm(total=len(todo), desc=desc, disable=not progress, unit="req", dynamic_ncols=True)
    reserved = [0.0]

    async def worker():
        while True:
            try:
                req = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            prompt_est = prompt_tokens_of(req.messages, count_tokens)
            worst = prices.cost(prompt_est, req.max_tokens)
            if max_cost_usd is not None and stats["spent_usd"] + reserved[0] + worst > max_cost_usd + 1e-12:
                stats["stopped_by_cost"] = True
                bar.update(1)
                continue
            reserved[0] += worst
            try:
                rec = await _send(client, req, endpoint, limiter, prompt_est + req.max_tokens, stats)
            finally:
                reserved[0] -= worst
            cache.put(rec)                    # one transaction per record, as soon as it arrives
            fresh[req.key] = rec
            stats["prompt_tokens"] += rec.prompt_tokens
            stats["completion_tokens"] += rec.completion_tokens
            stats["spent_usd"] += prices.cost(rec.prompt_tokens, rec.completion_tokens)
            bar.set_postfix(tok=stats["prompt_tokens"] + stats["completion_tokens"],
                            usd=f"{stats['spent_usd']:.4f}", r429=stats["rate_limited"], refresh=False)
            bar.update(1)

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(min(endpoint.concurrency, len(todo)))))
    finally:
        bar.close()
        stats["wall_s"] = round(time.monotonic() - t0, 3)
    return fresh


def complete_chats(requests: Sequence[ChatRequest], endpoint: TeacherEndpointParams, cache_path: str | Path,
                   prices: Prices | None = None, max_cost_usd: float | None = None, progress: bool = True,
                   desc: str = "teacher", count_tokens: Callable[[str], int] | None = None) -> ChatRun:
    """Synchronous `run_chat_async` (works inside Jupyter's running loop too: it runs on its own thread)."""
    if endpoint.batch_mode and prices is not None and prices.batch_factor == 1.0:
        prices = Prices(prices.input_usd_per_1k, prices.output_usd_per_1k, endpoint.batch_price_factor)

    async def main():
        with ResponseCache(cache_path) as cache:
            return await run_chat_async(requests, endpoint, cache, prices, max_cost_usd, progress, desc,
                                        count_tokens=count_tokens)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()
