"""Re-sending what failed: a changed max_tokens reuses the cached answers whose status is not in `resend_statuses`
(unpaid, provenance kept) and sends exactly the others; the estimate counts exactly those; chat and Batch paths."""
from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter

import pydantic
import pytest

from orca_utils.chat_api.wire import prompt_key_of_json
from orca_utils.schemas import TeacherEndpointParams
from orca_utils.teacher import (ChatRequest, Prices, ResponseCache, complete_chats, estimate_cost, plan_requests,
                                prompt_tokens_of, request_json)
from orca_utils.teacher.local_server import Completion, ServerFault, serve_openai_compatible

PRICES = Prices(input_usd_per_1k=1.0, output_usd_per_1k=2.0)
ANSWER_TOKENS = 40          # a `long:` answer is cut below this cap


class Teacher:
    """By the user message's kind: `ok:` a short answer, `long:` 40 tokens (truncated below a 40-token cap),
    `empty:` nothing, `err:` an HTTP 400 while `broken`. Counts the calls per (model, message): the server side."""

    def __init__(self, model: str = "m"):
        self.model, self.broken = model, True
        self.calls: Counter = Counter()
        self.lock = threading.Lock()

    def complete(self, messages, max_tokens, temperature, stop):
        content = messages[-1]["content"]
        with self.lock:
            self.calls[content] += 1
        kind = content.split(":")[0]
        if kind == "err" and self.broken:
            raise ServerFault(400, {"error": {"message": "injected bad request", "code": "invalid_request"}})
        if kind == "long":
            n = min(ANSWER_TOKENS, max_tokens)
            return Completion(f"{self.model} long answer " + "w " * n, "length" if n < ANSWER_TOKENS else "stop", 7, n)
        if kind == "empty":
            return Completion("  ", "stop", 7, 0)
        return Completion(f"{self.model} answer to {content}", "stop", 7, 3)


CONTENTS = ["ok:0", "long:1", "empty:2", "err:3", "ok:4", "long:5"]
FIRST = {"ok:0": "ok", "long:1": "truncated", "empty:2": "empty", "err:3": "error", "ok:4": "ok", "long:5": "truncated"}
RESENT = {"long:1", "err:3", "long:5"}


def _requests(max_tokens, model="m", contents=CONTENTS):
    return [ChatRequest(f"id{i}", model, [{"role": "system", "content": "sys"}, {"role": "user", "content": c}],
                        max_tokens=max_tokens, temperature=0.0, stop=["</s>"]) for i, c in enumerate(contents)]


def _endpoint(base_url, batch=False, **kw):
    defaults = dict(base_url=base_url, concurrency=4, requests_per_minute=60000, tokens_per_minute=1e9,
                    timeout_s=5.0, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.05,
                    batch_mode=batch, batch_poll_interval_s=0.02, batch_max_rounds=1, check_models=False)
    return TeacherEndpointParams(**{**defaults, **kw})


def _sent(teacher: Teacher, before: Counter) -> dict[str, int]:
    return {c: n - before[c] for c, n in teacher.calls.items() if n > before[c]}


