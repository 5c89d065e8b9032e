"""The local server's OpenAI emulation, driven with plain `httpx` and the `openai` SDK (never our own client).

Each behaviour is checked the way OpenAI documents it (sources in orca_utils/backends/openai_emulation/):
the Model object, reasoning models' parameters and hidden reasoning tokens, validation against OpenAI's OpenAPI
description (the pinned fixture in tests/fixtures/openai_openapi/), and the Batch API's asynchronous life cycle.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time

import httpx
import openai
import pytest

from orca_utils.teacher.local_server import Completion, Emulation, serve_openai_compatible
from orca_utils.teacher.openai_emulation import DEFAULT_OPENAPI_PATH, RequestSchemas, emulated_prompt_tokens

TODAY = dt.date(2026, 12, 1)
HEADERS = {"Authorization": "Bearer k"}


class Words:
    """Answers with `n` words ("w0 w1 ..."), cut to max_tokens words (1 word = 1 token); records what it got."""

    def __init__(self, n: int = 50):
        self.n, self.seen = n, []

    def complete(self, messages, max_tokens, temperature, stop):
        self.seen.append({"max_tokens": max_tokens, "temperature": temperature, "stop": stop})
        words = [f"w{i}" for i in range(self.n)]
        return Completion(" ".join(words[:max_tokens]), "length" if self.n > max_tokens else "stop", 7,
                          min(self.n, max_tokens))


def _emu(**kw) -> Emulation:
    return Emulation(**{"today": TODAY, "batch_validation_s": 0.02, "batch_latency_s": 0.05,
                        "batch_finalizing_s": 0.01, **kw})


def _chat(base_url, **body):
    return httpx.post(f"{base_url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                            **body}, headers=HEADERS, timeout=10)


def _error(resp) -> dict:
    return resp.json()["error"]


# ---- models ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["always", "announced"])
def test_models_list_is_openais_model_object_with_and_without_shutdown_date(field):
    from jsonschema import Draft202012Validator

    schema = json.loads(DEFAULT_OPENAPI_PATH.read_text())["components"]["schemas"]["Model"]
    served = {"gpt-6-luna": Words(), "gpt-5": Words(), "gpt-4": Words()}
    with serve_openai_compatible(served, emulate=_emu(shutdown_date_field=field)) as base_url:
        listing = openai.OpenAI(base_url=base_url, api_key="k").models.list()
        raw = httpx.get(f"{base_url}/models", headers=HEADERS).json()["data"]
        gone = _chat(base_url, model="gpt-4", max_tokens=5)
        unknown = _chat(base_url, model="gpt-7-nova", max_completion_tokens=5)
    by_id = {m["id"]: m for m in raw}
    assert {m.id for m in listing} == set(by_id)
    for m in raw:
        Draft202012Validator(schema).validate(m)
        assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"]
    assert by_id["gpt-5"]["shutdown_date"] == "2026-12-11" and by_id["gpt-4"]["shutdown_date"] == "2026-10-23"
    if field == "always":
        assert by_id["gpt-6-luna"]["shutdown_date"] is None
    else:
        assert "shutdown_date" not in by_id["gpt-6-luna"]
    assert "gpt-4-0314" in by_id                     # retired registry models are listed with their date
    assert gone.status_code == 404 and _error(gone)["code"] == "model_not_found"
    assert unknown.status_code == 404 and _error(unknown)["code"] == "model_not_found"


# ---- reasoning models ----------------------------------------------------------------------------------------
def test_hidden_reasoning_tokens_count_against_max_completion_tokens():
    backend = Words(50)
    with serve_openai_compatible({"gpt-6.1-sol": backend}, emulate=_emu()) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        ask = lambda cap: client.chat.completions.create(   # noqa: E731
            model="gpt-6.1-sol", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=cap,
            reasoning_effort="low")
        starved, cut, full = ask(20), ask(70), ask(1000)
    low = Emulation().reasoning_tokens["low"]                           # 64
    # The cap is below the hidden reasoning: nothing visible, finish_reason length, every token was reasoning.
    assert starved.choices[0].message.content == "" and starved.choices[0].finish_reason == "length"
    assert starved.usage.completion_tokens_details.reasoning_tokens == 20 and starved.usage.completion_tokens == 20
    # Some room left: the visible text is cut to it.
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content.split() == [
        f"w{i}" for i in range(70 - low)]
    assert cut.usage.completion_tokens_details.reasoning_tokens == low and cut.usage.completion_tokens == 70
    # Room enough: the whole answer, reasoning tokens still reported and included in completion_tokens.
    assert full.choices[0].finish_reason == "stop" and len(full.choices[0].message.content.split()) == 50
    assert full.usage.completion_tokens == 50 + low and full.usage.completion_tokens_details.reasoning_tokens == low
    assert [s["max_tokens"] for s in backend.seen] == [70 - low, 1000 - low]   # the starved call never ran


def test_reasoning_effort_sets_the_hidden_tokens_and_none_has_none():
    emu = _emu(reasoning_tokens={"none": 0, "low": 5, "medium": 9, "high": 30})
    with serve_openai_compatible({"gpt-6-luna": Words(3)}, emulate=emu) as base_url:
        usage = {e: _chat(base_url, model="gpt-6-luna", max_completion_tokens=100, reasoning_effort=e).json()
                 ["usage"]["completion_tokens_details"]["reasoning_tokens"] for e in ("none", "low", "medium", "high")}
        default = _chat(base_url, model="gpt-6-luna", max_completion_tokens=100).json()["usage"]
    assert usage == {"none": 0, "low": 5, "medium": 9, "high": 30}
    assert default["completion_tokens_details"]["reasoning_tokens"] == 0          # luna's default effort: none


def test_stop_is_rejected_by_sol_and_accepted_by_luna():
    with serve_openai_compatible({"gpt-6.1-sol": Words(), "gpt-6-luna": Words()}, emulate=_emu()) as base_url:
        sol = _chat(base_url, model="gpt-6.1-sol", max_completion_tokens=500, stop=["\n"])
        luna = _chat(base_url, model="gpt-6-luna", max_completion_tokens=500, stop=["\n"])
    assert sol.status_code == 400
    assert _error(sol) == {"message": "Unsupported parameter: 'stop' is not supported with this model.",
                           "type": "invalid_request_error", "param": "stop", "code": "unsupported_parameter"}
    assert luna.status_code == 200


def test_effort_outside_the_models_subset_and_chat_dialect_fields_are_rejected():
    with serve_openai_compatible({"gpt-6.1-sol": Words(), "gpt-6-luna": Words()}, emulate=_emu()) as base_url:
        no_none = _chat(base_url, model="gpt-6.1-sol", max_completion_tokens=500, reasoning_effort="none")
        no_minimal = _chat(base_url, model="gpt-6.1-sol", max_completion_tokens=500, reasoning_effort="minimal")
        sol_max = _chat(base_url, model="gpt-6.1-sol", max_completion_tokens=5000, reasoning_effort="max")
        max_tokens = _chat(base_url, model="gpt-6.1-sol", max_tokens=50)
        hot = _chat(base_url, model="gpt-6.1-sol", max_completion_tokens=500, temperature=0.2)
        luna_none_hot = _chat(base_url, model="gpt-6-luna", max_completion_tokens=50, reasoning_effort="none",
                              temperature=0.2)
        luna_low_hot = _chat(base_url, model="gpt-6-luna", max_completion_tokens=500, reasoning_effort="low",
                             temperature=0.2)
        not_an_effort = _chat(base_url, model="gpt-6-luna", max_completion_tokens=50, reasoning_effort="extreme")
    for resp in (no_none, no_minimal):
        assert resp.status_code == 400 and _error(resp)["code"] == "unsupported_value"
        assert _error(resp)["param"] == "reasoning_effort" and "'low', 'medium', 'high', 'xhigh', and 'max'" in \
            _error(resp)["message"]
    assert sol_max.status_code == 200
    assert max_tokens.status_code == 400 and (_error(max_tokens)["param"], _error(max_tokens)["code"]) == (
        "max_tokens", "unsupported_parameter")
    assert hot.status_code == 400 and (_error(hot)["param"], _error(hot)["code"]) == ("temperature",
                                                                                      "unsupported_value")
    assert luna_none_hot.status_code == 200, "luna takes a temperature while its effort is none"
    assert luna_low_hot.status_code == 400 and _error(luna_low_hot)["param"] == "temperature"
    # Not in OpenAI's ReasoningEffort enum at all: the OpenAPI schema refuses it before the model does.
    assert not_an_effort.status_code == 400 and _error(not_an_effort)["param"] == "reasoning_effort"


def test_chat_models_keep_max_tokens_temperature_and_stop():
    backend = Words(10)
    with serve_openai_compatible({"gpt-4o": backend}, emulate=_emu(today=dt.date(2026, 11, 1))) as base_url:
        ok = _chat(base_url, model="gpt-4o", max_tokens=4, temperature=0.3, stop=["x"])
        effort = _chat(base_url, model="gpt-4o", max_tokens=4, reasoning_effort="low")
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "w0 w1 w2 w3"
    assert ok.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert backend.seen[0] == {"max_tokens": 4, "temperature": 0.3, "stop": ["x"]}
    assert effort.status_code == 400 and "reasoning_effort" in _error(effort)["message"]


# ---- OpenAPI validation ----------------------------------------------------------------------------------------
def test_openapi_validation_rejects_undefined_fields_and_wrong_types_and_accepts_a_normal_body():
    assert DEFAULT_OPENAPI_PATH.is_file() and DEFAULT_OPENAPI_PATH.stat().st_size < 1_000_000
    with serve_openai_compatible({"gpt-6-luna": Words()}, emulate=_emu()) as base_url:
        normal = _chat(base_url, model="gpt-6-luna", max_completion_tokens=100, reasoning_effort="low",
                       messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                       seed=3, metadata={"k": "v"}, stop=None)
        top_k = _chat(base_url, model="gpt-6-luna", max_completion_tokens=100, top_k=5)
        wrong_type = _chat(base_url, model="gpt-6-luna", max_completion_tokens="many")
        bad_message = _chat(base_url, model="gpt-6-luna", max_completion_tokens=100,
                            messages=[{"role": "user", "content": "hi", "weight": 2}])
        no_messages = httpx.post(f"{base_url}/chat/completions", json={"model": "gpt-6-luna"}, headers=HEADERS)
        batch_field = httpx.post(f"{base_url}/batches", headers=HEADERS, json={
            "input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h",
            "priority": "high"})
        batch_window = httpx.post(f"{base_url}/batches", headers=HEADERS, json={
            "input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "1h"})
    assert normal.status_code == 200, normal.text
    assert top_k.status_code == 400 and _error(top_k)["type"] == "invalid_request_error"
    assert "top_k" in _error(top_k)["message"] and _error(top_k)["param"] == "top_k"
    assert wrong_type.status_code == 400 and _error(wrong_type)["param"] == "max_completion_tokens"
    assert _error(wrong_type)["code"] == "invalid_type" and "expected an integer" in _error(wrong_type)["message"]
    assert bad_message.status_code == 400 and _error(bad_message)["param"] == "messages[0].weight"
    assert no_messages.status_code == 400 and _error(no_messages)["param"] == "messages"
    assert batch_field.status_code == 400 and _error(batch_field)["param"] == "priority"
    assert batch_window.status_code == 400 and _error(batch_window)["param"] == "completion_window"


def test_openapi_nullable_fields_accept_null():
    schemas = RequestSchemas.load(DEFAULT_OPENAPI_PATH)
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": None, "stop": None,
            "temperature": None, "reasoning_effort": None}
    assert schemas.chat_error(body) is None
    assert schemas.chat_error({**body, "stop": ["a", "b", "c", "d", "e"]})[1]["error"]["param"] == "stop"


def test_a_missing_schema_file_skips_validation_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="orca_utils.backends.openai_emulation"):
        emu = _emu(openapi_path=tmp_path / "absent.json")
        with serve_openai_compatible({"gpt-6-luna": Words()}, emulate=emu) as base_url:
            resp = _chat(base_url, model="gpt-6-luna", max_completion_tokens=100, top_k=5)
    assert resp.status_code == 200
    assert any("not validated" in r.getMessage() for r in caplog.records)


# ---- Batch API --------------------------------------------------------------------------------------------------
def _line(i, model="gpt-6-luna", content=None, **body):
    return {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": content or f"question {i}"}],
                     "max_completion_tokens": 200, **body}}


def _submit(client, lines):
    payload = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()
    f = client.files.create(file=("in.jsonl", payload), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")


def _wait(client, bid, statuses=("completed", "failed", "expired", "cancelled"), timeout=10.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = client.batches.retrieve(bid)
        if not seen or seen[-1] != b.status:
            seen.append(b.status)
        if b.status in statuses:
            return b, seen
        time.sleep(0.01)
    raise AssertionError(f"batch {bid} still {seen[-1]} after {timeout}s")


def _jsonl(client, fid):
    return [json.loads(x) for x in client.files.content(fid).text.splitlines()] if fid else []


def test_a_batch_over_the_enqueued_token_limit_is_created_validating_then_fails():
    lines = [_line(i, content="x" * 200) for i in range(4)]
    tokens = sum(emulated_prompt_tokens(x["body"]) for x in lines)
    with serve_openai_compatible({"gpt-6-luna": Words()},
                                 emulate=_emu(batch_enqueued_token_limit=tokens - 1)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        created = _submit(client, lines)
        final, seen = _wait(client, created.id)
        state = serve_openai_compatible.last_app.state.orca
    assert created.status == "validating" and created.errors is None
    assert final.status == "failed" and final.failed_at and final.output_file_id is None
    [err] = final.errors.data
    assert err.code == "token_limit_exceeded" and err.line is None and err.param is None
    assert f"Limit: {tokens - 1:,} enqueued tokens" in err.message
    assert state.stats["batches_over_token_limit"] == 1 and state.enqueued.get("gpt-6-luna", 0) == 0


def test_the_limit_counts_batches_in_flight_and_two_under_it_both_complete():
    lines_a = [_line(i) for i in range(3)]
    lines_b = [_line(i + 10) for i in range(3)]
    one = sum(emulated_prompt_tokens(x["body"]) for x in lines_a)
    with serve_openai_compatible({"gpt-6-luna": Words()},
                                 emulate=_emu(batch_enqueued_token_limit=2 * one, batch_latency_s=0.5)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        a, b = _submit(client, lines_a), _submit(client, lines_b)
        _wait(client, a.id, ("in_progress",))
        _wait(client, b.id, ("in_progress",))
        c = _submit(client, [_line(20)])                # a and b fill the limit: c fails while they run
        c_final, _ = _wait(client, c.id)
        a_final, _ = _wait(client, a.id)
        b_final, _ = _wait(client, b.id)
        d_final, _ = _wait(client, _submit(client, [_line(30)]).id)     # room again once they ended
    assert (a_final.status, b_final.status, d_final.status) == ("completed",) * 3
    assert c_final.status == "failed" and c_final.errors.data[0].code == "token_limit_exceeded"


def test_duplicate_custom_id_fails_the_batch_with_its_line():
    lines = [_line(0), _line(1), {**_line(2), "custom_id": "r0"}]
    with serve_openai_compatible({"gpt-6-luna": Words()}, emulate=_emu()) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        created = _submit(client, lines)
        final, _ = _wait(client, created.id)
    assert created.status == "validating"
    assert final.status == "failed"
    [err] = final.errors.data
    assert (err.code, err.line, err.param) == ("duplicate_custom_id", 3, "custom_id")


def test_line_validation_errors_url_model_and_json():
    lines = [_line(0), {**_line(1), "url": "/v1/completions"}, _line(2, model="gpt-6.1-sol"), "{not json"]
    with serve_openai_compatible({"gpt-6-luna": Words(), "gpt-6.1-sol": Words()}, emulate=_emu()) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        final, _ = _wait(client, _submit(client, lines).id)
        empty = client.batches.create(input_file_id=client.files.create(file=("e.jsonl", b"\n"), purpose="batch").id,
                                      endpoint="/v1/chat/completions", completion_window="24h")
        empty_final, _ = _wait(client, empty.id)
    assert final.status == "failed"
    assert [(e.code, e.line) for e in final.errors.data] == [("url_mismatch", 2), ("model_mismatch", 3),
                                                             ("invalid_json_line", 4)]
    assert empty_final.status == "failed" and empty_final.errors.data[0].code == "empty_file"


def test_more_than_50000_lines_fail_the_batch():
    lines = ["{}"] * 50_001
    with serve_openai_compatible({"gpt-6-luna": Words()}, emulate=_emu()) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        created = _submit(client, lines)
        final, _ = _wait(client, created.id)
    assert created.status == "validating"
    assert final.status == "failed" and final.errors.data[0].code == "too_many_tasks"
    assert "50,000" in final.errors.data[0].message


def test_latency_keeps_a_batch_in_progress_then_it_completes_with_reasoning_usage():
    lines = [_line(i, model="gpt-6.1-sol", reasoning_effort="low") for i in range(4)]
    lines.append(_line(8, model="gpt-6.1-sol", top_k=3))                   # not in OpenAI's schema: error file
    lines.append(_line(9, model="gpt-6.1-sol", max_tokens=20))             # refused by the model: error file
    with serve_openai_compatible({"gpt-6.1-sol": Words(5)}, emulate=_emu(batch_latency_s=0.4)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        created = _submit(client, lines)
        t0 = time.monotonic()
        running, _ = _wait(client, created.id, ("in_progress",))
        time.sleep(0.15)
        assert client.batches.retrieve(created.id).status == "in_progress"
        final, seen = _wait(client, created.id)
        elapsed = time.monotonic() - t0
        out, err = _jsonl(client, final.output_file_id), _jsonl(client, final.error_file_id)
    assert seen[-1] == "completed" and elapsed >= 0.4
    assert running.in_progress_at and final.finalizing_at and final.completed_at and final.expires_at
    assert (final.request_counts.total, final.request_counts.completed, final.request_counts.failed) == (6, 4, 2)
    assert sorted(o["custom_id"] for o in out) == ["r0", "r1", "r2", "r3"]
    usage = out[0]["response"]["body"]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 64 and usage["completion_tokens"] == 64 + 5
    unknown_field, refused = sorted(err, key=lambda e: e["custom_id"])
    assert unknown_field["custom_id"] == "r8" and unknown_field["response"]["status_code"] == 400
    assert unknown_field["response"]["body"]["error"]["param"] == "top_k"
    assert unknown_field["response"]["body"]["error"]["type"] == "invalid_request_error"
    assert refused["custom_id"] == "r9" and refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["code"] == "unsupported_parameter"


def test_an_expired_batch_keeps_the_output_of_its_finished_lines():
    lines = [_line(i) for i in range(5)]
    emu = _emu(completion_window_s=0.4, batch_stalled_lines=2, batch_latency_s=0.1)
    with serve_openai_compatible({"gpt-6-luna": Words(3)}, emulate=emu) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k")
        final, seen = _wait(client, _submit(client, lines).id)
        out, err = _jsonl(client, final.output_file_id), _jsonl(client, final.error_file_id)
        state = serve_openai_compatible.last_app.state.orca
    assert final.status == "expired" and final.expired_at and "in_progress" in seen
    assert sorted(o["custom_id"] for o in out) == ["r0", "r1", "r2"]
    assert sorted(e["custom_id"] for e in err) == ["r3", "r4"]
    assert all(e["response"] is None and e["error"]["code"] == "batch_expired" for e in err)
    assert (final.request_counts.completed, final.request_counts.failed) == (3, 2)
    assert state.enqueued.get("gpt-6-luna", 0) == 0                    # its tokens left the queue


def test_control_plane_faults_and_api_key():
    with serve_openai_compatible({"gpt-6-luna": Words()},
                                 emulate=_emu(control_plane_fault_every=2, require_api_key=True)) as base_url:
        assert httpx.get(f"{base_url}/models").status_code == 401
        calls = [httpx.get(f"{base_url}/batches/none", headers=HEADERS) for _ in range(4)]
    assert [c.status_code for c in calls] == [404, 429, 404, 500]
    assert calls[1].headers["retry-after"] == "1" and calls[1].headers["retry-after-ms"] == "50"   # 0.05 s
    assert _error(calls[1])["code"] == "rate_limit_exceeded" and _error(calls[3])["type"] == "server_error"
