"""The symbolic teacher: a backend of the local OpenAI-compatible server that explains symbolic BBH problems.

It plays the role GPT-4 and ChatGPT play in Orca, for the tasks of `experiment.symbolic`: given a chat request
(system message + one BBH-format problem as the user turn) it answers with a step-by-step explanation whose detail
the system message sets, exactly as Orca's system messages shape the teacher's responses:

| style    | system message (`SYSTEM_MESSAGES`)                                   | response                       |
|----------|----------------------------------------------------------------------|--------------------------------|
| `answer` | "Answer with the final answer only."                                 | `So the answer is X.`          |
| `short`  | "Explain briefly: give only the key intermediate results."           | key steps + answer             |
| `full`   | "Think step-by-step and justify every step."                         | every step + answer            |

Other system messages are read by keywords (see `style_of`). Serving it with
`serve_openai_compatible({"symbolic-teacher": SymbolicTeacher()})` keeps the pipeline unchanged: the same teacher
client that talks to GPT-4 collects these responses (`collect_responses`).
"""
from __future__ import annotations

import re
from typing import Any

from ..backends.base import Completion
from .symbolic import STYLES, detect_task, explain

__all__ = ["SYSTEM_MESSAGES", "SymbolicTeacher", "style_of", "TEACHER_LABEL"]

TEACHER_LABEL = "symbolic teacher (program-written explanations; offline stand-in, not GPT-4)"

SYSTEM_MESSAGES = {
    "answer": "Answer with the final answer only.",
    "short": "Explain briefly: give only the key intermediate results.",
    "full": "Think step-by-step and justify every step.",
}


def style_of(system_message: str | None) -> str:
    """The explanation style a system message asks for: exact `SYSTEM_MESSAGES` first, then keywords."""
    text = (system_message or "").strip()
    for style, message in SYSTEM_MESSAGES.items():
        if text == message:
            return style
    low = text.lower()
    if re.search(r"answer only|only the (final )?answer|final answer only|without explanation", low):
        return "answer"
    if re.search(r"\bbrief|\bshort|\bconcise|key (intermediate )?results", low):
        return "short"
    return "full"      # Orca's default teacher behaviour: a detailed, step-by-step response


def _count_tokens(text: str) -> int:
    return len(text.split())


class SymbolicTeacher:
    """Backend for `backends.local_server`: `complete(messages, max_tokens, temperature, stop) -> Completion`."""

    label = TEACHER_LABEL

    def complete(self, messages: list[dict], max_tokens: int = 1024, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        user = [m["content"] for m in messages if m.get("role") == "user"]
        if not user:
            raise ValueError("symbolic teacher: the request has no user message")
        problem = user[-1].strip()
        text = explain(detect_task(problem), problem, style_of(system))
        words = text.split(" ")
        finish = "stop"
        if len(words) > max_tokens:                  # honour the length limit the way an API does
            text, finish = " ".join(words[:max_tokens]), "length"
        for s in stop or []:
            if s and s in text:
                text, finish = text[:text.index(s)], "stop"
        return Completion(text=text, finish_reason=finish, prompt_tokens=_count_tokens(system + " " + problem),
                          completion_tokens=_count_tokens(text))

    def complete_batch(self, requests: list[dict[str, Any]]) -> list[Completion]:
        return [self.complete(r["messages"], int(r.get("max_tokens") or 1024), float(r.get("temperature") or 0.0),
                              r.get("stop")) for r in requests]


assert set(SYSTEM_MESSAGES) == set(STYLES)