@pytest.mark.parametrize("batch", [False, True], ids=["chat", "batch"])
def test_a_changed_max_tokens_resends_exactly_the_listed_statuses(tmp_path, batch):
    teacher = Teacher()
    cache = tmp_path / "cache.sqlite"
    factor = 0.5 if batch else 1.0
    with serve_openai_compatible({"m": teacher}) as base_url:
        first = complete_chats(_requests(16), _endpoint(base_url, batch), cache, prices=PRICES, progress=False)
        assert {r.id: r.status for r in first.results} == {f"id{i}": FIRST[c] for i, c in enumerate(CONTENTS)}
        assert all(r.answer_max_tokens == 16 and r.cache_match is None for r in first.results if r.status != "error")
        assert _sent(teacher, Counter()) == dict.fromkeys(CONTENTS, 1)
        teacher.broken = False
        # The rerun: max_tokens raised (every key changes), truncated answers and errors re-sent.
        endpoint = _endpoint(base_url, batch, resend_statuses=["truncated", "error"])
        rerun = _requests(64)
        with ResponseCache(cache) as c:
            est = estimate_cost(rerun, PRICES, count_tokens=len, cache=c, endpoint=endpoint)
        to_send = [r for r in rerun if r.messages[-1]["content"] in RESENT]
        prompt = sum(prompt_tokens_of(r.messages, len) for r in to_send)
        assert (est.n_requests, est.n_cached, est.n_same_prompt) == (6, 3, 3)
        assert est.prompt_tokens == prompt and est.completion_tokens == 3 * 64
        assert est.usd == pytest.approx(factor * (prompt * 1.0 + 3 * 64 * 2.0) / 1000)
        before = Counter(teacher.calls)
        second = complete_chats(rerun, endpoint, cache, prices=PRICES, progress=False)
        assert _sent(teacher, before) == dict.fromkeys(RESENT, 1), "the server saw other requests than the resent"
        assert second.stats["sent"] == 3 and second.stats["cached"] == 3 and second.stats["cached_same_prompt"] == 3
        by_id = {r.id: r for r in second.results}
        old = {r.id: r for r in first.results}
        for i, c in enumerate(CONTENTS):
            r = by_id[f"id{i}"]
            if c in RESENT:
                assert (r.status, r.from_cache, r.answer_max_tokens, r.key) == ("ok", False, 64, rerun[i].key)
            else:             # reused unpaid, under the key and cap it was produced with
                assert (r.status, r.from_cache, r.cache_match) == (FIRST[c], True, "prompt")
                assert r.key == old[f"id{i}"].key != rerun[i].key and r.answer_max_tokens == 16
                assert r.text == old[f"id{i}"].text
        fresh = [r for r in second.results if not r.from_cache]
        spent = sum(PRICES.cost(r.prompt_tokens, r.completion_tokens) for r in fresh) * factor
        assert second.stats["spent_usd"] == pytest.approx(spent) and spent > 0
        # Run it again: nothing is sent (the resent answers are exact-key hits now).
        before = Counter(teacher.calls)
        third = complete_chats(rerun, endpoint, cache, prices=PRICES, progress=False)
        assert _sent(teacher, before) == {} and third.stats["sent"] == 0 and third.stats["spent_usd"] == 0
        assert [r.cache_match for r in third.results] == ["prompt" if c not in RESENT else "key" for c in CONTENTS]
        with ResponseCache(cache) as c:
            assert estimate_cost(rerun, PRICES, cache=c, endpoint=endpoint).n_cached == 6


def test_without_resend_statuses_a_changed_max_tokens_resends_everything_as_before(tmp_path):
    teacher = Teacher()
    cache = tmp_path / "cache.sqlite"
    with serve_openai_compatible({"m": teacher}) as base_url:
        complete_chats(_requests(16), _endpoint(base_url), cache, progress=False)
        endpoint = _endpoint(base_url)                  # the profiles' default: resend_statuses unset
        with ResponseCache(cache) as c:
            assert estimate_cost(_requests(64), PRICES, cache=c, endpoint=endpoint).n_cached == 0
            # same max_tokens: only the error is re-sent (retry_errors), and without it nothing
            assert [r.id for r in plan_requests(_requests(16), c, endpoint).todo] == ["id3"]
            assert plan_requests(_requests(16), c, _endpoint(base_url, retry_errors=False)).todo == []
        before = Counter(teacher.calls)
        run = complete_chats(_requests(64), endpoint, cache, progress=False)
    assert _sent(teacher, before) == dict.fromkeys(CONTENTS, 1) and not any(r.from_cache for r in run.results)


def test_an_exact_key_answer_is_resent_only_for_error(tmp_path):
    teacher = Teacher()
    cache = tmp_path / "cache.sqlite"
    with serve_openai_compatible({"m": teacher}) as base_url:
        complete_chats(_requests(16), _endpoint(base_url), cache, progress=False)
        every = ["ok", "truncated", "refused", "content_filter", "empty", "error"]
        with ResponseCache(cache) as c:
            # the same request would get the same cut answer: only the error goes out again
            assert [r.id for r in plan_requests(_requests(16), c, _endpoint(base_url, resend_statuses=every)).todo] \
                == ["id3"]
            # `error` not listed: the error record is an answer like any other
            assert plan_requests(_requests(16), c, _endpoint(base_url, resend_statuses=["truncated"])).todo == []
            # listing `ok` too: nothing is reused under another cap (the old behaviour)
            assert len(plan_requests(_requests(64), c, _endpoint(base_url, resend_statuses=every)).todo) == 6


