"""The local OpenAI-compatible server: real `openai` client calls against it, batching, faults, shutdown."""
from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest

from orca_utils.teacher.local_server import Completion, ServerFault, serve_openai_compatible


class EchoBackend:
    """Echoes the last user message, truncated to max_tokens words, cut at the first stop string."""

    def __init__(self):
        self.calls = 0

    def complete(self, messages, max_tokens, temperature, stop):
        self.calls += 1
        words = f"echo {messages[-1]['content']}".split()
        text = " ".join(words[:max_tokens])
        for s in stop or []:
            text = text.split(s)[0]
        return Completion(text, "length" if len(words) > max_tokens else "stop", len(words), len(text.split()))


class BatchEcho(EchoBackend):
    def __init__(self):
        super().__init__()
        self.batch_sizes: list[int] = []

    def complete_batch(self, requests):
        self.batch_sizes.append(len(requests))
        return [self.complete(r["messages"], r["max_tokens"], r["temperature"], r["stop"]) for r in requests]


def _client(base_url, **kw):
    return openai.OpenAI(base_url=base_url, api_key="sk-test-not-real", max_retries=0, **kw)


def test_models_chat_stop_max_tokens_usage():
    with serve_openai_compatible({"echo": EchoBackend()}) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        client = _client(base_url)
        assert [m.id for m in client.models.list().data] == ["echo"]
        r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a b c d e"}],
                                           max_tokens=3, temperature=0)
        assert r.choices[0].message.content == "echo a b"
        assert r.choices[0].finish_reason == "length"
        assert r.usage.prompt_tokens == 6 and r.usage.completion_tokens == 3
        r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x STOP y"}],
                                           max_tokens=50, stop=["STOP"])
        assert r.choices[0].message.content.strip() == "echo x" and r.choices[0].finish_reason == "stop"
        with pytest.raises(openai.NotFoundError, match="not served"):
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}], max_tokens=2)


def test_server_shuts_down_when_body_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with serve_openai_compatible({"echo": EchoBackend()}) as base_url:
            port = int(base_url.split(":")[2].split("/")[0])
            raise RuntimeError("boom")
    time.sleep(0.2)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "server still listening after the with block"


def test_concurrent_requests_are_micro_batched():
    backend = BatchEcho()
    with serve_openai_compatible({"b": backend}, batch_window_s=0.2, max_batch_size=8) as base_url:
        client = _client(base_url)
        results = [None] * 8

        def call(i):
            results[i] = client.chat.completions.create(
                model="b", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=5).choices[0].message.content

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        [t.start() for t in threads]
        [t.join(10) for t in threads]
    assert results == [f"echo q{i}" for i in range(8)]
    assert sum(backend.batch_sizes) == 8 and max(backend.batch_sizes) > 1


def test_fault_injection_and_rpm_limit():
    class Faulty(EchoBackend):
        def complete(self, messages, max_tokens, temperature, stop):
            kind = messages[-1]["content"]
            if kind == "429":
                raise ServerFault(429, headers={"Retry-After": "7"})
            if kind == "bad-json":
                raise ServerFault(200, body="{not json")
            return super().complete(messages, max_tokens, temperature, stop)

    with serve_openai_compatible({"f": Faulty()}, rpm_limit=2) as base_url:
        url = f"{base_url}/chat/completions"
        post = lambda c: httpx.post(url, json={"model": "f", "messages": [{"role": "user", "content": c}],
                                               "max_tokens": 4})
        r = post("429")
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        r = post("bad-json")
        assert r.status_code == 200 and r.text == "{not json"
        r = post("third")                       # the rpm limit (2/min) is reached
        assert r.status_code == 429 and 0 < float(r.headers["retry-after"]) <= 60


def test_batch_api_round_trip_with_output_and_error_files():
    class HalfBroken(EchoBackend):           # no complete_batch: the batch job runs line by line
        def complete(self, messages, max_tokens, temperature, stop):
            if "fail" in messages[-1]["content"]:
                raise ServerFault(500, body={"error": {"message": "nope"}})
            return super().complete(messages, max_tokens, temperature, stop)

    backend = HalfBroken()
    lines = [{"custom_id": f"id{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "h", "messages": [{"role": "user", "content": "fail" if i == 1 else f"ok{i}"}],
                       "max_tokens": 5}} for i in range(3)]
    payload = "".join(json.dumps(x) + "\n" for x in lines).encode()
    with serve_openai_compatible({"h": backend}) as base_url:
        client = _client(base_url)
        f = client.files.create(file=("in.jsonl", payload), purpose="batch")
        assert client.files.content(f.id).content == payload
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        for _ in range(100):
            b = client.batches.retrieve(b.id)
            if b.status in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert b.status == "completed"
        assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (3, 2, 1)
        out = [json.loads(x) for x in client.files.content(b.output_file_id).text.splitlines()]
        err = [json.loads(x) for x in client.files.content(b.error_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == ["id0", "id2"]
    assert out[0]["response"]["body"]["choices"][0]["message"]["content"].startswith("echo ok")
    assert [e["custom_id"] for e in err] == ["id1"] and err[0]["response"]["status_code"] == 500


def test_serve_offline_points_the_endpoint_at_the_local_server_and_the_client_gets_answers(tmp_path):
    """The one offline-serving helper of 02, 07, 08 and 09: the block's endpoint, its base_url on 127.0.0.1."""
    from orca_utils.schemas import TeacherEndpointParams
    from orca_utils.teacher import ChatRequest, complete_chats, serve_offline

    endpoint = TeacherEndpointParams(api_type="azure", base_url="https://example.invalid", max_retries=0)
    with serve_offline({"echo": EchoBackend()}, endpoint) as local:
        assert local.base_url.startswith("http://127.0.0.1:") and local.api_type == "openai"
        run = complete_chats([ChatRequest(id="a", model="echo", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=8)], local, tmp_path / "cache.sqlite", progress=False)
    assert [r.status for r in run.results] == ["ok"] and run.results[0].text
    assert endpoint.base_url == "https://example.invalid", "the block's own endpoint is left as it was"
