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


# ---- OpenAI's asynchronous Batch behaviour, against a fake client built from the documented Batch object --------
# Batch object (https://platform.openai.com/docs/api-reference/batch/object): `status` validating -> in_progress ->
# finalizing -> completed | failed | expired | cancelled; `errors.data[i]` {code, message, param, line} for a batch
# that failed validation (e.g. `token_limit_exceeded`: the model's enqueued prompt tokens would pass the
# organization's limit); `output_file_id` / `error_file_id`; an expired batch keeps what it finished and writes the
# rest to its error file with code `batch_expired` (Batch API FAQ: "remaining work is cancelled and any already
# completed work is returned").
from types import SimpleNamespace

import pytest

from orca_utils.teacher import TeacherConfigError, run_chat_async


class FakeBatchAPI:
    """An `openai.AsyncOpenAI` stand-in with `files` and `batches`; `plan[n]` scripts the n-th batch created:
    "ok", "token_limit" (fails on its first poll), "code:<code>" (fails on its first poll with that code),
    "expire:<k>" (answers its first k lines, then expires). Batches end after `polls` retrieves."""

    def __init__(self, plan=(), polls=2):
        self.plan, self.polls = list(plan), polls
        self.files_store: dict[str, bytes] = {}
        self.batches_store: dict[str, dict] = {}
        self.in_flight = self.max_in_flight = 0
        self.created = 0
        self.files = SimpleNamespace(create=self._file_create, content=self._file_content)
        self.batches = SimpleNamespace(create=self._batch_create, retrieve=self._batch_retrieve)

    async def _file_create(self, file, purpose):
        fid = f"file-{len(self.files_store)}"
        self.files_store[fid] = file[1]
        return SimpleNamespace(id=fid, object="file", purpose=purpose, bytes=len(file[1]))

    async def _file_content(self, file_id):
        return SimpleNamespace(text=self.files_store[file_id].decode())

    async def _batch_create(self, input_file_id, endpoint, completion_window, metadata=None):
        bid = f"batch_{self.created}"
        kind = self.plan[self.created] if self.created < len(self.plan) else "ok"
        self.created += 1
        self.batches_store[bid] = {"input": input_file_id, "kind": kind, "polls": 0, "status": "validating"}
        if kind == "token_limit_at_create":      # refused at once: the Batch object comes back `failed`
            self.batches_store[bid].update(status="failed", errors=[("token_limit_exceeded", "Enqueued token "
                                                                     "limit reached.")])
            return self._object(bid)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self._object(bid)

    def _object(self, bid):
        b = self.batches_store[bid]
        errors = None
        if b.get("errors"):
            errors = SimpleNamespace(object="list", data=[SimpleNamespace(code=c, message=m, param=None, line=None)
                                                          for c, m in b["errors"]])
        return SimpleNamespace(id=bid, object="batch", endpoint="/v1/chat/completions", status=b["status"],
                               input_file_id=b["input"], output_file_id=b.get("output"),
                               error_file_id=b.get("error"), errors=errors)

    def _finish(self, bid):
        b = self.batches_store[bid]
        self.in_flight -= 1
        kind = b["kind"]
        lines = [json.loads(x) for x in self.files_store[b["input"]].decode().splitlines()]
        if kind == "token_limit":
            b.update(status="failed", errors=[("token_limit_exceeded", "Enqueued token limit reached for m in "
                                               "organization org-x. Limit: 90,000 enqueued tokens.")])
            return
        if kind.startswith("code:"):
            b.update(status="failed", errors=[(kind[5:], "The custom_id for this request is a duplicate.")])
            return
        answered = len(lines) if kind == "ok" else int(kind.split(":")[1])
        out, err = [], []
        for i, line in enumerate(lines):
            if i < answered:
                content = line["body"]["messages"][-1]["content"]
                body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "model": line["body"]["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {content}"},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
                out.append({"id": f"req_{i}", "custom_id": line["custom_id"],
                            "response": {"status_code": 200, "request_id": f"r{i}", "body": body}, "error": None})
            else:
                err.append({"id": f"req_{i}", "custom_id": line["custom_id"], "response": None,
                            "error": {"code": "batch_expired",
                                      "message": "This request could not be executed before the completion window "
                                                 "expired."}})
        for name, rows in (("output", out), ("error", err)):
            if rows:
                fid = f"file-{len(self.files_store)}"
                self.files_store[fid] = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
                b[name] = fid
        b["status"] = "completed" if kind == "ok" else "expired"

    async def _batch_retrieve(self, batch_id):
        b = self.batches_store[batch_id]
        if b["status"] in ("validating", "in_progress"):
            b["polls"] += 1
            b["status"] = "in_progress"
            if b["polls"] >= self.polls:
                self._finish(batch_id)
        await asyncio.sleep(0)
        return self._object(batch_id)