def test_another_model_never_reuses_an_answer_of_the_first(tmp_path):
    stage1, stage2 = Teacher("m1"), Teacher("m2")
    stage1.broken = stage2.broken = False
    cache = tmp_path / "cache.sqlite"
    endpoint_kw = dict(resend_statuses=["error"])
    with serve_openai_compatible({"m1": stage1, "m2": stage2}) as base_url:
        one = complete_chats(_requests(16, "m1"), _endpoint(base_url, **endpoint_kw), cache, progress=False)
        endpoint = _endpoint(base_url, **endpoint_kw)
        with ResponseCache(cache) as c:
            assert estimate_cost(_requests(32, "m2"), PRICES, cache=c, endpoint=endpoint).n_cached == 0
        two = complete_chats(_requests(32, "m2"), endpoint, cache, progress=False)
        assert _sent(stage2, Counter()) == dict.fromkeys(CONTENTS, 1) and not any(r.from_cache for r in two.results)
        assert all(r.text.startswith("m2 ") for r in two.results if r.text.strip())
        assert all(r.text.startswith("m1 ") for r in one.results if r.text.strip())
        # the same model under another cap does reuse (ok and empty; truncated is not listed here either)
        before = Counter(stage1.calls)
        again = complete_chats(_requests(32, "m1"), endpoint, cache, progress=False)
        assert _sent(stage1, before) == {} and all(r.cache_match == "prompt" for r in again.results)
    # dialect and effort are part of the prompt identity
    base = _requests(16)[0]
    variants = [ChatRequest(base.id, "m", base.messages, 16, dialect="reasoning"),
                ChatRequest(base.id, "m", base.messages, 16, reasoning_effort="low"),
                ChatRequest(base.id, "m", base.messages, 16, dialect="reasoning", reasoning_effort="high")]
    assert len({base.prompt_key, *(v.prompt_key for v in variants)}) == 4
    assert ChatRequest(base.id, "m", base.messages, 999, 0.7, ["x"]).prompt_key == base.prompt_key


_OLD_SCHEMA = """CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, request_json TEXT NOT NULL,
    status TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, error TEXT, attempts INTEGER NOT NULL, via TEXT NOT NULL,
    created_at REAL NOT NULL);"""


def test_a_cache_written_before_the_prompt_column_is_migrated_and_reused(tmp_path):
    path = tmp_path / "old.sqlite"
    reqs = _requests(16) + [ChatRequest("r", "gpt-6.1-sol", [{"role": "user", "content": "ok:r"}], 16,
                                        dialect="reasoning", reasoning_effort="low")]
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    for t, r in enumerate(reqs):
        conn.execute("INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (r.key, r.model, request_json(r), "ok", f"old {r.id}", "stop", 7, 3, None, 1, "chat", 1.0 + t))
    conn.execute("INSERT INTO responses VALUES ('bad', 'm', '{not json', 'ok', '', 'stop', 0, 0, NULL, 1, 'chat', 0)")
    conn.commit()
    conn.close()
    with ResponseCache(path) as cache:
        stored = dict(cache.conn.execute("SELECT key, prompt_key FROM responses").fetchall())
        assert {k: stored[k] for k in (r.key for r in reqs)} == {r.key: r.prompt_key for r in reqs}
        assert stored["bad"] == ""
        assert "responses_prompt_key" in {row[1] for row in cache.conn.execute("PRAGMA index_list(responses)")}
        assert "reasoning_tokens" in {row[1] for row in cache.conn.execute("PRAGMA table_info(responses)")}
        raised = _requests(64) + [ChatRequest("r", "gpt-6.1-sol", [{"role": "user", "content": "ok:r"}], 64,
                                              dialect="reasoning", reasoning_effort="low")]
        plan = plan_requests(raised, cache, TeacherEndpointParams(resend_statuses=["error"]))
        assert plan.todo == [] and plan.same_prompt == {r.key for r in raised}
        assert plan.reuse[raised[-1].key].text == "old r"
    assert prompt_key_of_json(json.dumps({"model": "m", "messages": reqs[0].messages, "max_tokens": 5,
                                          "temperature": 0.3, "stop": ["y"]})) == reqs[0].prompt_key


def test_resend_statuses_and_retry_errors_must_agree():
    assert TeacherEndpointParams(resend_statuses=["truncated"]).resend_statuses == ["truncated"]
    TeacherEndpointParams(retry_errors=True, resend_statuses=["error", "empty"])
    with pytest.raises(pydantic.ValidationError, match="retry_errors=False contradicts resend_statuses"):
        TeacherEndpointParams(retry_errors=False, resend_statuses=["error"])
    with pytest.raises(pydantic.ValidationError, match="retry_errors=True contradicts"):
        TeacherEndpointParams(retry_errors=True, resend_statuses=["truncated"])
    with pytest.raises(pydantic.ValidationError, match="resend_statuses"):
        TeacherEndpointParams(resend_statuses=["cut"])
