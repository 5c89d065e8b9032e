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

Per-model request facts (checked before anything is sent):
- `reasoning_efforts`: the `reasoning_effort` values the model accepts, from OpenAI's ReasoningEffort enum (none,
  minimal, low, medium, high, xhigh, max; "not all reasoning models support every value": see the reasoning guide,
  https://platform.openai.com/docs/guides/reasoning). `()`: the model takes no effort at all; `None`: unknown (only
  the enum is checked). gpt-oss takes low/medium/high, also through vLLM's chat completions
  (https://docs.vllm.ai/en/latest/features/reasoning_outputs.html; `reasoning_effort` in the chat dialect).
- `accepts_stop`: reasoning models that cannot switch reasoning off (no effort `none`: GPT-5, the o-series,
  gpt-6.1-sol) reject `stop` with 400 `unsupported_parameter`; the client leaves `stop` out of their requests and
  cuts the answer at the stop string itself (`orca_utils.chat_api.wire.request_body`).

Prices are list prices per 1,000 tokens as published when the entry was written (`priced_on`); check your
provider's price list before a run. The Batch API halves them (the endpoint's `batch_price_factor`).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = ["TeacherModel", "REGISTRY", "PAPER_TEACHERS", "REASONING_EFFORTS", "dialect_for", "lookup", "retired_on",
           "accepts_stop", "effort_error"]

# OpenAI's ReasoningEffort enum, lowest to highest (API reference: chat.completions `reasoning_effort`).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_O_SERIES = ("low", "medium", "high")
_GPT5 = ("minimal", "low", "medium", "high")


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
    reasoning_efforts: tuple[str, ...] | None = None   # accepted `reasoning_effort` values; () none; None unknown
    accepts_stop: bool = True                 # False: 400 unsupported_parameter on `stop`


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
    _m("o1", "o1", "reasoning", "openai", 0.015, 0.06, "2024-12", "2026-10-23",
       reasoning_efforts=_O_SERIES, accepts_stop=False),
    _m("o3-mini", "o3-mini", "reasoning", "openai", 0.0011, 0.0044, "2025-01", "2026-10-23",
       reasoning_efforts=_O_SERIES, accepts_stop=False),
    _m("o4-mini", "o4-mini", "reasoning", "openai", 0.0011, 0.0044, "2025-04", "2026-10-23",
       reasoning_efforts=_O_SERIES, accepts_stop=False),
    _m("gpt-4o", "GPT-4o", "chat", "openai", 0.0025, 0.01, "2024-11", "2027-01-14", reasoning_efforts=()),
    _m("gpt-4o-mini", "GPT-4o mini", "chat", "openai", 0.00015, 0.0006, "2024-07", "2027-01-14",
       reasoning_efforts=()),
    _m("gpt-4.1", "GPT-4.1", "chat", "openai", 0.002, 0.008, "2025-04", "2027-01-14", reasoning_efforts=()),
    _m("gpt-4.1-mini", "GPT-4.1 mini", "chat", "openai", 0.0004, 0.0016, "2025-04", "2027-01-14",
       reasoning_efforts=()),
    _m("gpt-5", "GPT-5", "reasoning", "openai", 0.00125, 0.01, "2025-08", "2026-12-11",
       reasoning_efforts=_GPT5, accepts_stop=False),
    _m("gpt-5-mini", "GPT-5 mini", "reasoning", "openai", 0.00025, 0.002, "2025-08", "2026-12-11",
       reasoning_efforts=_GPT5, accepts_stop=False),
    # Current API models (reasoning: max_completion_tokens, default temperature only).
    _m("gpt-6-luna", "GPT-6 Luna", "reasoning", "openai", 0.0001, 0.0005, "2026-09-22", None,
       "high-volume tier; reasoning_effort none..max (temperature only with none)",
       reasoning_efforts=REASONING_EFFORTS),
    _m("gpt-6.1-sol", "GPT-6.1 Sol", "reasoning", "openai", 0.002, 0.01, "2026-09-29", None,
       "reasoning_effort low..max (no none/minimal); rejects `stop`",
       reasoning_efforts=REASONING_EFFORTS[2:], accepts_stop=False),
    # Open weights: served by vLLM / SGLang / transformers serve; they never retire.
    _m("openai/gpt-oss-20b", "gpt-oss-20b (open weights)", "chat", "open-weights",
       note="Apache-2.0; one 80 GB GPU; the smaller teacher (stage 1)", reasoning_efforts=_O_SERIES),
    _m("openai/gpt-oss-120b", "gpt-oss-120b (open weights)", "chat", "open-weights",
       note="Apache-2.0; one 80 GB GPU (MXFP4) or tensor parallel; the larger teacher (stage 2)",
       reasoning_efforts=_O_SERIES),
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


def accepts_stop(model: str) -> bool:
    """False when the registry knows the model rejects `stop` (then the client cuts answers at the stop itself)."""
    entry = lookup(model)
    return entry is None or entry.accepts_stop


def effort_error(model: str, effort: str | None, where: str = "reasoning_effort") -> str | None:
    """One line when `effort` is not a value `model` accepts (OpenAI's enum, then the registry's set), else None."""
    if effort is None:
        return None
    if effort not in REASONING_EFFORTS:
        return (f"model {model!r}: `{where}: {effort}` is not a reasoning effort (OpenAI's values: "
                f"{', '.join(REASONING_EFFORTS)})")
    entry = lookup(model)
    if entry is None or entry.reasoning_efforts is None or effort in entry.reasoning_efforts:
        return None
    if not entry.reasoning_efforts:
        return f"model {model!r} takes no reasoning effort: set `{where}: null`"
    return (f"model {model!r} does not accept `{where}: {effort}`: use one of "
            f"{', '.join(entry.reasoning_efforts)} (orca_utils/chat_api/registry.py)")
