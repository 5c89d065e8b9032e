"""The funnel's params (`funnel:` in 02's params): per filter, on/off and its threshold.

This module imports nothing of ours (so that `orca_utils.schemas` may import it); its base has the same settings as
the schemas' `Strict` (unknown keys are an error).
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["FILTERS", "RefusalParams", "TruncatedParams", "TooLongParams", "DedupParams", "LabelAgreementParams",
           "FunnelParams"]

# The filters in the order they run; `FunnelParams` has one block per name.
FILTERS = ("refusal", "truncated", "too_long", "duplicate_query", "duplicate_response", "label_agreement")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class RefusalParams(_Strict):
    """Empty responses, refusals ("As an AI language model", "I'm sorry, but I can't" ...: `checks.REFUSAL_PATTERNS`)
    and whole-response non-answers ("I don't know": `checks.NON_ANSWERS`)."""

    enabled: bool = True
    head_chars: int = Field(100, ge=1, description="a refusal phrase counts only when it starts within the first N "
                                                   "characters of the response (a phrase quoted later is kept)")
    extra_patterns: list[str] = Field(default_factory=list, description="more refusal regexes (case-insensitive), "
                                                                        "matched like the built-in ones")

    @field_validator("extra_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"funnel.refusal.extra_patterns[{i}] = {pattern!r}: not a regular expression "
                                 f"({exc})") from None
        return patterns


class TruncatedParams(_Strict):
    """Answers the teacher's output cap cut off (`finish_reason == "length"`)."""

    enabled: bool = True


class TooLongParams(_Strict):
    """Rows longer than the training sequence (`max_len_tokens`), counted by the `token_count` given to
    `run_funnel` (the LLaMA tokenizer's count, or a column of precomputed counts)."""

    enabled: bool = True
    max_len_tokens: int = Field(2048, ge=1, description="04's training sequence length (paper: 2048)")
    measure: Literal["example", "response"] = Field(
        "example", description="example: system + user + response tokens (what 04 packs into max_len); response: "
                               "the response alone. Ignored when token_count is a column (it holds the count)")


class DedupParams(_Strict):
    """Exact duplicates (the same text, case and whitespace aside) and near duplicates (Jaccard similarity of word
    `shingle_words`-grams at or above `threshold`, found by MinHash + LSH and checked exactly); the first
    occurrence is kept and each later one records the id it duplicates."""

    enabled: bool = True
    threshold: float = Field(0.9, gt=0, le=1, description="Jaccard similarity of the shingle sets at or above which "
                                                          "two texts are near duplicates; 1.0: exact duplicates only")
    shingle_words: int = Field(5, ge=1, description="words per shingle")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (more: fewer missed pairs, slower)")
    min_words: int = Field(0, ge=0, description="texts with fewer words are never compared (short answers such as "
                                                "'yes' or '(B)' repeat legitimately)")
    boilerplate_share: float | None = Field(
        0.5, gt=0, le=1, description="shingles found in at least this share of one task's texts (an NIv2 task "
                                     "definition, a template) are left out of the near-duplicate comparison; null: "
                                     "compare whole texts")


class LabelAgreementParams(_Strict):
    """The teacher's final answer against FLAN's target, where the target can be compared (a letter option, yes/no
    and other label pairs, a number, an option's text, a short answer)."""

    enabled: bool = True
    drop_disagreeing: bool = Field(False, description="drop rows whose answer disagrees with the target (default: "
                                                      "only flag them: FLAN's labels and the extractor both err, "
                                                      "and Orca keeps the teacher's answers)")
    max_answer_words: int = Field(4, ge=1, description="longest free-text target (in words) still compared")


class FunnelParams(_Strict):
    """The `funnel:` block: which responses count as answered, then one block per filter (`FILTERS`, in order)."""

    answered_statuses: list[str] = Field(
        ["ok", "truncated", "empty"], min_length=1, description="teacher statuses that count as answered (a "
        "completion came back): the refusal filter then counts the empty ones and the truncated filter the cut ones; "
        "an API refusal (refused, content_filter) or an error is 'not answered'. 02 trains on `ok` rows only")
    refusal: RefusalParams = Field(default_factory=RefusalParams)
    truncated: TruncatedParams = Field(default_factory=TruncatedParams)
    too_long: TooLongParams = Field(default_factory=TooLongParams)
    duplicate_query: DedupParams = Field(default_factory=DedupParams)
    duplicate_response: DedupParams = Field(default_factory=lambda: DedupParams(min_words=20))
    label_agreement: LabelAgreementParams = Field(default_factory=LabelAgreementParams)
