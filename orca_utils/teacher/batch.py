"""Batch mode of the teacher client: the OpenAI Batch API (half price, results within 24 h), into the same cache.

Sizing (OpenAI's Batch guide and rate-limit docs: https://platform.openai.com/docs/guides/batch,
https://platform.openai.com/docs/guides/rate-limits): an input file holds at most 50,000 requests and 200 MB, and a
model's "enqueued tokens" (the Batch queue limit of the organization's usage tier, shown on
platform.openai.com/settings/organization/limits) count the PROMPT tokens of its batches in progress. So each batch
file is cut at `batch_target_tokens` prompt tokens, `batch_max_requests` lines and `batch_max_file_mb`, and the
submission is a rolling window: batches go out while the prompt tokens of this run's in-flight batches stay under
`batch_max_enqueued_tokens`, several at once when the budget allows (`stats["max_in_flight"]`).

Refusals are asynchronous: a batch is created `validating` and may come back `failed` on a later poll, with
`errors.data[i].code` (https://platform.openai.com/docs/api-reference/batch/object). `token_limit_exceeded` (at
create or on poll; other organizations' work or other runs share the limit) puts the chunk back at the head of the
queue, spends no round of its requests and loses nothing: the client waits until one of its own in-flight batches
ends, or, with none in flight, a poll interval, and after `batch_token_limit_retries` such refusals in a row stops
with one line naming `batch_max_enqueued_tokens`. Any other code (`duplicate_custom_id`, `invalid_json_line`,
`model_mismatch`, `invalid_url`, `too_many_tasks`, a file-validation error ...) means the request lines or the
account are wrong: `TeacherConfigError`, one line naming the code and the message. An `expired` batch (the 24 h
window passed) or a `cancelled` one keeps its partial output: both its output and error files are read, and the
lines it never ran (error code `batch_expired` / `batch_cancelled`, or no line at all) are re-queued without
spending a round (bounded: after `batch_max_rounds` such re-queues they count as rounds).

Each batch is recorded in the cache's `batches` table before polling, so a killed run resumes polling the batches
it already paid for instead of submitting them again. When a batch ends, BOTH its output and its error file are
read and every line is checked: a `completed` batch can hold only failures. Answers go to the cache one record per
transaction; failed ids are re-queued, and after `batch_max_rounds` batches they are recorded with status `error`.
When the first batch's lines all fail with the same configuration error (unknown or retired model, a parameter the
model rejects), the run stops with that error and caches nothing: every other line would fail too. Control-plane
calls (upload, create, poll, download) are retried with backoff on 429, 5xx and connection errors, up to
`control_retries`. Stats: `batches`, `batches_refused`, `batches_expired`, `batches_cancelled`, `max_in_flight`,
`max_enqueued_tokens` (prompt tokens in flight), `batch_failed_lines`, `requeued_unprocessed`.
"""
from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from typing import Sequence

from ..schemas import TeacherEndpointParams
from .cache import CachedResponse, ResponseCache
from ..chat_api.wire import (TeacherConfigError, backoff, classify_response, config_error_message, cut_client_side,
                             prompt_tokens_of, request_body, request_json, retry_after, sends_stop, short_error)

__all__ = ["run_batches", "chunk_requests", "MAX_FILE_LINES", "MAX_FILE_BYTES"]

TERMINAL = {"completed", "failed", "expired", "cancelled"}
MAX_FILE_LINES = 50_000            # OpenAI: an input file holds up to 50,000 requests ...
MAX_FILE_BYTES = 200_000_000       # ... and up to 200 MB
UNPROCESSED_CODES = {"batch_expired", "batch_cancelled"}   # error-file codes of lines a batch never ran


def chunk_requests(todo: Sequence, max_tokens: int, max_requests: int, est_tokens, max_bytes: int | None = None,
                   line_bytes=None) -> list[list]:
    """Consecutive chunks under the token, line and (with `line_bytes`) byte caps; a single request above a cap
    gets its own chunk."""
    chunks, current, tokens, size = [], [], 0, 0
    for r in todo:
        t, b = est_tokens(r), (line_bytes(r) if line_bytes else 0)
        if current and (tokens + t > max_tokens or len(current) >= max_requests
                        or (max_bytes is not None and size + b > max_bytes)):
            chunks.append(current)
            current, tokens, size = [], 0, 0
        current.append(r)
        tokens += t
        size += b
    if current:
        chunks.append(current)
    return chunks


