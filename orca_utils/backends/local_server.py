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

This module holds the app (`build_app`: models, chat completions, rate limit, emulation wiring) and the server
(`serve_openai_compatible`); beside it `local_batches` (the Batch API's files and batches endpoints),
`micro_batching` (`run_batch`, `MicroBatcher`) and `local_state` (the server's state and the bodies it writes).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from typing import Any, Iterator

# Module level (not inside build_app): FastAPI resolves the endpoints' string annotations in this namespace.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

# The backend contract lives in the base module (backends import it from there, without FastAPI).
from .base import Completion, Servable, ServerFault
from .endpoints import is_loopback
from .local_batches import add_batch_routes
from .local_state import ServerState, chat_body, error_response, request_dict
from .micro_batching import MicroBatcher
from .openai_emulation import Emulation, emulated_prompt_tokens
from .served import wait_ready

__all__ = ["Completion", "Servable", "ServerFault", "Emulation", "build_app", "serve_openai_compatible"]


def build_app(backends: dict[str, Any], latency_s: float = 0.0, rpm_limit: float | None = None,
              batch_window_s: float = 0.01, max_batch_size: int = 16, rate_window_s: float = 60.0,
              emulate: Emulation | None = None):
    """The FastAPI app (exposed for tests that want to mount it elsewhere). `app.state.orca` holds the state."""
    if not backends:
        raise ValueError("serve_openai_compatible: at least one backend is needed, e.g. {'model-name': backend}")
    state = ServerState(dict(backends), latency_s, rpm_limit, rate_window_s, batch_window_s, max_batch_size,
                        emulate=emulate)
    batchers: dict[str, MicroBatcher] = {}
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
            return error_response(400, "request body is not valid JSON")
        plan = None
        if emulate is not None:
            refusal = emulate.chat_request_error(state.backends, body)
            if refusal:
                return JSONResponse(refusal[1], status_code=refusal[0])
            plan = emulate.reasoning_plan(body)          # hidden reasoning tokens of a reasoning model
        model = body.get("model")
        if model not in state.backends:
            return error_response(404, f"model {model!r} not served here; have {sorted(state.backends)}",
                          "model_not_found")
        if body.get("stream"):
            return error_response(400, "stream=true is not supported by the local server")
        wait = rate_limited()
        if wait is not None:
            state.stats["rate_limited"] += 1
            resp = error_response(429, "rate limit reached (requests per minute)", "rate_limit_exceeded")
            resp.headers["Retry-After"] = f"{wait:.3f}"
            return resp
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        backend = state.backends[model]
        req = request_dict(body)
        if plan is not None and plan.room is not None:
            if plan.room <= 0:                            # the reasoning took the whole max_completion_tokens
                empty = Completion("", "length", emulated_prompt_tokens(body), 0)
                return JSONResponse(emulate.usage_details(chat_body(model, empty), plan))
            req["max_tokens"] = plan.room
        try:
            if hasattr(backend, "complete_batch"):
                if model not in batchers:
                    batchers[model] = MicroBatcher(backend, state.batch_window_s, state.max_batch_size)
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
            return error_response(500, f"backend {model!r} failed: {type(exc).__name__}: {exc}", "server_error")
        if emulate is not None:
            return JSONResponse(emulate.usage_details(chat_body(model, emulate.shape_completion(completion, plan)),
                                                      plan))
        return JSONResponse(chat_body(model, completion))

    add_batch_routes(app, state, emulate)

    return app


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
