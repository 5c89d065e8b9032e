"""A paid API model as an evaluation backend, through the teacher client (`TeacherClientBackend`).

05/06 score `api_models` with it: the same cache, pacing, retries, dialects and cost cap as 02's teacher, behind
the `orca_utils.backends` interface (`generate_completions`; `loglikelihood` raises: generation mode only).
"""
from __future__ import annotations

import json
from typing import Sequence

from ..backends.base import Backend, Completion, Conversation, cut_at_stop, to_messages
from ..chat_api.wire import ChatRequest
from .client import Prices, complete_chats

__all__ = ["TeacherClientBackend"]


class TeacherClientBackend(Backend):
    """A paid API model scored like a local one, through the teacher client (`orca_utils.teacher.complete_chats`):
    every answer lands in a SQLite response cache before it is used (a rerun pays nothing twice), requests are
    paced and retried like 02's, the model's dialect (chat or reasoning) is the registry's, and `max_cost_usd` caps
    the spend over every call of this backend (prices from the registry by model name unless given).

    Answers a reasoning model's hidden reasoning left empty or cut (`empty`, `truncated`), refusals and filtered
    answers are scored as they are (an empty answer is wrong, an extraction failure) and counted:
    `status_counts` (Counter over every answer), `statuses` ({prompt: status}), `reasoning_tokens`. Only `error`
    and `not_sent` stop the evaluation (rerun to resume). `stop` is not sent to a model that rejects it; the
    answer is cut at the stop string here instead, so scoring is unchanged."""

    def __init__(self, model, endpoint, cache_path, max_cost_usd: float | None = None, progress: bool = True):
        from collections import Counter

        self.model, self.endpoint, self.cache_path = model, endpoint, cache_path
        self.max_cost_usd, self.progress = max_cost_usd, progress
        self.label = model.label
        self.spent_usd = 0.0
        self.status_counts: Counter = Counter()
        self.statuses: dict[str, str] = {}
        self.reasoning_tokens = 0

    def generate_completions(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                             stop: Sequence[str] | None = None, system_message: str | None = None
                             ) -> list[Completion]:
        stop = [x for x in (stop or []) if x][:4] or None
        requests = [ChatRequest(f"{self.model.model}-{i}", self.model.model, to_messages(c, system_message),
                                max_new_tokens, 0.0, stop, self.model.dialect, self.model.reasoning_effort)
                    for i, c in enumerate(conversations)]
        prices = Prices(self.model.price_input_usd_per_1k or 0.0, self.model.price_output_usd_per_1k or 0.0)
        left = None if self.max_cost_usd is None else max(0.0, self.max_cost_usd - self.spent_usd)
        run = complete_chats(requests, self.endpoint, self.cache_path, prices=prices, max_cost_usd=left,
                             progress=self.progress, desc=f"generate ({self.label})")
        self.spent_usd += float(run.stats.get("spent_usd", 0.0))
        failed = [r for r in run.results if r.status in ("error", "not_sent")]
        if failed:
            raise RuntimeError(f"{self.label}: {len(failed)} of {len(requests)} requests not answered "
                               f"({failed[0].status}: {failed[0].error}); answers so far are cached in "
                               f"{self.cache_path}: rerun to resume")
        out = []
        for c, r in zip(conversations, run.results):
            self.status_counts[r.status] += 1
            self.statuses[c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)] = r.status
            self.reasoning_tokens += int(getattr(r, "reasoning_tokens", 0) or 0)
            text, hit = cut_at_stop(r.text or "", stop or [])
            out.append(Completion(text.strip(), "stop" if hit else (r.finish_reason or "stop"), r.prompt_tokens,
                                  r.completion_tokens))
        return out