def _line(req) -> str:
    return json.dumps({"custom_id": req.key, "method": "POST", "url": "/v1/chat/completions",
                       "body": request_body(req)}, ensure_ascii=False)


class TokenLimitExceeded(RuntimeError):
    """The server refused a batch: the model's enqueued-token limit would be passed (at create or on a poll)."""


def _errors_of(batch) -> list[tuple[str, str]]:
    """(code, message) of a Batch object's `errors.data` (each message on one line)."""
    data = getattr(getattr(batch, "errors", None), "data", None) or []
    return [(str(getattr(e, "code", None) or "unknown"), " ".join(str(getattr(e, "message", "") or "").split())[:300])
            for e in data]


def _refusal(batch, model: str) -> None:
    """Raise for a `failed` batch carrying errors: `TokenLimitExceeded` (retry later) or `TeacherConfigError`."""
    errors = _errors_of(batch)
    if getattr(batch, "status", None) != "failed" or not errors:
        return
    if any(code == "token_limit_exceeded" for code, _ in errors):
        raise TokenLimitExceeded(next(m for c, m in errors if c == "token_limit_exceeded") or "token_limit_exceeded")
    code, message = errors[0]
    more = f" (+{len(errors) - 1} more errors)" if len(errors) > 1 else ""
    raise TeacherConfigError(f"model {model!r}: the Batch API refused batch {batch.id} with {code}: {message}{more}: "
                             f"nothing of it ran; fix the request lines or the account (answers so far are cached)")


async def _control(call, endpoint: TeacherEndpointParams, what: str):
    """A control-plane call with retries on 429 (honouring Retry-After), 5xx, timeouts and connection errors."""
    import openai

    for attempt in range(1, endpoint.control_retries + 2):
        try:
            return await call()
        except openai.RateLimitError as exc:
            wait, error = retry_after(exc) or backoff(attempt, endpoint), exc
        except openai.APIStatusError as exc:
            if exc.status_code < 500 and exc.status_code not in (408, 409):
                raise
            wait, error = retry_after(exc) or backoff(attempt, endpoint), exc
        except (openai.APIConnectionError, asyncio.TimeoutError) as exc:
            wait, error = backoff(attempt, endpoint), exc
        if attempt > endpoint.control_retries:
            raise RuntimeError(f"Batch API {what}: still failing after {endpoint.control_retries} retries "
                               f"({type(error).__name__}: {short_error(error)}); rerun to resume (submitted batches "
                               f"are kept)") from None
        await asyncio.sleep(min(wait, endpoint.backoff_max_s) * (0.5 + random.random() / 2))


async def _submit(client, chunk, cache: ResponseCache, round_no: int, endpoint: TeacherEndpointParams) -> str:
    import openai

    payload = ("\n".join(_line(r) for r in chunk) + "\n").encode()
    try:
        uploaded = await _control(lambda: client.files.create(file=(f"teacher_round{round_no}.jsonl", payload),
                                                              purpose="batch"), endpoint, "file upload")
        batch = await _control(lambda: client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"source": "orca-notebooks"}), endpoint, "batch create")
    except openai.APIStatusError as exc:          # a 4xx the control plane does not retry
        error = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
        code = (error.get("code") if isinstance(error, dict) else None) or getattr(exc, "code", None)
        if code == "token_limit_exceeded":
            raise TokenLimitExceeded(short_error(exc)) from None
        raise TeacherConfigError(f"model {chunk[0].model!r}: the Batch API refused the upload or batch (HTTP "
                                 f"{exc.status_code} {code or ''}: {short_error(exc)})") from None
    _refusal(batch, chunk[0].model)                # refused at create (token limit, or another code)
    # Recorded before polling: a killed run finds it again.
    cache.add_batch(batch.id, {r.key: request_json(r) for r in chunk})
    return batch.id


async def _wait(client, batch_id: str, poll_s: float, endpoint: TeacherEndpointParams):
    while True:
        batch = await _control(lambda: client.batches.retrieve(batch_id), endpoint, f"poll {batch_id}")
        if batch.status in TERMINAL:
            return batch
        await asyncio.sleep(poll_s)


