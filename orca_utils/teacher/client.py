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
  `retry_errors`, or `error` is in `resend_statuses`). Configuration errors stop the run at once with one line
  naming the model and the param to change (`TeacherConfigError`), and are never cached: 401/403, 404 (unknown or
  shut-down model), and 400s about the request's form (`unsupported_parameter`, `unsupported_value`: a reasoning
  model sent `max_tokens`).
- Dialects (`ChatRequest.dialect`, from the teacher's `api_dialect`): `chat` sends `max_tokens` and `temperature`;
  `reasoning` sends `max_completion_tokens` (which also pays for hidden reasoning tokens), no temperature, and
  `reasoning_effort` when set. `request_body` (`orca_utils.chat_api.wire`) writes both chat calls and
  Batch lines.
- Before the first request, the endpoint's model list (`GET /v1/models`, when it answers) must hold the model and
  not past its `shutdown_date`; otherwise the run stops before anything is sent.
- Cache: `orca_utils.teacher.cache` (SQLite, WAL, one transaction per record): cached keys are never sent again.
- Re-sending (`plan_requests`, the one plan of both the run and `estimate_cost`): with `endpoint.resend_statuses`
  unset, only exact keys are reused (an `error` is re-sent per `retry_errors`). Set, a request whose exact key is not
  cached (another max_tokens, stop or temperature) reuses, unpaid, the newest cached answer to the same prompt
  (`ChatRequest.prompt_key`: model, messages, dialect, effort) whose status is not listed; one whose answers all
  have listed statuses is sent. An exact-key answer is re-sent only when `error` is listed (the same request would
  get the same answer). A reused answer keeps its provenance: `ChatResult.key` is the key it was cached under,
  `answer_max_tokens` the cap it was produced with, `cache_match` "key" or "prompt".
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
                             cut_client_side, max_tokens_of_json, prompt_tokens_of, request_body, request_json,
                             request_params_error, retry_after, rough_tokens, sends_stop, short_error)
from ..schemas import TeacherEndpointParams
from .batch import run_batches
from .cache import CachedResponse, ResponseCache

# ChatRequest, request_body, classify_response, TeacherConfigError and the retry helpers are shared with the
# Batch mode and the OpenAI-compatible backend: they live in `orca_utils.chat_api.wire` (and are exported by
# `orca_utils.teacher`).
__all__ = ["STATUSES", "ChatResult", "ChatRun", "Prices", "CostEstimate", "CostLimitError", "RateLimiter", "Plan",
           "make_client", "estimate_cost", "check_models", "emulation_for", "run_chat_async", "complete_chats",
           "resend_policy", "plan_requests"]

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
    answer_max_tokens: int | None = None   # the cap the answer was produced with (None: not sent)
    cache_match: str | None = None         # "key" (this exact request), "prompt" (same prompt, other params), None


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
    n_same_prompt: int = 0          # of n_cached: answers to the same prompt under other params (resend_statuses)

    def check(self, max_cost_usd: float | None) -> None:
        if max_cost_usd is not None and self.usd > max_cost_usd:
            raise CostLimitError(f"estimated cost ${self.usd:,.2f} for {self.n_requests - self.n_cached:,} "
                                 f"uncached requests exceeds max_cost_usd=${max_cost_usd:,.2f}: raise it or send "
                                 f"fewer queries (nothing was sent)")


def resend_policy(endpoint: TeacherEndpointParams | None) -> tuple[frozenset[str], bool]:
    """(statuses re-sent, whether answers are reused by prompt identity) of an endpoint's params.

    `resend_statuses` unset: today's rule, exact keys only, `error` re-sent per `retry_errors` (no endpoint: errors
    are re-sent, the default). Set: its statuses, and reuse by prompt.
    """
    if endpoint is None:
        return frozenset({"error"}), False
    if endpoint.resend_statuses is None:
        return frozenset({"error"} if endpoint.retry_errors else ()), False
    return frozenset(endpoint.resend_statuses), True


@dataclass
class Plan:
    """What a run does with each unique request: reuse an answer (`reuse`: request key -> record, the exact key's
    or, with `same_prompt`, the newest reusable one of its prompt) or send it (`todo`)."""

    unique: dict[str, ChatRequest]
    reuse: dict[str, CachedResponse]
    same_prompt: set[str]
    todo: list[ChatRequest]


