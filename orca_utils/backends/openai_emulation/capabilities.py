"""What each emulated model accepts and how the emulator counts tokens.

`ModelCapabilities` and the per-model table (`DEFAULT_CAPABILITIES`, with `GENERIC_REASONING` for reasoning models
the table does not name and `CHAT_MODEL` for the rest), the `reasoning_effort` values OpenAI defines, the hidden
reasoning tokens spent per effort (`DEFAULT_REASONING_TOKENS`, `ReasoningPlan`) and the emulator's own prompt-token
count (`emulated_prompt_tokens`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["REASONING_EFFORTS", "ModelCapabilities", "DEFAULT_CAPABILITIES", "GENERIC_REASONING", "CHAT_MODEL",
           "DEFAULT_REASONING_TOKENS", "ReasoningPlan", "emulated_prompt_tokens"]

# OpenAPI `ReasoningEffort` (openai/openai-openapi@f85dbe2, openapi.json, components.schemas.ReasoningEffort):
# "Currently supported values are none, minimal, low, medium, high, xhigh, and max ... Not all reasoning models
# support every value"; its `default` is "medium".
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class ModelCapabilities:
    """What one model accepts on `POST /v1/chat/completions`.

    reasoning: a reasoning model (`max_completion_tokens` only, hidden reasoning tokens, default temperature only).
    efforts: the `reasoning_effort` values it accepts (a subset of `REASONING_EFFORTS`); default_effort: the one used
    when the request sends none. accepts_stop: whether `stop` is accepted. sampling_with_effort_none: whether a
    temperature other than 1 is accepted while the (effective) effort is `none`.
    """

    reasoning: bool = False
    efforts: tuple[str, ...] = ()
    default_effort: str | None = None
    accepts_stop: bool = True
    sampling_with_effort_none: bool = False


# Sources for the table:
# - ReasoningEffort's description in OpenAI's OpenAPI (as above, and as quoted by
#   docs.rs/agentsdk-openai ReasoningEffort): models that default to `none` (gpt-5.1) run without reasoning; "All
#   models before gpt-5.1 default to medium reasoning effort, and do not support none".
# - BerriAI/litellm#28662: models that support `reasoning_effort='none'` accept `stop`; gpt-5 and gpt-5-mini, which
#   have no `none`, keep rejecting it. huggingface/smolagents#1893 quotes the refusal: 400 "Unsupported parameter:
#   'stop' is not supported with this model.", param `stop`, code `unsupported_parameter`.
# - orca_utils.chat_api.registry (the registry): gpt-6-luna "reasoning_effort none..max (temperature only with none)",
#   gpt-6.1-sol "reasoning_effort low..max (no none/minimal)".
DEFAULT_CAPABILITIES: dict[str, ModelCapabilities] = {
    "gpt-6-luna": ModelCapabilities(reasoning=True, efforts=REASONING_EFFORTS, default_effort="none",
                                    accepts_stop=True, sampling_with_effort_none=True),
    "gpt-6.1-sol": ModelCapabilities(reasoning=True, efforts=("low", "medium", "high", "xhigh", "max"),
                                     default_effort="medium", accepts_stop=False),
}
# A reasoning model the table does not name: the pre-gpt-5.1 family (no `none`, default `medium`, no `stop`).
GENERIC_REASONING = ModelCapabilities(reasoning=True, efforts=("minimal", "low", "medium", "high"),
                                      default_effort="medium", accepts_stop=False)
CHAT_MODEL = ModelCapabilities()

# Hidden reasoning tokens per request by effort: the emulator's own, deterministic numbers (OpenAI publishes none;
# the OpenAPI text only says that lower effort means "fewer tokens used on reasoning").
DEFAULT_REASONING_TOKENS = {"none": 0, "minimal": 16, "low": 64, "medium": 256, "high": 1024, "xhigh": 2048,
                            "max": 4096}


def emulated_prompt_tokens(body: dict) -> int:
    """The emulator's own prompt-token count, without a tokenizer.

    OpenAI's cookbook ("How to count tokens with tiktoken", chat models): 3 tokens per message, 1 more for a
    `name`, 3 to prime the reply; the text itself at OpenAI's rule of thumb of about 4 characters a token
    (help.openai.com "What are tokens and how to count them?"), rounded up. Text parts of list contents are counted;
    other parts (images, audio, files) count 0.
    """
    total = 3
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += 3 + (1 if message.get("name") else 0)
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        total += math.ceil(len(str(content or "")) / 4)
    return total


@dataclass(frozen=True)
class ReasoningPlan:
    """How a reasoning request spends `max_completion_tokens`: hidden reasoning first, the rest is visible room."""

    effort: str | None
    reasoning_tokens: int          # spent (at most the cap)
    room: int | None               # visible tokens left; None: no cap sent
    cap: int | None