async def _read_file(client, file_id: str | None, endpoint: TeacherEndpointParams) -> list[dict]:
    if not file_id:
        return []
    content = await _control(lambda: client.files.content(file_id), endpoint, f"download {file_id}")
    rows = []
    for line in content.text.splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue      # a malformed line: its id stays unanswered and is re-queued
    return rows


class Collected:
    """What one ended batch gave: answers, failed lines (spend a round), lines it never ran (spend none)."""

    def __init__(self, status: str, done: dict[str, CachedResponse], failed: dict[str, str],
                 unprocessed: dict[str, str]):
        self.status, self.done, self.failed, self.unprocessed = status, done, failed, unprocessed


async def _collect(client, batch_id: str, keys: list[str], models: dict[str, str], cache, poll_s,
                   stats, prices, endpoint: TeacherEndpointParams, fail_fast: bool = False,
                   stops: dict[str, tuple[list[str] | None, bool]] | None = None) -> Collected:
    """Poll one batch, store every answered line; return what it gave (`Collected`).

    A batch that failed validation raises (`_refusal`): `TokenLimitExceeded` or `TeacherConfigError`. With
    `fail_fast`, a batch whose every line failed with one configuration error raises `TeacherConfigError` before
    anything of it is stored. `stops`: {key: (stop strings, whether they were sent)} to cut answers client-side.
    """
    batch = await _wait(client, batch_id, poll_s, endpoint)
    model = json.loads(models.get(keys[0], "{}")).get("model", "?") if keys else "?"
    try:
        _refusal(batch, model)
    except (TokenLimitExceeded, TeacherConfigError) as exc:
        cache.close_batch(batch_id, f"refused:{_errors_of(batch)[0][0]}")
        raise exc from None
    rows = (await _read_file(client, batch.output_file_id, endpoint)
            + await _read_file(client, batch.error_file_id, endpoint))
    if fail_fast and rows and (message := _common_config_error(rows, models)):
        cache.close_batch(batch_id, "collected:config_error")
        raise TeacherConfigError(message)
    done: dict[str, CachedResponse] = {}
    failed = {k: f"no line for this id in batch {batch_id} (status {batch.status})" for k in keys}
    unprocessed: dict[str, str] = {}
    for row in rows:
        key = row.get("custom_id")
        if key not in failed:
            continue
        response = row.get("response") or {}
        if row.get("error") or response.get("status_code") != 200:
            detail = row.get("error") or (response.get("body") or {}).get("error") or response.get("status_code")
            if isinstance(detail, dict) and detail.get("code") in UNPROCESSED_CODES:
                unprocessed[key] = f"batch {batch_id}: {detail.get('code')}"
                del failed[key]
                continue
            failed[key] = f"batch {batch_id}: {json.dumps(detail)[:300]}"
            continue
        try:
            out = classify_response(response.get("body") or {})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            failed[key] = f"batch {batch_id}: malformed body: {exc}"
            continue
        sent_json = models[key]
        stop, stop_sent = (stops or {}).get(key, (None, True))
        out = cut_client_side(stop, stop_sent, out)
        rec = CachedResponse(key, json.loads(sent_json).get("model", "?"), sent_json, out.status, out.text,
                             out.finish_reason, out.prompt_tokens, out.completion_tokens, None, 1,
                             f"batch:{batch_id}", reasoning_tokens=out.reasoning_tokens)
        cache.put(rec)
        done[key] = rec
        del failed[key]
        stats["prompt_tokens"] += out.prompt_tokens
        stats["completion_tokens"] += out.completion_tokens
        stats["spent_usd"] += prices.cost(out.prompt_tokens, out.completion_tokens)
    if batch.status in ("expired", "cancelled"):     # lines it never reached: no line in either file
        for k in [k for k, why in failed.items() if why.startswith("no line")]:
            unprocessed[k] = f"batch {batch_id}: never run ({batch.status})"
            del failed[k]
    cache.close_batch(batch_id, f"collected:{batch.status}")
    return Collected(batch.status, done, failed, unprocessed)


