"""Batch mode of the teacher client: the OpenAI Batch API (half price, results within 24 h), into the same cache.

Per round: the pending requests are split into batch files (each under `batch_max_enqueued_tokens`, counting prompt
+ max_tokens, and `batch_max_requests` lines), each line's `custom_id` being the request key (unique per distinct
request). Each file is uploaded, a batch created and recorded in the cache's `batches` table before polling, so a
killed run resumes polling the batches it already paid for instead of submitting them again. When a batch ends,
BOTH its output file and its error file are read and every line is checked: a batch whose status is `completed` can
hold only failures. Answers go to the cache one record per transaction; failed or missing ids are re-queued for the
next round, and after `batch_max_rounds` they are recorded with status `error`.
"""
from __future__ import annotations

import asyncio
import json
from typing import Sequence

from .response_cache import CachedResponse, ResponseCache
from .schemas import TeacherEndpointParams

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
    body = {"model": req.model, "messages": req.messages, "max_tokens": req.max_tokens,
            "temperature": req.temperature}
    if req.stop:
        body["stop"] = list(req.stop)
    return json.dumps({"custom_id": req.key, "method": "POST", "url": "/v1/chat/completions", "body": body},
                      ensure_ascii=False)


async def _submit(client, chunk, cache: ResponseCache, round_no: int) -> str:
    payload = ("\n".join(_line(r) for r in chunk) + "\n").encode()
    uploaded = await client.files.create(file=(f"teacher_round{round_no}.jsonl", payload), purpose="batch")
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h", metadata={"source": "orca-notebooks"})
    from .teacher import _request_json

    cache.add_batch(batch.id, {r.key: _request_json(r) for r in chunk})    # recorded before polling: a killed run finds it again
    return batch.id


async def _wait(client, batch_id: str, poll_s: float):
    while True:
        batch = await client.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
        await asyncio.sleep(poll_s)


async def _read_file(client, file_id: str | None) -> list[dict]:
    if not file_id:
        return []
    content = await client.files.content(file_id)
    rows = []
    for line in content.text.splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue      # a malformed line: its id stays unanswered and is re-queued
    return rows


async def _collect(client, batch_id: str, keys: list[str], models: dict[str, str], cache, poll_s,
                   stats, prices) -> tuple[dict[str, CachedResponse], dict[str, str]]:
    """Poll one batch, store every answered line; return (records, {failed key: reason})."""
    from .teacher import classify_response

    batch = await _wait(client, batch_id, poll_s)
    rows = await _read_file(client, batch.output_file_id) + await _read_file(client, batch.error_file_id)
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
        request_json = models[key]
        model = json.loads(request_json).get("model", "?")
        rec = CachedResponse(key, model, request_json, status, text, reason, pt, ct, None, 1, f"batch:{batch_id}")
        cache.put(rec)
        done[key] = rec
        del failed[key]
        stats["prompt_tokens"] += pt
        stats["completion_tokens"] += ct
        stats["spent_usd"] += prices.cost(pt, ct)
    cache.close_batch(batch_id, f"collected:{batch.status}")
    return done, failed


async def run_batches(todo, endpoint: TeacherEndpointParams, cache: ResponseCache, client, stats: dict, prices,
                      max_cost_usd, progress: bool, desc: str) -> dict[str, CachedResponse]:
    from tqdm.auto import tqdm

    from .teacher import _request_json, prompt_tokens_of

    by_key = {r.key: r for r in todo}
    models = {r.key: _request_json(r) for r in todo}
    fresh: dict[str, CachedResponse] = {}
    attempts: dict[str, int] = {k: 0 for k in by_key}
    last_error: dict[str, str] = {}
    bar = tqdm(total=len(by_key), desc=f"{desc} (batch)", disable=not progress, unit="req")
    stats.update(batches=0, batch_failed_lines=0)
    # 1. Batches a killed run already submitted: collect them, never submit them twice.
    for batch_id, requests in cache.open_batches().items():
        keys = list(requests)
        mine = [k for k in keys if k in by_key]
        for k, request_json in requests.items():
            models.setdefault(k, request_json)
        done, failed = await _collect(client, batch_id, keys, models, cache, endpoint.batch_poll_interval_s,
                                      stats, prices)
        fresh.update({k: v for k, v in done.items() if k in by_key})
        for k in mine:
            attempts[k] += 1
        last_error.update(failed)
        bar.update(len([k for k in done if k in by_key]))
    # 2. Rounds over what is still pending.
    for round_no in range(1, endpoint.batch_max_rounds + 1):
        pending = [by_key[k] for k in by_key if k not in fresh and attempts[k] < endpoint.batch_max_rounds]
        if not pending:
            break
        est = lambda r: prompt_tokens_of(r.messages) + r.max_tokens
        if max_cost_usd is not None:
            worst = sum(prices.cost(prompt_tokens_of(r.messages), r.max_tokens) for r in pending)
            if stats["spent_usd"] + worst > max_cost_usd + 1e-12:
                stats["stopped_by_cost"] = True
                break
        chunks = chunk_requests(pending, endpoint.batch_max_enqueued_tokens, endpoint.batch_max_requests, est)
        ids = []
        for chunk in chunks:
            ids.append((await _submit(client, chunk, cache, round_no), [r.key for r in chunk]))
            stats["batches"] += 1
            stats["sent"] += len(chunk)
        results = await asyncio.gather(*(_collect(client, b, keys, models, cache, endpoint.batch_poll_interval_s,
                                                  stats, prices) for b, keys in ids))
        for (_, keys), (done, failed) in zip(ids, results):
            for k in keys:
                attempts[k] += 1
            fresh.update(done)
            last_error.update(failed)
            stats["batch_failed_lines"] += len(failed)
            bar.update(len(done))
            bar.set_postfix(tok=stats["prompt_tokens"] + stats["completion_tokens"],
                            usd=f"{stats['spent_usd']:.4f}", failed=stats["batch_failed_lines"], refresh=False)
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
