"""Batch mode of the teacher client: the OpenAI Batch API (half price, results within 24 h), into the same cache.

Requests are split into batch files (each under `batch_max_enqueued_tokens`, counting prompt + max_tokens, and
`batch_max_requests` lines), each line's `custom_id` being the request key. Submission is a rolling window: batches
are submitted while the tokens of this run's in-flight batches stay under `batch_max_enqueued_tokens` (OpenAI's
per-model enqueued-token limit: a 5M-request stage submitted at once would fail most of its batches), then polled,
collected, and more submitted as each one ends. A batch the server refuses with `token_limit_exceeded` goes back to
the queue until one of ours ends (or, with none in flight, after a poll interval; repeated, that is a one-line
error naming `batch_max_enqueued_tokens`).

Each batch is recorded in the cache's `batches` table before polling, so a killed run resumes polling the batches
it already paid for instead of submitting them again. When a batch ends, BOTH its output and its error file are
read and every line is checked: a `completed` batch can hold only failures. Answers go to the cache one record per
transaction; failed or missing ids are re-queued, and after `batch_max_rounds` batches they are recorded with status
`error`. When the first batch's lines all fail with the same configuration error (unknown or retired model, a
parameter the model rejects), the run stops with that error and caches nothing: every other line would fail too.
Control-plane calls (upload, create, poll, download) are retried with backoff on 429, 5xx and connection errors,
up to `control_retries`.
"""
from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from typing import Sequence

from ..schemas import TeacherEndpointParams
from .cache import CachedResponse, ResponseCache
from .protocol import (TeacherConfigError, backoff, classify_response, config_error_message, prompt_tokens_of,
                       request_body, request_json, retry_after, short_error)

__all__ = ["run_batches", "chunk_requests"]

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def chunk_requests(todo: Sequence, max_tokens: int, max_requests: int, est_tokens) -> list[list]:
    """Consecutive chunks under both caps (a single request above the token cap gets its own chunk)."""
    chunks, current, tokens = [], [], 0
    for r in todo:
        t = est_tokens(r)
        if current and (tokens + t > max_tokens or len(current) >= max_requests):
            chunks.append(current)
            current, tokens = [], 0
        current.append(r)
        tokens += t
    if current:
        chunks.append(current)
    return chunks


def _line(req) -> str:
    return json.dumps({"custom_id": req.key, "method": "POST", "url": "/v1/chat/completions",
                       "body": request_body(req)}, ensure_ascii=False)


class TokenLimitExceeded(RuntimeError):
    """The server refused a batch: the model's enqueued-token limit would be passed."""


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
    payload = ("\n".join(_line(r) for r in chunk) + "\n").encode()
    uploaded = await _control(lambda: client.files.create(file=(f"teacher_round{round_no}.jsonl", payload),
                                                          purpose="batch"), endpoint, "file upload")
    batch = await _control(lambda: client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
        metadata={"source": "orca-notebooks"}), endpoint, "batch create")
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    if batch.status == "failed" and any(getattr(e, "code", None) == "token_limit_exceeded" for e in errors):
        raise TokenLimitExceeded(getattr(errors[0], "message", "token_limit_exceeded"))
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


