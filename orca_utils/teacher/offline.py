"""Offline teachers for the smoke profile, served by `backends.local_server` behind the same client as GPT-4.

- `DataTeacher`: answers only from what the data holds. For FLAN-v2 CoT queries, the human-written rationale and
  answer, shaped by the system message (a short answer when it asks for nothing more; the rationale then the
  answer when it asks to explain, justify or think step by step; the answer first when it asks to "first output the
  correct answer"); for every other collection, the reference output. It never invents an explanation. It finds a
  query's reference data through a lookup keyed by the user message (the query text), built from 01's queries
  table; a query missing from the lookup is answered with HTTP 400 (recorded as status `error`, never guessed).
- `local_llm_teacher`: a Hugging Face causal LM with its chat template (default: the smoke SmolLM2-135M-Instruct),
  batched greedy generation with left padding, honouring max_tokens and stop: `orca_utils.backends.HFBackend`, whose
  `complete_batch` the server's micro-batcher and Batch API jobs call.
`offline_backends(...)` builds the {model name: backend} mapping the notebook serves for its two stages.
"""
from __future__ import annotations

import contextlib
import re
import threading
from typing import Callable, Iterable, Iterator

from ..backends.base import Completion, ServerFault

__all__ = ["DataTeacher", "LazyBackend", "wants_explanation", "local_llm_teacher", "offline_backends", "serve_offline"]

_EXPLAIN = re.compile(r"explain|step-by-step|step by step|justify|detailed|describe|long answer|simple steps|"
                      r"break the definition", re.IGNORECASE)
_ANSWER_FIRST = re.compile(r"first output the correct answer", re.IGNORECASE)


def wants_explanation(system_message: str) -> bool:
    """Does the system message ask for more than the answer (an explanation, steps, detail)?"""
    return bool(_EXPLAIN.search(system_message or ""))


def _words(text: str) -> int:
    return len(text.split())


class DataTeacher:
    """An OpenAI-compatible backend answering from reference data, looked up by the user message.

    `records`: dicts (or a DataFrame's rows) with `inputs`, `targets`, `rationale`, `collection`. When one query
    text appears with several targets, the first is kept and `conflicts` counts the others.
    """

    def __init__(self, records: Iterable[dict], count_tokens: Callable[[str], int] | None = None):
        self.count_tokens = count_tokens or _words
        self.lookup: dict[str, dict] = {}
        self.conflicts = 0
        for rec in records:
            query = rec["inputs"]
            if query in self.lookup:
                self.conflicts += self.lookup[query]["targets"] != rec["targets"]
                continue
            self.lookup[query] = {"targets": str(rec["targets"]), "rationale": str(rec.get("rationale") or ""),
                                  "collection": rec.get("collection", "")}

    @classmethod
    def from_frame(cls, df, count_tokens: Callable[[str], int] | None = None) -> "DataTeacher":
        missing = {"inputs", "targets", "rationale", "collection"} - set(df.columns)
        if missing:
            raise ValueError(f"DataTeacher: queries table lacks columns {sorted(missing)}")
        return cls(df[["inputs", "targets", "rationale", "collection"]].to_dict("records"), count_tokens)

    def answer(self, system: str, user: str) -> str:
        rec = self.lookup.get(user)
        if rec is None:
            raise ServerFault(400, {"error": {"message": "data teacher: no reference data for this query",
                                              "type": "invalid_request_error"}})
        target, rationale = rec["targets"].strip(), rec["rationale"].strip()
        if rec["collection"] != "cot" or not rationale or not wants_explanation(system):
            return target
        if _ANSWER_FIRST.search(system):
            return f"Answer: {target}\n\n{rationale}"
        return f"{rationale}\n\nSo the answer is: {target}"

    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        text = self.answer(system, user)
        reason = "stop"
        for s in stop or []:
            if s and s in text:
                text = text[:text.index(s)]
        words = text.split(" ")
        if self.count_tokens(text) > max_tokens:      # honour max_tokens: cut whole words until it fits
            while words and self.count_tokens(" ".join(words)) > max_tokens:
                words = words[:max(1, int(len(words) * 0.9))] if len(words) > 1 else []
            text, reason = " ".join(words), "length"
        prompt = sum(self.count_tokens(m["content"]) for m in messages)
        return Completion(text, reason, prompt, self.count_tokens(text))


class LazyBackend:
    """Builds its backend on the first request: a fully cached rerun never loads the model."""

    def __init__(self, factory: Callable[[], object]):
        self.factory, self.backend, self.lock = factory, None, threading.Lock()

    def _get(self):
        with self.lock:
            if self.backend is None:
                self.backend = self.factory()
            return self.backend

    def complete(self, messages, max_tokens, temperature=0.0, stop=None) -> Completion:
        return self._get().complete(messages, max_tokens, temperature, stop)

    def complete_batch(self, requests: list[dict]) -> list[Completion]:
        return self._get().complete_batch(requests)


def local_llm_teacher(model_spec: str, batch_size: int = 8, device: str = "cpu", label: str | None = None):
    """A HF causal LM as a teacher backend (`HFBackend`: chat template, batched greedy, left padding, stop),
    loaded on its first request."""
    from ..backends.hf import HFBackend

    return LazyBackend(lambda: HFBackend(model_spec, batch_size=batch_size, device=device, progress=False,
                                         label=label))


def offline_backends(stages: dict, queries, default_model_spec: str, device: str = "cpu",
                     count_tokens: Callable[[str], int] | None = None) -> dict:
    """{model name: backend} for every stage whose teacher is offline (`offline_backend` data / local_llm).

    `stages`: {stage name: TeacherModelParams}; `queries`: a DataFrame of 01's queries (the data teacher's lookup).
    """
    backends: dict = {}
    for params in stages.values():
        if params.offline_backend == "none" or params.model in backends:
            continue
        if params.offline_backend == "data":
            backends[params.model] = DataTeacher.from_frame(queries, count_tokens)
        else:
            backends[params.model] = local_llm_teacher(params.local_model or default_model_spec,
                                                       params.local_batch_size, device, params.label)
    return backends


@contextlib.contextmanager
def serve_offline(backends: dict, endpoint, max_batch_size: int = 16, batch_window_s: float = 0.05) -> Iterator:
    """The one way notebooks serve offline teachers, references and judges: `backends` ({model name: backend})
    behind the local OpenAI-compatible server for the block, which yields `endpoint` pointed at it (OpenAI wire
    format; the endpoint's `emulate_openai` settings applied). 02, 07, 08 and 09 all send through the same
    teacher client as with a real endpoint."""
    from ..backends.local_server import serve_openai_compatible
    from .client import emulation_for

    with serve_openai_compatible(backends, max_batch_size=max_batch_size, batch_window_s=batch_window_s,
                                 emulate=emulation_for(endpoint)) as base_url:
        yield endpoint.model_copy(update={"base_url": base_url, "api_type": "openai"})

