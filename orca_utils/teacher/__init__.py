"""The teacher: chat requests to GPT-4, ChatGPT or an offline stand-in, behind one OpenAI-compatible client.

    from orca_utils.teacher import ChatRequest, complete_chats
    run = complete_chats(requests, endpoint, cache_path, prices=prices, max_cost_usd=100.0)

- `client.py`: the client, cached, paced to requests and tokens per minute, retried and costed (`complete_chats`,
  `estimate_cost`; `plan_requests`: what a run reuses and what it sends, per `endpoint.resend_statuses`);
- `batch.py`: its Batch API mode (`endpoint.batch_mode`), into the same cache;
- `cache.py`: the SQLite response cache (`ResponseCache`, `request_key`, by prompt identity `prompt_key`);
- `offline.py`: the smoke profile's offline teachers (`DataTeacher`, a small local LLM) and `serve_offline`, the
  one way 02, 07, 08 and 09 put offline backends behind the local server;
- `backend.py`: `TeacherClientBackend`, a paid API model as an evaluation backend through this client (05/06).

Built on `orca_utils.chat_api` (the model registry; `ChatRequest`, its body and the retry helpers) and
`orca_utils.backends` (the OpenAI client factory, the local OpenAI-compatible server, `HFBackend`); the names
re-exported from there keep working from here. `models.py`, `protocol.py`, `local_server.py` and
`openai_emulation.py` are re-export shims for one release. The local server's names (`serve_openai_compatible`,
`Emulation`, `build_app`) are loaded on first use, so that importing the client does not load FastAPI.
"""
from __future__ import annotations

from ..backends.base import Completion, ServerFault
from ..backends.base import Servable as Backend
from ..chat_api.registry import PAPER_TEACHERS, REGISTRY, TeacherModel, dialect_for, lookup, retired_on
from ..chat_api.wire import (ChatRequest, TeacherConfigError, classify_response, config_error_message, prompt_key,
                             prompt_tokens_of, request_body, request_json)
from .backend import TeacherClientBackend
from .batch import chunk_requests, run_batches
from .cache import CachedResponse, ResponseCache, request_key
from .client import (STATUSES, ChatResult, ChatRun, CostEstimate, CostLimitError, Plan, Prices, RateLimiter,
                     check_models, complete_chats, emulation_for, estimate_cost, make_client, plan_requests,
                     resend_policy, run_chat_async)
from .offline import DataTeacher, LazyBackend, local_llm_teacher, offline_backends, serve_offline, wants_explanation

_SERVER_NAMES = ("Emulation", "build_app", "serve_openai_compatible")

__all__ = [
    # client
    "STATUSES", "ChatResult", "ChatRun", "CostEstimate", "CostLimitError", "Prices", "RateLimiter", "check_models",
    "complete_chats", "emulation_for", "estimate_cost", "make_client", "run_chat_async", "Plan", "plan_requests",
    "resend_policy",
    # batch, cache, registry
    "chunk_requests", "run_batches", "CachedResponse", "ResponseCache", "request_key", "prompt_key",
    "PAPER_TEACHERS", "REGISTRY", "TeacherModel", "dialect_for", "lookup", "retired_on",
    # protocol
    "Backend", "ChatRequest", "Completion", "ServerFault", "TeacherConfigError", "classify_response",
    "config_error_message", "prompt_tokens_of", "request_body", "request_json",
    # offline teachers and the local server
    "DataTeacher", "LazyBackend", "local_llm_teacher", "offline_backends", "serve_offline", "wants_explanation",
    "TeacherClientBackend", *_SERVER_NAMES,
]


def __getattr__(name: str):
    if name in _SERVER_NAMES:
        from ..backends import local_server

        return getattr(local_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
