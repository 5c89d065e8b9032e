"""Any OpenAI-compatible chat endpoint as a backend (OpenAI, Azure, vLLM, llama.cpp server, Ollama, our local server).

Requests are written in the model's dialect by the wire format (`orca_utils.chat_api.wire.request_body`), sent
`concurrency` at a time, and cut at the stop strings here too (servers may honour only four). A chat endpoint
returns no prompt log-probabilities: `loglikelihood` raises (the base's), so such a model is scored in generation
mode.
"""
from __future__ import annotations

import concurrent.futures
from typing import Sequence

from ..chat_api.registry import dialect_for
from ..chat_api.wire import ChatRequest, request_body
from .base import Backend, Completion, Conversation, cut_at_stop, progress_bar, to_messages
from .endpoints import openai_client

__all__ = ["OpenAIBackend"]


class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, llama.cpp server, Ollama, our local server).

    The key is read from the environment variable named `api_key_env` (never passed as a value). A local endpoint
    (127.0.0.1 / localhost) needs no key. Requests run `concurrency` at a time; the `openai` client retries
    rate limits and server errors `max_retries` times with backoff.
    """

    def __init__(self, base_url: str | None, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 120.0, max_retries: int = 5, concurrency: int = 4, progress: bool = True,
                 label: str | None = None):
        def missing_key(env: str) -> Exception:
            return RuntimeError(f"OpenAIBackend({model!r}): environment variable {env} is not set; "
                                f"export it (the key is never read from params)")

        self.client = openai_client(base_url, api_key_env, timeout_s=timeout_s, max_retries=max_retries,
                                    missing_key=missing_key)
        self.model, self.base_url = model, base_url
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self.label = label or model

    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        stop = [s for s in (stop or []) if s]
        request = ChatRequest("eval", self.model, messages, max_tokens, temperature, stop[:4] or None,
                              dialect_for(self.model))
        resp = self.client.chat.completions.create(**request_body(request))
        choice = resp.choices[0]
        text, hit = cut_at_stop(choice.message.content or "", stop)   # servers may only honour 4 stop strings
        usage = resp.usage
        return Completion(text.strip(), "stop" if hit else (choice.finish_reason or "stop"),
                          getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)

    def generate_completions(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                             stop: Sequence[str] | None = None, system_message: str | None = None
                             ) -> list[Completion]:
        messages = [to_messages(c, system_message) for c in conversations]
        out: list[Completion | None] = [None] * len(messages)
        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self.complete, m, max_new_tokens, 0.0, list(stop or [])): i
                       for i, m in enumerate(messages)}
            for fut in progress_bar(concurrent.futures.as_completed(futures), len(futures),
                                    f"generate ({self.label})", self.progress):
                out[futures[fut]] = fut.result()
        return out  # type: ignore[return-value]

    def complete_batch(self, requests: list[dict]) -> list[Completion]:
        return [self.complete(r["messages"], int(r.get("max_tokens") or 256), float(r.get("temperature") or 0.0),
                              r.get("stop")) for r in requests]