def _common_config_error(rows: list[dict], models: dict[str, str]) -> str | None:
    """The one-line configuration error shared by every line of a batch, or None."""
    messages = set()
    for row in rows:
        response = row.get("response") or {}
        if response.get("status_code") == 200 and not row.get("error"):
            return None
        error = (response.get("body") or {}).get("error") or row.get("error") or {}
        sent_json = models.get(row.get("custom_id"), "{}")
        model = json.loads(sent_json).get("model", "?")
        message = config_error_message(model, response.get("status_code"), error if isinstance(error, dict)
                                       else {})
        if message is None:
            return None
        messages.add(message)
    return messages.pop() if len(messages) == 1 else None


async def run_batches(todo, endpoint: TeacherEndpointParams, cache: ResponseCache, client, stats: dict, prices,
                      max_cost_usd, progress: bool, desc: str) -> dict[str, CachedResponse]:
    from tqdm.auto import tqdm

    by_key = {r.key: r for r in todo}
    models = {r.key: request_json(r) for r in todo}
    stops = {k: (r.stop, sends_stop(r)) for k, r in by_key.items()}
    fresh: dict[str, CachedResponse] = {}
    attempts: dict[str, int] = {k: 0 for k in by_key}
    never_run: dict[str, int] = {k: 0 for k in by_key}     # re-queues of lines a batch never ran
    last_error: dict[str, str] = {}
    bar = tqdm(total=len(by_key), desc=f"{desc} (batch)", disable=not progress, unit="req")
    stats.update(batches=0, batch_failed_lines=0, batches_refused=0, batches_expired=0, batches_cancelled=0,
                 max_enqueued_tokens=0, max_in_flight=0, requeued_unprocessed=0)
    poll_s = endpoint.batch_poll_interval_s

    def settle(keys: list[str], got: Collected) -> list[str]:
        """Book one ended batch; return its keys to re-queue (failed within their rounds, or never run)."""
        fresh.update({k: v for k, v in got.done.items() if k in by_key})
        last_error.update(got.failed)
        last_error.update(got.unprocessed)
        stats["batch_failed_lines"] += len(got.failed)
        stats["batches_expired"] += got.status == "expired"
        stats["batches_cancelled"] += got.status == "cancelled"
        again = []
        for k in keys:
            if k not in by_key or k in got.done:
                continue
            if k in got.unprocessed:
                never_run[k] += 1
                if never_run[k] <= endpoint.batch_max_rounds:   # bounded: a batch that keeps expiring ends
                    stats["requeued_unprocessed"] += 1
                    again.append(k)
                    continue
            attempts[k] += 1
            if attempts[k] < endpoint.batch_max_rounds:
                again.append(k)
        for k in keys:
            if k in got.done and k in by_key:
                attempts[k] += 1
        bar.update(len([k for k in got.done if k in by_key]))
        return again

    # 1. Batches a killed run already submitted: collect them, never submit them twice.
    for batch_id, requests in cache.open_batches().items():
        keys = list(requests)
        for k, sent_json in requests.items():
            models.setdefault(k, sent_json)
        try:
            got = await _collect(client, batch_id, keys, models, cache, poll_s, stats, prices, endpoint,
                                 stops=stops)
        except TokenLimitExceeded:
            stats["batches_refused"] += 1                 # its keys are still pending: sent below
            continue
        settle(keys, got)
    # 2. A rolling window over what is still pending.
    est = {k: prompt_tokens_of(r.messages) for k, r in by_key.items()}          # OpenAI counts prompt tokens
    size = {k: len(_line(r).encode()) + 1 for k, r in by_key.items()}
    queue = deque(k for k in by_key if k not in fresh and attempts[k] < endpoint.batch_max_rounds)
    in_flight: dict[asyncio.Task, tuple[list[str], int, float]] = {}
    enqueued, reserved_usd, first = 0, 0.0, True
    blocked, refused_alone, last_refusal = False, 0, ""
    limit = endpoint.batch_max_enqueued_tokens
    target = min(endpoint.batch_target_tokens, limit)
    max_lines = min(endpoint.batch_max_requests, MAX_FILE_LINES)
    max_bytes = min(int(endpoint.batch_max_file_mb * 1_000_000), MAX_FILE_BYTES)

    def next_chunk() -> list[str]:
        chunk, tokens, nbytes = [], 0, 0
        for k in queue:
            if chunk and (tokens + est[k] > target or len(chunk) >= max_lines or nbytes + size[k] > max_bytes):
                break
            chunk.append(k)
            tokens += est[k]
            nbytes += size[k]
        return chunk

    try:
        while queue or in_flight:
            while queue and not blocked:
                chunk = next_chunk()
                tokens = sum(est[k] for k in chunk)
                if in_flight and enqueued + tokens > limit:
                    break
                worst = sum(prices.cost(est[k], by_key[k].max_tokens) for k in chunk)
                if max_cost_usd is not None and stats["spent_usd"] + reserved_usd + worst > max_cost_usd + 1e-12:
                    stats["stopped_by_cost"] = True
                    queue.clear()
                    break
                try:
                    batch_id = await _submit(client, [by_key[k] for k in chunk], cache, stats["batches"] + 1,
                                             endpoint)
                except TokenLimitExceeded as exc:      # refused at create: the chunk stays at the queue's head
                    stats["batches_refused"] += 1
                    blocked, last_refusal = True, str(exc)
                    break
                for _ in chunk:
                    queue.popleft()
                enqueued += tokens
                reserved_usd += worst
                stats["batches"] += 1
                stats["sent"] += len(chunk)
                task = asyncio.ensure_future(_collect(client, batch_id, chunk, models, cache, poll_s, stats,
                                                      prices, endpoint, fail_fast=first, stops=stops))
                in_flight[task] = (chunk, tokens, worst)
                stats["max_enqueued_tokens"] = max(stats["max_enqueued_tokens"], enqueued)
                stats["max_in_flight"] = max(stats["max_in_flight"], len(in_flight))
                if first:          # the first batch is checked on its own before more money is committed
                    break
            if not in_flight:
                if blocked:        # refused with nothing of ours in flight: someone else's batches hold the limit
                    refused_alone += 1
                    if refused_alone > endpoint.batch_token_limit_retries:
                        chunk = next_chunk()
                        raise TeacherConfigError(
                            f"model {by_key[chunk[0]].model!r}: the Batch API refused a batch of "
                            f"{sum(est[k] for k in chunk):,} prompt tokens with token_limit_exceeded "
                            f"{refused_alone} times with none of ours in flight ({' '.join(last_refusal.split())[:200]}"
                            f"): lower the endpoint's `batch_max_enqueued_tokens` and `batch_target_tokens` to your "
                            f"organization's enqueued-token limit for this model (Limits page), or wait for its "
                            f"other batches to finish; answers so far are cached") from None
                    await asyncio.sleep(poll_s)
                    blocked = False
                continue
            finished, _ = await asyncio.wait(list(in_flight), return_when=asyncio.FIRST_COMPLETED)
            refused_now = []
            for task in finished:
                keys, tokens, worst = in_flight.pop(task)
                enqueued -= tokens
                reserved_usd -= worst
                try:
                    got = task.result()            # a TeacherConfigError (another code, the first batch) stops here
                except TokenLimitExceeded as exc:  # refused on a poll: nothing lost, no round spent
                    stats["batches_refused"] += 1
                    refused_now.append(keys)
                    last_refusal = str(exc)
                    continue
                first = False
                blocked, refused_alone = False, 0        # one of ours ended: the budget has room again
                queue.extend(settle(keys, got))
                bar.set_postfix(tok=stats["prompt_tokens"] + stats["completion_tokens"],
                                usd=f"{stats['spent_usd']:.4f}", failed=stats["batch_failed_lines"],
                                in_flight=len(in_flight), refresh=False)
            for keys in reversed(refused_now):
                queue.extendleft(reversed(keys))
            if refused_now:
                blocked = True     # wait for another of ours to end (none in flight: a poll interval, above)
    finally:
        for task in in_flight:
            task.cancel()
    # 3. Whatever is still unanswered after the last round is recorded as an error.
    for k, r in by_key.items():
        if k not in fresh and attempts[k] >= endpoint.batch_max_rounds:
            rec = CachedResponse(k, r.model, models[k], "error", "", None, 0, 0,
                                 last_error.get(k, "unanswered"), attempts[k], "batch")
            cache.put(rec)
            fresh[k] = rec
            bar.update(1)
    bar.close()
    return fresh
