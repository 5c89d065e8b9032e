"""The teacher client against the local server with injected faults: statuses, cache, reruns, kills, batches."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest

from orca_utils.teacher.local_server import Completion, ServerFault, serve_openai_compatible
from orca_utils.teacher.cache import ResponseCache
from orca_utils.schemas import TeacherEndpointParams
from orca_utils.teacher import (ChatRequest, CostLimitError, Prices, TeacherConfigError, complete_chats,
                                estimate_cost)


class ScriptedBackend:
    """Behaviour chosen by the user message: `<kind>:<n>`; counts calls per message (thread-safe)."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.lock = threading.Lock()

    def complete(self, messages, max_tokens, temperature, stop):
        content = messages[-1]["content"]
        with self.lock:
            self.calls[content] += 1
            n = self.calls[content]
        kind = content.split(":")[0]
        if kind == "r429" and n == 1:
            raise ServerFault(429, headers={"Retry-After": "0.2"})
        if kind == "r500" and n <= 2:
            raise ServerFault(500)
        if kind == "always500":
            raise ServerFault(503)
        if kind == "timeout" and n == 1:
            raise ServerFault(200, body={"late": True}, delay_s=3.0)
        if kind == "badjson" and n == 1:
            raise ServerFault(200, body="{not json")
        if kind == "trunc":
            return Completion("cut off mid", "length", 5, max_tokens)
        if kind == "empty":
            return Completion("   ", "stop", 5, 0)
        if kind == "filter":
            return Completion("", "content_filter", 5, 0)
        return Completion(f"answer to {content}", "stop", 5, 3)


def _endpoint(base_url, **kw):
    defaults = dict(base_url=base_url, concurrency=8, requests_per_minute=60000, tokens_per_minute=1e9, timeout_s=1.0,
                    max_retries=3, backoff_base_s=0.05, backoff_max_s=0.2, batch_poll_interval_s=0.05)
    return TeacherEndpointParams(**{**defaults, **kw})


def _requests(contents, model="m"):
    return [ChatRequest(f"id{i}", model, [{"role": "system", "content": "sys"}, {"role": "user", "content": c}],
                        max_tokens=16, temperature=0.0, stop=["</s>"]) for i, c in enumerate(contents)]


EXPECTED = {"ok:0": "ok", "r429:1": "ok", "r500:2": "ok", "timeout:3": "ok", "badjson:4": "ok",
            "trunc:5": "truncated", "empty:6": "empty", "filter:7": "content_filter", "always500:8": "error"}


def test_faults_end_cached_with_status_and_rerun_sends_nothing(tmp_path):
    backend = ScriptedBackend()
    reqs = _requests(list(EXPECTED))
    cache = tmp_path / "cache.sqlite"
    with serve_openai_compatible({"m": backend}, latency_s=0.02) as base_url:
        run = complete_chats(reqs, _endpoint(base_url), cache, progress=False)
        assert {r.id: r.status for r in run.results} == {f"id{i}": s for i, s in enumerate(EXPECTED.values())}
        assert run.stats["rate_limited"] >= 1 and run.stats["retries"] >= 6
        error = next(r for r in run.results if r.status == "error")
        assert "503" in error.error and error.attempts == 4
        assert backend.calls["always500:8"] == 4 and backend.calls["r500:2"] == 3
        with ResponseCache(cache) as c:
            assert len(c) == len(EXPECTED)
        before = sum(backend.calls.values())
        # Second run without re-sending errors: zero requests, same answers from the cache.
        again = complete_chats(reqs, _endpoint(base_url, retry_errors=False), cache, progress=False)
        assert sum(backend.calls.values()) == before and again.stats["sent"] == 0
        assert [r.text for r in again.results] == [r.text for r in run.results]
        assert all(r.from_cache for r in again.results)
        # With retry_errors (the default) only the error is sent again.
        third = complete_chats(reqs, _endpoint(base_url), cache, progress=False)
        assert sum(backend.calls.values()) == before + 4 and third.stats["cached"] == len(EXPECTED) - 1


def test_duplicate_requests_are_sent_once_and_order_is_kept(tmp_path):
    backend = ScriptedBackend()
    reqs = _requests(["ok:a", "ok:b", "ok:a"])
    with serve_openai_compatible({"m": backend}) as base_url:
        run = complete_chats(reqs, _endpoint(base_url), tmp_path / "c.sqlite", progress=False)
    assert [r.id for r in run.results] == ["id0", "id1", "id2"]
    assert run.results[0].text == run.results[2].text == "answer to ok:a"
    assert backend.calls["ok:a"] == 1


