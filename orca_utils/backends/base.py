"""What every backend shares: the `Completion` result, the `Backend` base with `generate()`, and the helpers they use.

A backend answers `generate_completions(conversations, max_new_tokens, stop=None, system_message=None)` with one
`Completion` per conversation; `generate()` (the texts only) is written once, here. A conversation is a list of
chat messages (`{"role": ..., "content": ...}`) or a plain string (one user turn). Decoding is greedy (the paper's
evaluation); the optional `system_message` is prepended to conversations that have none.

What the local OpenAI-compatible server serves is smaller (`Servable`: `complete`, optionally `complete_batch`):
stand-ins such as the data teacher implement only that. `ServerFault` lets a served object answer with an arbitrary
HTTP status. They live here, not in the server module, so that a backend does not load FastAPI.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, Union

__all__ = ["Completion", "Backend", "Servable", "ServerFault", "Conversation", "to_messages", "cut_at_stop",
           "progress_bar"]

Conversation = Union[str, Sequence[dict]]


@dataclass
class Completion:
    """One answer of a backend: the text, why it ended, and its token counts."""

    text: str
    finish_reason: str = "stop"          # "stop" | "length" | "content_filter"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend(Protocol):
    """A model text comes out of (`HFBackend`, `OpenAIBackend`, the teacher client's adapter)."""

    label: str

    def generate_completions(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                             stop: Sequence[str] | None = None, system_message: str | None = None
                             ) -> list[Completion]: ...

    def generate(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                 stop: Sequence[str] | None = None, system_message: str | None = None) -> list[str]:
        """Greedy generations (texts cut before the first stop string), in the order given."""
        return [c.text for c in self.generate_completions(conversations, max_new_tokens, stop, system_message)]

    def loglikelihood(self, requests, system_message=None) -> list[float]:
        raise NotImplementedError(f"{self.label}: chat endpoints return no prompt log-probabilities; score this "
                                  f"model in generation mode (mode='generate')")


class Servable(Protocol):
    """What the local server serves (optionally also `complete_batch(requests) -> list[Completion]`)."""

    def complete(self, messages: list[dict], max_tokens: int, temperature: float,
                 stop: list[str] | None) -> Completion: ...


class ServerFault(Exception):
    """Raised by a backend to make the server answer `status_code` with `body` (str: sent verbatim)."""

    def __init__(self, status_code: int = 500, body: str | dict | None = None, headers: dict | None = None,
                 delay_s: float = 0.0):
        super().__init__(f"injected fault {status_code}")
        self.status_code, self.headers, self.delay_s = status_code, headers or {}, delay_s
        self.body = body if body is not None else {"error": {"message": f"injected {status_code}",
                                                             "type": "server_error"}}


def to_messages(conversation: Conversation, system_message: str | None = None) -> list[dict]:
    """A conversation as chat messages; `system_message` (if non-empty) is prepended when there is no system turn."""
    if isinstance(conversation, str):
        messages = [{"role": "user", "content": conversation}]
    else:
        messages = [dict(m) for m in conversation]
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"conversation message {i}: expected a dict with 'role' and 'content', got {m!r}")
    if system_message and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_message})
    return messages


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """`text` cut before the earliest stop string; also whether a stop string was found."""
    cut = len(text)
    for s in stop or ():
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut], cut < len(text)


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    """`iterable` behind a tqdm bar when `enabled` (tqdm loaded only then)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)