def _fake_run(tmp_path, fake, contents, **kw):
    endpoint = _endpoint("https://api.example.com/v1", check_models=False, **kw)

    async def main():
        with ResponseCache(tmp_path / "c.sqlite") as cache:
            return await run_chat_async(_requests(contents), endpoint, cache, progress=False, client=fake)

    return asyncio.run(main())


def test_token_limit_refusal_on_poll_is_resubmitted_without_spending_a_round(tmp_path):
    fake = FakeBatchAPI(plan=["token_limit"])
    run = _fake_run(tmp_path, fake, [f"ok:{i}" for i in range(4)], batch_max_rounds=1)
    assert [r.status for r in run.results] == ["ok"] * 4, "a refused batch lost requests or spent their round"
    assert [r.text for r in run.results] == [f"answer ok:{i}" for i in range(4)]
    assert run.stats["batches_refused"] == 1 and fake.created == 2
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.open_batches() == {}


def test_token_limit_refusal_at_create_waits_for_our_batches_and_loses_nothing(tmp_path):
    fake = FakeBatchAPI(plan=["ok", "token_limit_at_create", "ok", "ok"], polls=3)
    run = _fake_run(tmp_path, fake, [f"ok:{i}" for i in range(9)], batch_max_rounds=1, batch_target_tokens=25)
    assert [r.status for r in run.results] == ["ok"] * 9
    assert run.stats["batches_refused"] == 1 and run.stats["batches"] == 3 and fake.created == 4


def test_token_limit_refusals_with_nothing_in_flight_end_in_one_line_naming_the_param(tmp_path):
    fake = FakeBatchAPI(plan=["token_limit"] * 10)
    with pytest.raises(TeacherConfigError, match="batch_max_enqueued_tokens") as err:
        _fake_run(tmp_path, fake, ["ok:0"], batch_token_limit_retries=2)
    assert "\n" not in str(err.value) and fake.created == 3


def test_another_batch_failure_code_stops_with_one_line_naming_it(tmp_path):
    fake = FakeBatchAPI(plan=["code:duplicate_custom_id"])
    with pytest.raises(TeacherConfigError, match="duplicate_custom_id") as err:
        _fake_run(tmp_path, fake, [f"ok:{i}" for i in range(3)])
    assert "\n" not in str(err.value) and "duplicate" in str(err.value)
    assert fake.created == 1


def test_several_batches_in_flight_under_a_budget_that_allows_them(tmp_path):
    fake = FakeBatchAPI(polls=4)
    contents = [f"ok:{i}" for i in range(12)]
    # each request: 1 + 4 + 3 = 8 prompt tokens (chars/4); 3 requests per batch file, a budget for all at once
    run = _fake_run(tmp_path, fake, contents, batch_target_tokens=25, batch_max_enqueued_tokens=10_000)
    assert all(r.status == "ok" for r in run.results)
    assert fake.created == 4 and fake.max_in_flight > 1 and run.stats["max_in_flight"] > 1
    # the budget counts prompt tokens only (OpenAI's enqueued-token limit): max_tokens is not reserved
    assert run.stats["max_enqueued_tokens"] <= 10_000


def test_in_flight_prompt_tokens_stay_under_the_budget(tmp_path):
    fake = FakeBatchAPI(polls=3)
    run = _fake_run(tmp_path, fake, [f"ok:{i}" for i in range(12)], batch_target_tokens=25,
                    batch_max_enqueued_tokens=50)
    assert all(r.status == "ok" for r in run.results)
    assert run.stats["max_enqueued_tokens"] <= 50 and 1 < fake.max_in_flight <= 2


def test_expired_batch_keeps_its_partial_output_and_requeues_the_rest(tmp_path):
    fake = FakeBatchAPI(plan=["expire:2"])
    run = _fake_run(tmp_path, fake, [f"ok:{i}" for i in range(5)], batch_max_rounds=1)
    assert [r.status for r in run.results] == ["ok"] * 5, "lines an expired batch never ran were given up"
    assert [r.text for r in run.results] == [f"answer ok:{i}" for i in range(5)]
    assert run.stats["batches_expired"] == 1 and fake.created == 2
    second = fake.batches_store["batch_1"]
    assert len(fake.files_store[second["input"]].decode().splitlines()) == 3, "only the unprocessed lines go again"


def test_chunks_are_split_by_bytes_under_the_file_limit():
    reqs = _requests([f"ok:{i}" for i in range(6)])
    chunks = chunk_requests(reqs, 10_000, 100, lambda r: 1, max_bytes=250, line_bytes=lambda r: 100)
    assert [len(c) for c in chunks] == [2, 2, 2]


def test_batch_files_are_cut_by_bytes(tmp_path):
    fake = FakeBatchAPI(polls=1)
    run = _fake_run(tmp_path, fake, [f"ok:{i}" for i in range(6)], batch_max_file_mb=0.0005)   # 500 bytes
    assert all(r.status == "ok" for r in run.results)
    inputs = [fake.files_store[b["input"]] for b in fake.batches_store.values()]
    assert len(inputs) >= 3 and all(len(x) <= 500 or x.count(b"\n") == 1 for x in inputs)