def test_auth_error_stops_the_run_and_missing_key_is_reported(tmp_path, monkeypatch):
    class Denied:
        def complete(self, *a):
            raise ServerFault(401, {"error": {"message": "bad key"}})

    with serve_openai_compatible({"m": Denied()}) as base_url:
        with pytest.raises(TeacherConfigError, match="401"):
            complete_chats(_requests(["x"]), _endpoint(base_url), tmp_path / "c.sqlite", progress=False)
    monkeypatch.delenv("ORCA_TEST_MISSING_KEY", raising=False)
    with pytest.raises(TeacherConfigError, match="ORCA_TEST_MISSING_KEY"):
        complete_chats(_requests(["x"]), _endpoint("https://api.example.com/v1", api_key_env="ORCA_TEST_MISSING_KEY"),
                       tmp_path / "c.sqlite", progress=False)


def test_cost_estimate_and_max_cost_stop(tmp_path):
    reqs = _requests([f"ok:{i}" for i in range(10)])
    prices = Prices(input_usd_per_1k=1.0, output_usd_per_1k=2.0)
    est = estimate_cost(reqs, prices, count_tokens=lambda t: len(t.split()))
    # per request: (1 + 4) + (1 + 4) + 3 = 13 prompt tokens; 16 completion tokens (max_tokens)
    assert est.prompt_tokens == 130 and est.completion_tokens == 160
    assert est.usd == pytest.approx((130 * 1.0 + 160 * 2.0) / 1000)
    with pytest.raises(CostLimitError, match="max_cost_usd"):
        est.check(0.1)
    backend = ScriptedBackend()
    with serve_openai_compatible({"m": backend}) as base_url:
        # Worst case per request (chars/4 counter): 13 prompt + 16 completion tokens = 0.045 USD; each answer
        # really costs 0.011 (usage 5 + 3). A request goes out only while spent + 0.045 <= 0.1: six of them.
        run = complete_chats(reqs, _endpoint(base_url, concurrency=1), tmp_path / "c.sqlite", prices=prices,
                             max_cost_usd=0.1, progress=False)
    counts = run.status_counts()
    assert counts["ok"] == 6 and counts["not_sent"] == 4 and run.stats["stopped_by_cost"]
    assert run.stats["spent_usd"] <= 0.1


_CHILD = textwrap.dedent("""
    import sys
    from orca_utils.schemas import TeacherEndpointParams
    from orca_utils.teacher import ChatRequest, complete_chats
    base_url, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reqs = [ChatRequest(f"id{i}", "m", [{"role": "user", "content": f"ok:{i}"}], 16) for i in range(n)]
    complete_chats(reqs, TeacherEndpointParams(base_url=base_url, concurrency=4, requests_per_minute=60000,
                                               tokens_per_minute=1e9), cache, progress=False)
""")


def test_sigkill_midway_then_resume_loses_and_duplicates_nothing(tmp_path):
    n = 60
    backend = ScriptedBackend()
    cache = tmp_path / "cache.sqlite"
    with serve_openai_compatible({"m": backend}, latency_s=0.1) as base_url:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, base_url, str(cache), str(n)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 60
            rows = 0
            while time.time() < deadline and rows < 12:
                time.sleep(0.05)
                if cache.exists():
                    try:
                        with sqlite3.connect(cache) as conn:
                            rows = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                    except sqlite3.OperationalError:
                        pass
            assert rows >= 12, f"child made no progress: {child.stderr.read1().decode()[-500:]}"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        with ResponseCache(cache) as c:
            saved = len(c)
            assert saved < n, "the child finished before it was killed; the test proves nothing"
            assert set(c.status_counts()) == {"ok"}
        time.sleep(0.5)                   # the server finishes the killed child's in-flight requests
        sent_before = sum(backend.calls.values())
        reqs = [ChatRequest(f"id{i}", "m", [{"role": "user", "content": f"ok:{i}"}], 16) for i in range(n)]
        run = complete_chats(reqs, _endpoint(base_url), cache, progress=False)
    assert run.stats["cached"] == saved and run.stats["sent"] == n - saved
    assert sum(backend.calls.values()) - sent_before == n - saved
    assert [r.id for r in run.results] == [f"id{i}" for i in range(n)]
    assert all(r.status == "ok" and r.text == f"answer to ok:{i}" for i, r in enumerate(run.results))
    with sqlite3.connect(cache) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM responses")]
    assert len(keys) == len(set(keys)) == n
    # Requests in flight at the kill are the only ones the server saw twice.
    assert max(backend.calls.values()) <= 2 and sum(v == 2 for v in backend.calls.values()) <= 4
