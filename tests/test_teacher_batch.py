"""Batch mode round trips against the local server's Batch API: re-queued failures, failure-only batches, resume."""
from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import openai

from orca_utils.teacher.local_server import Completion, ServerFault, serve_openai_compatible
from orca_utils.teacher.cache import ResponseCache
from orca_utils.schemas import TeacherEndpointParams
from orca_utils.teacher import ChatRequest, complete_chats
from orca_utils.teacher.batch import _submit, chunk_requests


class FlakyBatchBackend:
    """`fail1:*` fails its first call, `fail:*` always fails; counts batch calls and request calls."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.lock = threading.Lock()
        self.batch_sizes: list[int] = []

    def complete(self, messages, max_tokens, temperature, stop):
        content = messages[-1]["content"]
        with self.lock:
            self.calls[content] += 1
            n = self.calls[content]
        if content.startswith("fail:") or (content.startswith("fail1:") and n == 1):
            raise ServerFault(500, {"error": {"message": "injected"}})
        if content.startswith("trunc:"):
            return Completion("partial", "length", 4, max_tokens)
        return Completion(f"batch answer {content}", "stop", 4, 2)


def _endpoint(base_url, **kw):
    return TeacherEndpointParams(**{**dict(base_url=base_url, batch_mode=True, batch_poll_interval_s=0.02,
                                           batch_max_rounds=3, batch_max_enqueued_tokens=10_000), **kw})


def _requests(contents):
    return [ChatRequest(f"id{i}", "m", [{"role": "user", "content": c}], 8, 0.0, ["###"])
            for i, c in enumerate(contents)]


def test_batch_round_trip_requeues_failures_and_checks_every_line(tmp_path):
    backend = FlakyBatchBackend()
    contents = ["ok:0", "fail1:1", "ok:2", "trunc:3", "fail:4"]
    with serve_openai_compatible({"m": backend}) as base_url:
        app_state = serve_openai_compatible.last_app.state.orca
        run = complete_chats(_requests(contents), _endpoint(base_url), tmp_path / "c.sqlite", progress=False)
        assert [r.status for r in run.results] == ["ok", "ok", "ok", "truncated", "error"]
        assert run.results[1].text == "batch answer fail1:1"
        assert "injected" in run.results[4].error and run.results[4].attempts == 3
        # round 1: 5 lines; round 2: the two failures; round 3: the permanent failure
        assert run.stats["batches"] == 3 and run.stats["sent"] == 5 + 2 + 1
        assert backend.calls["fail:4"] == 3 and backend.calls["ok:0"] == 1
        assert len(app_state.batches) == 3
        # custom_ids are unique in every uploaded batch file, and max_tokens/stop went out explicitly
        for f in app_state.files.values():
            if f["purpose"] == "batch":
                lines = [json.loads(x) for x in f["content"].decode().splitlines()]
                assert len({x["custom_id"] for x in lines}) == len(lines)
                assert all(x["body"]["max_tokens"] == 8 and x["body"]["stop"] == ["###"] for x in lines)
        again = complete_chats(_requests(contents[:4]), _endpoint(base_url), tmp_path / "c.sqlite", progress=False)
        assert again.stats["sent"] == 0 and len(app_state.batches) == 3


def test_completed_batch_holding_only_failures_is_not_taken_for_success(tmp_path):
    backend = FlakyBatchBackend()
    contents = [f"fail1:{i}" for i in range(4)]
    with serve_openai_compatible({"m": backend}) as base_url:
        state = serve_openai_compatible.last_app.state.orca
        run = complete_chats(_requests(contents), _endpoint(base_url), tmp_path / "c.sqlite", progress=False)
        first = min(state.batches.values(), key=lambda b: b["created_at"])
    # The first batch reported `completed` with no output file at all: every line failed.
    completed_only_failures = [b for b in state.batches.values()
                               if b["status"] == "completed" and b["output_file_id"] is None]
    assert completed_only_failures and first["request_counts"]["failed"] == 4
    assert [r.status for r in run.results] == ["ok"] * 4 and run.stats["batches"] == 2


def test_enqueued_token_cap_splits_batches(tmp_path):
    reqs = _requests([f"ok:{i}" for i in range(10)])
    chunks = chunk_requests(reqs, max_tokens=40, max_requests=100, est_tokens=lambda r: 12)
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    assert [len(c) for c in chunk_requests(reqs, 10_000, 4, lambda r: 1)] == [4, 4, 2]
    backend = FlakyBatchBackend()
    with serve_openai_compatible({"m": backend}) as base_url:
        run = complete_chats(reqs, _endpoint(base_url, batch_max_enqueued_tokens=40), tmp_path / "c.sqlite",
                             progress=False)
    assert run.stats["batches"] > 1 and all(r.status == "ok" for r in run.results)


def test_a_batch_submitted_by_a_killed_run_is_collected_not_resubmitted(tmp_path):
    backend = FlakyBatchBackend()
    reqs = _requests([f"ok:{i}" for i in range(3)])
    cache_path = tmp_path / "c.sqlite"
    with serve_openai_compatible({"m": backend}) as base_url:
        state = serve_openai_compatible.last_app.state.orca

        async def submit_then_die():
            client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
            with ResponseCache(cache_path) as cache:
                return await _submit(client, reqs, cache, 1, _endpoint(base_url))

        batch_id = asyncio.run(submit_then_die())
        with ResponseCache(cache_path) as cache:
            assert list(cache.open_batches()) == [batch_id] and len(cache) == 0
        run = complete_chats(reqs, _endpoint(base_url), cache_path, progress=False)
        assert list(state.batches) == [batch_id], "a new batch was submitted for requests already paid for"
    assert [r.status for r in run.results] == ["ok"] * 3 and run.stats["sent"] == 0
    with ResponseCache(cache_path) as cache:
        assert cache.open_batches() == {}