async def _collect(client, batch_id: str, keys: list[str], models: dict[str, str], cache, poll_s,
                   stats, prices, endpoint: TeacherEndpointParams,
                   fail_fast: bool = False) -> tuple[dict[str, CachedResponse], dict[str, str]]:
    """Poll one batch, store every answered line; return (records, {failed key: reason}).

    With `fail_fast`, a batch whose every line failed with one configuration error raises `TeacherConfigError`
    before anything of it is stored.
    """
    batch = await _wait(client, batch_id, poll_s, endpoint)
    rows = (await _read_file(client, batch.output_file_id, endpoint)
            + await _read_file(client, batch.error_file_id, endpoint))
    if fail_fast and rows and (message := _common_config_error(rows, models)):
        cache.close_batch(batch_id, "collected:config_error")
        raise TeacherConfigError(message)
    done: dict[str, CachedResponse] = {}
    failed = {k: f"no line for this id in batch {batch_id} (status {batch.status})" for k in keys}
    for row in rows:
        key = row.get("custom_id")
        if key not in failed:
            continue
        response = row.get("response") or {}
        if row.get("error") or response.get("status_code") != 200:
            detail = row.get("error") or (response.get("body") or {}).get("error") or response.get("status_code")
            failed[key] = f"batch {batch_id}: {json.dumps(detail)[:300]}"
            continue
        try:
            status, text, reason, pt, ct = classify_response(response.get("body") or {})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            failed[key] = f"batch {batch_id}: malformed body: {exc}"
            continue
        sent_json = models[key]
        model = json.loads(sent_json).get("model", "?")
        rec = CachedResponse(key, model, sent_json, status, text, reason, pt, ct, None, 1, f"batch:{batch_id}")
        cache.put(rec)
        done[key] = rec
        del failed[key]
        stats["prompt_tokens"] += pt
        stats["completion_tokens"] += ct
        stats["spent_usd"] += prices.cost(pt, ct)
    cache.close_batch(batch_id, f"collected:{batch.status}")
    return done, failed


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
    fresh: dict[str, CachedResponse] = {}
    attempts: dict[str, int] = {k: 0 for k in by_key}
    last_error: dict[str, str] = {}
    bar = tqdm(total=len(by_key), desc=f"{desc} (batch)", disable=not progress, unit="req")
    stats.update(batches=0, batch_failed_lines=0, batches_refused_token_limit=0, max_enqueued_tokens=0)
    poll_s = endpoint.batch_poll_interval_s
    # 1. Batches a killed run already submitted: collect them, never submit them twice.
    for batch_id, requests in cache.open_batches().items():
        keys = list(requests)
        for k, sent_json in requests.items():
            models.setdefault(k, sent_json)
        done, failed = await _collect(client, batch_id, keys, models, cache, poll_s, stats, prices, endpoint)
        fresh.update({k: v for k, v in done.items() if k in by_key})
        for k in keys:
            if k in by_key:
                attempts[k] += 1
        last_error.update(failed)
        bar.update(len([k for k in done if k in by_key]))
    # 2. A rolling window over what is still pending.
    est = {k: prompt_tokens_of(r.messages) + r.max_tokens for k, r in by_key.items()}
    queue = deque(k for k in by_key if k not in fresh and attempts[k] < endpoint.batch_max_rounds)
    in_flight: dict[asyncio.Task, tuple[list[str], int, float]] = {}
    enqueued, reserved_usd, refusals, first = 0, 0.0, 0, True
    limit = endpoint.batch_max_enqueued_tokens

    def next_chunk() -> list[str]:
        chunk, tokens = [], 0
        for k in queue:
            if chunk and (tokens + est[k] > limit or len(chunk) >= endpoint.batch_max_requests):
                break
            chunk.append(k)
            tokens += est[k]
        return chunk

    try:
        while queue or in_flight:
            while queue:
                chunk = next_chunk()
                tokens = sum(est[k] for k in chunk)
                if in_flight and enqueued + tokens > limit:
                    break
                worst = sum(prices.cost(prompt_tokens_of(by_key[k].messages), by_key[k].max_tokens) for k in chunk)
                if max_cost_usd is not None and stats["spent_usd"] + reserved_usd + worst > max_cost_usd + 1e-12:
                    stats["stopped_by_cost"] = True
                    queue.clear()
                    break
                try:
                    batch_id = await _submit(client, [by_key[k] for k in chunk], cache, stats["batches"] + 1,
                                             endpoint)
                except TokenLimitExceeded as exc:
                    stats["batches_refused_token_limit"] += 1
                    refusals = refusals + 1 if not in_flight else 0
                    if refusals > 3:
                        raise TeacherConfigError(f"model {by_key[chunk[0]].model!r}: the server refused a batch "
                                                 f"of {tokens:,} tokens with nothing else of ours in flight "
                                                 f"({exc}): lower the endpoint's `batch_max_enqueued_tokens`"
                                                 ) from None
                    if not in_flight:
                        await asyncio.sleep(poll_s)
                    break
                for _ in chunk:
                    queue.popleft()
                refusals = 0
                enqueued += tokens
                reserved_usd += worst
                stats["batches"] += 1
                stats["sent"] += len(chunk)
                stats["max_enqueued_tokens"] = max(stats["max_enqueued_tokens"], enqueued)
                task = asyncio.ensure_future(_collect(client, batch_id, chunk, models, cache, poll_s, stats,
                                                      prices, endpoint, fail_fast=first))
                in_flight[task] = (chunk, tokens, worst)
                if first:          # the first batch is checked on its own before more money is committed
                    break
            if not in_flight:
                continue
            finished, _ = await asyncio.wait(list(in_flight), return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                keys, tokens, worst = in_flight.pop(task)
                enqueued -= tokens
                reserved_usd -= worst
                done, failed = task.result()          # a TeacherConfigError from the first batch stops here
                first = False
                for k in keys:
                    attempts[k] += 1
                fresh.update(done)
                last_error.update(failed)
                stats["batch_failed_lines"] += len(failed)
                queue.extend(k for k in keys if k in failed and attempts[k] < endpoint.batch_max_rounds)
                bar.update(len(done))
                bar.set_postfix(tok=stats["prompt_tokens"] + stats["completion_tokens"],
                                usd=f"{stats['spent_usd']:.4f}", failed=stats["batch_failed_lines"],
                                in_flight=len(in_flight), refresh=False)
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