def plan_requests(requests: Sequence[ChatRequest], cache: ResponseCache | None,
                  endpoint: TeacherEndpointParams | None = None) -> Plan:
    """Which requests a run reuses from the cache and which it sends (`resend_policy` of the endpoint)."""
    resend, by_prompt = resend_policy(endpoint)
    unique = {r.key: r for r in requests}
    cached = cache.get_many(unique) if cache else {}
    reuse = {k: rec for k, rec in cached.items() if not (rec.status == "error" and "error" in resend)}
    same_prompt: set[str] = set()
    if by_prompt and cache is not None:
        missing = {k: r.prompt_key for k, r in unique.items() if k not in reuse}
        found = cache.newest_by_prompt(missing.values(), resend)
        for k, pk in missing.items():
            if pk in found:
                reuse[k] = found[pk]
                same_prompt.add(k)
    return Plan(unique, reuse, same_prompt, [r for k, r in unique.items() if k not in reuse])


def _batch_prices(prices: Prices, endpoint: TeacherEndpointParams | None) -> Prices:
    """Under the Batch API, chat prices (batch_factor 1) get the endpoint's `batch_price_factor`."""
    if endpoint is not None and endpoint.batch_mode and prices.batch_factor == 1.0:
        return Prices(prices.input_usd_per_1k, prices.output_usd_per_1k, endpoint.batch_price_factor)
    return prices


def estimate_cost(requests: Sequence[ChatRequest], prices: Prices, count_tokens: Callable[[str], int] | None = None,
                  cache: ResponseCache | None = None, expected_completion_tokens: int | None = None,
                  token_counter: str = "chars/4", endpoint: TeacherEndpointParams | None = None) -> CostEstimate:
    """Cost of the requests a run will send: prompt token counts x input price + expected completions x output price.

    With `endpoint`, exactly those `complete_chats` sends (`plan_requests`: its `resend_statuses` / `retry_errors`),
    at its Batch price when `batch_mode` (as `complete_chats` charges); without, every uncached or `error` request.
    """
    count_tokens = count_tokens or rough_tokens
    prices = _batch_prices(prices, endpoint)
    plan = plan_requests(requests, cache, endpoint)
    todo = plan.todo
    prompt = sum(prompt_tokens_of(r.messages, count_tokens) for r in todo)
    worst = sum(r.max_tokens for r in todo)
    expected = sum(min(expected_completion_tokens or r.max_tokens, r.max_tokens) for r in todo)
    return CostEstimate(len(plan.unique), len(plan.unique) - len(todo), prompt, expected,
                        prices.cost(prompt, expected), prices.cost(prompt, worst), token_counter,
                        len(plan.same_prompt))


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


def _result(req: ChatRequest, rec: CachedResponse | None, match: str | None) -> ChatResult:
    """`match`: None (sent by this run), "key" or "prompt" (reused from the cache)."""
    if rec is None:
        return ChatResult(req.id, req.key, "not_sent", "", None, 0, 0, "max_cost_usd reached", 0, False)
    return ChatResult(req.id, rec.key, rec.status, rec.text, rec.finish_reason, rec.prompt_tokens,
                      rec.completion_tokens, rec.error, rec.attempts, match is not None, int(rec.reasoning_tokens or 0),
                      max_tokens_of_json(rec.request_json), match)


async def run_chat_async(requests: Sequence[ChatRequest], endpoint: TeacherEndpointParams, cache: ResponseCache,
                         prices: Prices | None = None, max_cost_usd: float | None = None, progress: bool = True,
                         desc: str = "teacher", client=None,
                         count_tokens: Callable[[str], int] | None = None) -> ChatRun:
    """Send every request the cache cannot answer (`plan_requests`; chat or Batch API), store each answer as it
    arrives; results in input order."""
    prices = prices or Prices()
    count_tokens = count_tokens or rough_tokens
    plan = plan_requests(requests, cache, endpoint)
    unique, todo = plan.unique, plan.todo
    stats = {"requests": len(requests), "unique": len(unique), "cached": len(unique) - len(todo),
             "cached_same_prompt": len(plan.same_prompt), "sent": 0,
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
        if (rec := fresh.get(r.key)) is not None:
            results.append(_result(r, rec, None))
        elif (rec := plan.reuse.get(r.key)) is not None:
            results.append(_result(r, rec, "prompt" if r.key in plan.same_prompt else "key"))
        else:
            results.append(_result(r, None, None))
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
    if prices is not None:
        prices = _batch_prices(prices, endpoint)

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
