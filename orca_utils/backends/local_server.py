"""A local OpenAI-compatible HTTP server (FastAPI + uvicorn) serving pluggable backends on 127.0.0.1.

    with serve_openai_compatible({"my-teacher": backend}) as base_url:   # "http://127.0.0.1:<port>/v1"
        client = openai.OpenAI(base_url=base_url, api_key="unused")

It lets the smoke profile (and the tests) drive the very same client code as a real endpoint: `/v1/models`,
`/v1/chat/completions` and the Batch API's `/v1/files` (upload, metadata, content) and `/v1/batches` (create,
retrieve, cancel). The server runs in a background thread on a free port, is checked for readiness before the
`with` body starts, and is shut down when the body ends, also when it raises.

A backend is any object with
    complete(messages, max_tokens, temperature, stop) -> Completion
and optionally
    complete_batch(requests: list[dict]) -> list[Completion]     # dicts: messages, max_tokens, temperature, stop
Concurrent chat requests to a backend with `complete_batch` are micro-batched (collected for `batch_window_s`,
up to `max_batch_size`), and a Batch API job sends all of a model's lines through `complete_batch`: one batched
`generate` call instead of one per request. A backend may raise `ServerFault` to answer with an arbitrary status,
headers and (possibly malformed) body after a delay: that is how tests inject 429s, 500s, timeouts and bad JSON.
Server-wide `latency_s` and `rpm_limit` (429 with `Retry-After` above it) model a rate-limited remote endpoint.

Emulation mode (`emulate=Emulation(...)`) makes the server behave like OpenAI's API where a paper-scale run can
break (model list with shutdown dates, reasoning models' parameters and hidden reasoning tokens, request validation
against OpenAI's OpenAPI description, the Batch API's asynchronous validation, enqueued-token limit, latency and
expiry, control-plane faults, API keys). It lives in `orca_utils.backends.openai_emulation`, written from OpenAI's
documentation; `Emulation` is importable from here too.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

# Module level (not inside build_app): FastAPI resolves the endpoints' string annotations in this namespace.
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

# The backend contract lives in the base module (backends import it from there, without FastAPI).
from .base import Completion, Servable, ServerFault
from .endpoints import is_loopback
from .openai_emulation import Emulation, emulated_prompt_tokens, start_batch
from .served import wait_ready

__all__ = ["Completion", "Servable", "ServerFault", "Emulation", "build_app", "serve_openai_compatible"]


def _request_dict(body: dict) -> dict:
    stop = body.get("stop")
    return {"messages": body.get("messages") or [],
            "max_tokens": int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
            "temperature": float(body.get("temperature") if body.get("temperature") is not None else 1.0),
            "stop": [stop] if isinstance(stop, str) else stop}


def _chat_body(model: str, c: Completion) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": c.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens + c.completion_tokens}}


def _error(status: int, message: str, kind: str = "invalid_request_error"):
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _run_batch(backend, requests: list[dict]) -> list[Completion | Exception]:
    """One backend call for many requests; per-request exceptions when the backend only has `complete`."""
    if hasattr(backend, "complete_batch"):
        try:
            return list(backend.complete_batch(requests))
        except Exception as exc:  # noqa: BLE001 - reported per request
            return [exc] * len(requests)
    out: list[Completion | Exception] = []
    for r in requests:
        try:
            out.append(backend.complete(r["messages"], r["max_tokens"], r["temperature"], r["stop"]))
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


@dataclass
class _State:
    backends: dict[str, Any]
    latency_s: float = 0.0
    rpm_limit: float | None = None
    rate_window_s: float = 60.0
    batch_window_s: float = 0.01
    max_batch_size: int = 16
    files: dict[str, dict] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    recent: deque = field(default_factory=deque)
    queues: dict[str, asyncio.Queue] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: {"chat_requests": 0, "rate_limited": 0,
                                                           "control_calls": 0, "control_faults": 0,
                                                           "batches_over_token_limit": 0})
    emulate: Emulation | None = None
    enqueued: dict[str, int] = field(default_factory=dict)     # model -> prompt tokens of in-flight batches


class _MicroBatcher:
    """Collects concurrent chat requests for one backend and answers them with one `complete_batch` call."""

    def __init__(self, backend, window_s: float, max_size: int):
        self.backend, self.window_s, self.max_size = backend, window_s, max_size
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def submit(self, request: dict) -> Completion:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((request, fut))
        result = await fut
        if isinstance(result, Exception):
            raise result
        return result

    async def _loop(self) -> None:
        while True:
            items = [await self.queue.get()]
            deadline = time.monotonic() + self.window_s
            while len(items) < self.max_size and (left := deadline - time.monotonic()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            results = await asyncio.to_thread(_run_batch, self.backend, [r for r, _ in items])
            for (_, fut), res in zip(items, results):
                if not fut.done():
                    fut.set_result(res)


def build_app(backends: dict[str, Any], latency_s: float = 0.0, rpm_limit: float | None = None,
              batch_window_s: float = 0.01, max_batch_size: int = 16, rate_window_s: float = 60.0,
              emulate: Emulation | None = None):
    """The FastAPI app (exposed for tests that want to mount it elsewhere). `app.state.orca` holds the state."""
    if not backends:
        raise ValueError("serve_openai_compatible: at least one backend is needed, e.g. {'model-name': backend}")
    state = _State(dict(backends), latency_s, rpm_limit, rate_window_s, batch_window_s, max_batch_size,
                   emulate=emulate)
    batchers: dict[str, _MicroBatcher] = {}
    app = FastAPI(title="orca-notebooks local OpenAI-compatible server")
    app.state.orca = state

    if emulate is not None:
        emulate.schemas()           # load OpenAI's OpenAPI description now, not during the first request

        @app.middleware("http")
        async def emulate_api(request: Request, call_next):
            refusal = emulate.auth_error(request.headers.get("authorization", ""))
            if refusal:
                return JSONResponse(refusal[1], status_code=refusal[0])
            fault = emulate.control_plane_fault(state.stats, request.method, request.url.path)
            if fault:
                return JSONResponse(fault[1], status_code=fault[0], headers=fault[2])
            return await call_next(request)

    @app.get("/v1/models")
    async def models():
        if emulate is not None:
            return {"object": "list", "data": emulate.model_objects(state.backends)}
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "local"}
                                           for m in state.backends]}

    def rate_limited() -> float | None:
        """Seconds to wait if one more request would exceed `rpm_limit` (counted over the last `rate_window_s`
        seconds, scaled: a 2 s window allows rpm_limit / 30 requests), else None."""
        if not state.rpm_limit:
            return None
        now, window = time.monotonic(), state.rate_window_s
        while state.recent and now - state.recent[0] > window:
            state.recent.popleft()
        if len(state.recent) >= max(1.0, state.rpm_limit * window / 60.0):
            return max(0.001, window - (now - state.recent[0]))
        state.recent.append(now)
        return None

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        state.stats["chat_requests"] += 1
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return _error(400, "request body is not valid JSON")
        plan = None
        if emulate is not None:
            refusal = emulate.chat_request_error(state.backends, body)
            if refusal:
                return JSONResponse(refusal[1], status_code=refusal[0])
            plan = emulate.reasoning_plan(body)          # hidden reasoning tokens of a reasoning model
        model = body.get("model")
        if model not in state.backends:
            return _error(404, f"model {model!r} not served here; have {sorted(state.backends)}",
                          "model_not_found")
        if body.get("stream"):
            return _error(400, "stream=true is not supported by the local server")
        wait = rate_limited()
        if wait is not None:
            state.stats["rate_limited"] += 1
            resp = _error(429, "rate limit reached (requests per minute)", "rate_limit_exceeded")
            resp.headers["Retry-After"] = f"{wait:.3f}"
            return resp
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        backend = state.backends[model]
        req = _request_dict(body)
        if plan is not None and plan.room is not None:
            if plan.room <= 0:                            # the reasoning took the whole max_completion_tokens
                empty = Completion("", "length", emulated_prompt_tokens(body), 0)
                return JSONResponse(emulate.usage_details(_chat_body(model, empty), plan))
            req["max_tokens"] = plan.room
        try:
            if hasattr(backend, "complete_batch"):
                if model not in batchers:
                    batchers[model] = _MicroBatcher(backend, state.batch_window_s, state.max_batch_size)
                completion = await batchers[model].submit(req)
            else:
                completion = await asyncio.to_thread(backend.complete, req["messages"], req["max_tokens"],
                                                     req["temperature"], req["stop"])
        except ServerFault as fault:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            content = fault.body if isinstance(fault.body, str) else json.dumps(fault.body)
            return Response(content, status_code=fault.status_code, headers=fault.headers,
                            media_type="application/json")
        except Exception as exc:  # noqa: BLE001 - a backend bug becomes a 500, the server stays up
            return _error(500, f"backend {model!r} failed: {type(exc).__name__}: {exc}", "server_error")
        if emulate is not None:
            return JSONResponse(emulate.usage_details(_chat_body(model, emulate.shape_completion(completion, plan)),
                                                      plan))
        return JSONResponse(_chat_body(model, completion))

    # ---- Batch API: files ------------------------------------------------------------------------------
    def file_object(fid: str) -> dict:
        f = state.files[fid]
        return {"id": fid, "object": "file", "bytes": len(f["content"]), "created_at": f["created_at"],
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed"}

    def add_file(content: bytes, filename: str, purpose: str) -> str:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        state.files[fid] = {"content": content, "filename": filename, "purpose": purpose,
                            "created_at": int(time.time())}
        return fid

    @app.post("/v1/files")
    async def upload(file: UploadFile = File(...), purpose: str = Form(...)):
        return file_object(add_file(await file.read(), file.filename or "upload.jsonl", purpose))

    @app.get("/v1/files/{fid}")
    async def file_meta(fid: str):
        return file_object(fid) if fid in state.files else _error(404, f"no file {fid!r}")

    @app.get("/v1/files/{fid}/content")
    async def file_content(fid: str):
        if fid not in state.files:
            return _error(404, f"no file {fid!r}")
        return Response(state.files[fid]["content"], media_type="application/octet-stream")

    # ---- Batch API: batches ----------------------------------------------------------------------------
    def process_batch(bid: str) -> None:
        """Run every line of a batch (grouped per model, through complete_batch); write output/error files."""
        batch = state.batches[bid]
        lines = state.files[batch["input_file_id"]]["content"].decode().splitlines()
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        outputs, errors, per_model = [], [], {}
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            item: Any = None
            try:
                item = json.loads(line)
                model = item["body"]["model"]
                if model not in state.backends:
                    raise KeyError(f"model {model!r} not served")
                per_model.setdefault(model, []).append(item)
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                cid = item.get("custom_id") if isinstance(item, dict) else None
                errors.append({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": cid, "response": None,
                               "error": {"code": "invalid_request", "message": f"line {n}: {exc}"}})
        batch["request_counts"]["total"] = sum(map(len, per_model.values())) + len(errors)
        for model, items in per_model.items():
            if batch["status"] == "cancelling":
                break
            results = _run_batch(state.backends[model], [_request_dict(i["body"]) for i in items])
            for item, res in zip(items, results):
                rid = f"batch_req_{uuid.uuid4().hex[:16]}"
                if isinstance(res, Completion):
                    outputs.append({"id": rid, "custom_id": item.get("custom_id"), "error": None, "response": {
                        "status_code": 200, "request_id": rid, "body": _chat_body(model, res)}})
                else:
                    status = res.status_code if isinstance(res, ServerFault) else 500
                    body = res.body if isinstance(res, ServerFault) else {"error": {"message": str(res)}}
                    errors.append({"id": rid, "custom_id": item.get("custom_id"), "error": None, "response": {
                        "status_code": status, "request_id": rid, "body": body}})
        batch["request_counts"].update(completed=len(outputs), failed=len(errors))
        if outputs:
            batch["output_file_id"] = add_file("".join(json.dumps(o) + "\n" for o in outputs).encode(),
                                               f"{bid}_output.jsonl", "batch_output")
        if errors:
            batch["error_file_id"] = add_file("".join(json.dumps(e) + "\n" for e in errors).encode(),
                                              f"{bid}_error.jsonl", "batch_output")
        final = "cancelled" if batch["status"] == "cancelling" else "completed"
        batch.update(status=final, **{f"{final}_at": int(time.time())})

    @app.post("/v1/batches")
    async def create_batch(request: Request):
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return _error(400, "request body is not valid JSON")
        if emulate is not None and (refusal := emulate.batch_create_error(body)):
            return JSONResponse(refusal[1], status_code=refusal[0])
        fid = body.get("input_file_id")
        if fid not in state.files:
            return _error(404, f"input_file_id {fid!r}: no such file")
        if body.get("endpoint") != "/v1/chat/completions":
            return _error(400, f"endpoint {body.get('endpoint')!r}: only /v1/chat/completions is served")
        if emulate is not None and state.files[fid]["purpose"] != "batch":
            # CreateBatchRequest.input_file_id: the file "must be uploaded with the purpose `batch`".
            return JSONResponse({"error": {"message": f"File {fid} was not uploaded with purpose 'batch'.",
                                           "type": "invalid_request_error", "param": "input_file_id",
                                           "code": None}}, status_code=400)
        bid = f"batch_{uuid.uuid4().hex[:24]}"
        state.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None, "input_file_id": fid,
            "completion_window": body.get("completion_window", "24h"), "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "metadata": body.get("metadata"), "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        if emulate is not None:
            # Always `validating` first; validation, the enqueued-token limit, latency and expiry come afterwards
            # (orca_utils.backends.openai_emulation, from OpenAI's Batch documentation).
            created = state.batches[bid]["created_at"]
            state.batches[bid].update({f"{k}_at": None for k in ("in_progress", "finalizing", "completed", "failed",
                                                                  "expired", "cancelling", "cancelled")})
            state.batches[bid]["expires_at"] = created + int(emulate.completion_window_s)
            start_batch(emulate, state, bid, _run_batch, _chat_body, add_file)
            return _public(state.batches[bid])
        asyncio.get_running_loop().run_in_executor(None, process_batch, bid)
        return _public(state.batches[bid])

    @app.get("/v1/batches/{bid}")
    async def get_batch(bid: str):
        return _public(state.batches[bid]) if bid in state.batches else _error(404, f"no batch {bid!r}")

    @app.post("/v1/batches/{bid}/cancel")
    async def cancel_batch(bid: str):
        if bid not in state.batches:
            return _error(404, f"no batch {bid!r}")
        batch = state.batches[bid]
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelling"
            if emulate is not None:
                batch["cancelling_at"] = int(time.time())
        return _public(batch)

    return app


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _free_socket(host: str, port: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port or 0))          # port 0: the OS picks a free port; we keep the socket, so no race
    return sock


@contextlib.contextmanager
def serve_openai_compatible(backends: dict[str, Any], *, host: str = "127.0.0.1", port: int | None = None,
                            latency_s: float = 0.0, rpm_limit: float | None = None, rate_window_s: float = 60.0,
                            batch_window_s: float = 0.01, max_batch_size: int = 16,
                            ready_timeout_s: float = 30.0, log_level: str = "warning",
                            emulate: Emulation | None = None) -> Iterator[str]:
    """Serve `backends` ({model name: backend}) on `host`; yield the base URL `http://host:port/v1`.

    The server is up (GET /v1/models answered) before the body runs, and stopped when it ends or raises.
    The app's state (request counts, files, batches) is reachable as `serve_openai_compatible.last_app`.
    """
    import uvicorn

    if not is_loopback(host):
        raise ValueError(f"serve_openai_compatible: host {host!r}: only loopback addresses are allowed")
    app = build_app(backends, latency_s=latency_s, rpm_limit=rpm_limit, batch_window_s=batch_window_s,
                    max_batch_size=max_batch_size, rate_window_s=rate_window_s, emulate=emulate)
    serve_openai_compatible.last_app = app
    sock = _free_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2,
                            lifespan="off", limit_concurrency=None, backlog=2048)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"openai-compatible-{bound_port}")
    thread.start()
    base_url = f"http://{host}:{bound_port}/v1"
    try:
        wait_ready(base_url, alive=thread.is_alive, timeout_s=ready_timeout_s, poll_s=0.05, probe_timeout_s=1.0,
                   headers={"Authorization": "Bearer readiness-probe"},
                   on_exit=lambda: RuntimeError(f"local OpenAI-compatible server on {host}:{bound_port} exited at "
                                                f"start-up"),
                   on_timeout=lambda: TimeoutError(f"local OpenAI-compatible server on {host}:{bound_port} not ready "
                                                   f"after {ready_timeout_s:.0f}s"))
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
