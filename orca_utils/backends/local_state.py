"""What the local OpenAI-compatible server (`local_server`) shares between its parts: its state (`ServerState`: the
backends, rate-limit window, files, batches and counters) and the bodies it reads and writes (`request_dict`: a chat
request body as a backend request; `chat_body`: a `Completion` as a `chat.completion`; `error_response`)."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

from .base import Completion
from .openai_emulation import Emulation

__all__ = ["ServerState", "request_dict", "chat_body", "error_response", "public_batch"]


def request_dict(body: dict) -> dict:
    stop = body.get("stop")
    return {"messages": body.get("messages") or [],
            "max_tokens": int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
            "temperature": float(body.get("temperature") if body.get("temperature") is not None else 1.0),
            "stop": [stop] if isinstance(stop, str) else stop}


def chat_body(model: str, c: Completion) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": c.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens + c.completion_tokens}}


def error_response(status: int, message: str, kind: str = "invalid_request_error"):
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def public_batch(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


@dataclass
class ServerState:
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
