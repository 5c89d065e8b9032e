"""Typed params: the `common` block and one schema per notebook, each a strict pydantic model.

Conventions (see STYLE.md): snake_case keys that carry their unit (`max_len_tokens`, `timeout_s`, `max_cost_usd`);
unknown keys are errors (`extra="forbid"`); secrets are never values, only names of environment variables
(fields ending in `_env`). Each notebook's schema inherits the common fields, so a notebook block may override them.
Owners: each notebook's issue extends its own class; keep defaults that make the smoke profile work.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def check_env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError("expected the NAME of an environment variable (e.g. OPENAI_API_KEY), not its value")
    return value


class CommonParams(Strict):
    """Keys every notebook sees. `profile` is set by the loader from the file name."""

    profile: str
    seed: int = Field(0, ge=0, description="global seed: sampling, shuffles, training, evaluation subsets")
    data_dir: str | None = Field(None, description="data root; unset: $ORCA_DATA_DIR, ../shared/data, the hub")
    output_dir: str = Field("outputs", description="outputs root, relative to the checkout unless absolute")
    offline: bool = Field(False, description="never touch the hub (set HF_HUB_OFFLINE for the run)")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    student_model: str = Field(..., min_length=1, description="hub id, local dir, GGUF file or pkg:<package>/<file>")
    base_model_label: str = Field(..., min_length=1, description="how figures name the untuned student")
    llama_tokenizer: str = Field(..., min_length=1, description="tokenizer for paper-comparable token counts")
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env var holding the OpenAI key")

    _check_env = field_validator("api_key_env")(classmethod(lambda cls, v: check_env_name(v)))


class SamplingParams(CommonParams):
    """01_sampling (issue 3)."""


class AugmentationParams(CommonParams):
    """02_augmentation (issue 4)."""


class PackingParams(CommonParams):
    """03_packing (issue 5)."""


class TrainingParams(CommonParams):
    """04_training (issue 6)."""


class AgievalParams(CommonParams):
    """05_agieval (issue 7)."""


class BbhParams(CommonParams):
    """06_bbh (issue 7)."""


class OpenEndedParams(CommonParams):
    """07_open_ended (issue 8)."""


class SafetyParams(CommonParams):
    """08_safety (issue 8)."""


class ExperimentParams(CommonParams):
    """09_explanation_vs_answer (issue 9)."""


class ReportParams(CommonParams):
    """10_report (issue 9)."""


# Ordered: the pipeline runs notebooks in this order; keys are the notebook file stems.
NOTEBOOK_SCHEMAS: dict[str, type[CommonParams]] = {
    "01_sampling": SamplingParams,
    "02_augmentation": AugmentationParams,
    "03_packing": PackingParams,
    "04_training": TrainingParams,
    "05_agieval": AgievalParams,
    "06_bbh": BbhParams,
    "07_open_ended": OpenEndedParams,
    "08_safety": SafetyParams,
    "09_explanation_vs_answer": ExperimentParams,
    "10_report": ReportParams,
}
