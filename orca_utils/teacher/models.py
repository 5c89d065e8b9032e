"""What we know about the models a teacher, reference or judge can be: dialect, list price, shutdown date.

API models retire (OpenAI shut down `gpt-3.5-turbo` and `gpt-4`, the paper's teachers, on 2026-10-23), so a model
name in a params file is checked twice before money is spent: by `validate --deep` against the endpoint's own
`GET /v1/models` (its `shutdown_date` field), and by this registry for models the endpoint no longer lists.

Dialects (how a chat request is written for the model):
- `chat`: `max_tokens` and `temperature` (the paper's models; vLLM, SGLang, `transformers serve`, llama.cpp).
- `reasoning`: `max_completion_tokens`, no `temperature` (the server rejects a non-default one) and an optional
  `reasoning_effort` (OpenAI's current models: GPT-5 and later, the o-series).
`dialect_for(model)` picks the default for a name: the registry's entry, else `reasoning` for OpenAI-style names
(`gpt-5*`, `gpt-6*`, `o<digit>*`), else `chat` (open-weights models behind a compatible server).

Prices are list prices per 1,000 tokens as published when the entry was written (`priced_on`); check your
provider's price list before a run. The Batch API halves them (the endpoint's `batch_price_factor`).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = ["TeacherModel", "REGISTRY", "PAPER_TEACHERS", "dialect_for", "lookup", "retired_on"]


@dataclass(frozen=True)
class TeacherModel:
    id: str
    label: str
    dialect: str                              # "chat" | "reasoning"
    provider: str                             # "openai" | "open-weights"
    price_input_usd_per_1k: float | None = None
    price_output_usd_per_1k: float | None = None
    priced_on: str | None = None
    shutdown_date: str | None = None          # YYYY-MM-DD (OpenAI's deprecations page / /v1/models)
    note: str = ""


def _m(*args, **kw) -> TeacherModel:
    return TeacherModel(*args, **kw)


REGISTRY: dict[str, TeacherModel] = {m.id: m for m in [
    # What the paper used (all shut down): kept so that a params file naming them fails with the reason.
    _m("gpt-3.5-turbo", "ChatGPT (gpt-3.5-turbo)", "chat", "openai", 0.0005, 0.0015, "2024-01",
       "2026-10-23", "the paper's stage-1 teacher"),
    _m("gpt-3.5-turbo-0301", "ChatGPT (gpt-3.5-turbo-0301)", "chat", "openai", 0.0015, 0.002, "2023-06",
       "2024-06-13", "the paper's ChatGPT snapshot"),
    _m("gpt-4", "GPT-4", "chat", "openai", 0.03, 0.06, "2023-06", "2026-10-23",
       "the paper's stage-2 teacher and judge"),
    _m("gpt-4-0314", "GPT-4 (gpt-4-0314)", "chat", "openai", 0.03, 0.06, "2023-06", "2024-06-13",
       "the paper's GPT-4 snapshot"),
    _m("gpt-4-turbo", "GPT-4 Turbo", "chat", "openai", 0.01, 0.03, "2024-04", "2026-10-23"),
    _m("o1", "o1", "reasoning", "openai", 0.015, 0.06, "2024-12", "2026-10-23"),
    _m("o3-mini", "o3-mini", "reasoning", "openai", 0.0011, 0.0044, "2025-01", "2026-10-23"),
    _m("o4-mini", "o4-mini", "reasoning", "openai", 0.0011, 0.0044, "2025-04", "2026-10-23"),
    _m("gpt-4o", "GPT-4o", "chat", "openai", 0.0025, 0.01, "2024-11", "2027-01-14"),
    _m("gpt-4o-mini", "GPT-4o mini", "chat", "openai", 0.00015, 0.0006, "2024-07", "2027-01-14"),
    _m("gpt-4.1", "GPT-4.1", "chat", "openai", 0.002, 0.008, "2025-04", "2027-01-14"),
    _m("gpt-4.1-mini", "GPT-4.1 mini", "chat", "openai", 0.0004, 0.0016, "2025-04", "2027-01-14"),
    _m("gpt-5", "GPT-5", "reasoning", "openai", 0.00125, 0.01, "2025-08", "2026-12-11"),
    _m("gpt-5-mini", "GPT-5 mini", "reasoning", "openai", 0.00025, 0.002, "2025-08", "2026-12-11"),
    # Current API models (reasoning: max_completion_tokens, default temperature only).
    _m("gpt-6-luna", "GPT-6 Luna", "reasoning", "openai", 0.0001, 0.0005, "2026-09-22", None,
       "high-volume tier; reasoning_effort none..max (temperature only with none)"),
    _m("gpt-6.1-sol", "GPT-6.1 Sol", "reasoning", "openai", 0.002, 0.01, "2026-09-29", None,
       "reasoning_effort low..max (no none/minimal)"),
    # Open weights: served by vLLM / SGLang / transformers serve; they never retire.
    _m("openai/gpt-oss-20b", "gpt-oss-20b (open weights)", "chat", "open-weights",
       note="Apache-2.0; one 80 GB GPU; the smaller teacher (stage 1)"),
    _m("openai/gpt-oss-120b", "gpt-oss-120b (open weights)", "chat", "open-weights",
       note="Apache-2.0; one 80 GB GPU (MXFP4) or tensor parallel; the larger teacher (stage 2)"),
    _m("Qwen/Qwen3-8B", "Qwen3-8B (open weights)", "chat", "open-weights"),
    _m("Qwen/Qwen3-32B", "Qwen3-32B (open weights)", "chat", "open-weights"),
]}

# The paper's teachers, for labels that say what the paper used (never what we ran).
PAPER_TEACHERS = {"stage1": "ChatGPT (gpt-3.5-turbo)", "stage2": "GPT-4", "judge": "GPT-4"}

_REASONING_NAME = re.compile(r"^(gpt-[5-9]|gpt-\d{2,}|o\d)", re.IGNORECASE)


def lookup(model: str) -> TeacherModel | None:
    """The registry entry for a model name (dated snapshots fall back to their family: `gpt-4-0613` -> `gpt-4`)."""
    if model in REGISTRY:
        return REGISTRY[model]
    base = re.sub(r"-(\d{4}-\d{2}-\d{2}|\d{4})$", "", model)
    return REGISTRY.get(base)


def dialect_for(model: str) -> str:
    entry = lookup(model)
    if entry is not None:
        return entry.dialect
    return "reasoning" if _REASONING_NAME.match(model) else "chat"


def retired_on(model: str, today: dt.date | None = None) -> str | None:
    """The shutdown date when the registry knows the model is shut down by `today`, else None."""
    entry = lookup(model)
    if entry is None or not entry.shutdown_date:
        return None
    today = today or dt.date.today()
    return entry.shutdown_date if dt.date.fromisoformat(entry.shutdown_date) <= today else None
