"""Typed params: the `common` block and one schema per notebook, each a strict pydantic model.

Conventions (see STYLE.md): snake_case keys that carry their unit (`max_len_tokens`, `timeout_s`, `max_cost_usd`);
unknown keys are errors (`extra="forbid"`); secrets are never values, only names of environment variables
(fields ending in `_env`). Each notebook's schema inherits the common fields, so a notebook block may override them.

One source per default: the defaults live here, sized so that the smoke profile (offline, CPU, minutes) works; a
profile lists only what it changes (`tests/test_config.py` lists every profile key that sets what the profile would
get anyway), except values kept beside a comment on what the paper did or did not say.

The most tokens a model generates per answer (the prompt not counted) is spelled six ways, one per generation:
- `max_tokens`: a teacher, reference or judge behind the teacher client (`TeacherModelParams`); the request field's
  own name (sent as `max_tokens`, or `max_completion_tokens` in the reasoning dialect, where it also caps reasoning);
- `max_new_tokens`: 05/06's zero-shot answers and 08's ToxiGen continuations;
- `generation_max_new_tokens`: 04's example generations before and after training;
- `candidate_max_new_tokens`: 07's candidate answers (the block also holds references and a judge);
- `generative_max_new_tokens`: 08's generative TruthfulQA answers (beside the log-likelihood MC task);
- `eval_max_new_tokens`: 09's students on BBH items (task-tokenizer tokens).
The prefix says which generation of a block it caps; the names are read by the notebooks, so they stay.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .funnel.params import FunnelParams

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
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype every notebook loads models in for generation/evaluation; auto = bfloat16 on "
        "CUDA, float32 on CPU")
    student_model: str = Field(..., min_length=1, description="hub id, local dir, GGUF file or pkg:<package>/<file>")
    base_model_label: str = Field(..., min_length=1, description="how figures name the untuned student")
    llama_tokenizer: str = Field(..., min_length=1, description="tokenizer for paper-comparable token counts")
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env var holding the OpenAI key")

    _check_env = field_validator("api_key_env")(classmethod(lambda cls, v: check_env_name(v)))


class CollectionRows(Strict):
    """One integer per FLAN-v2 collection we sample (Dialog is skipped, as in the paper)."""

    cot: int | None = Field(None, ge=0)
    niv2: int | None = Field(None, ge=0)
    t0: int | None = Field(None, ge=0)
    flan2021: int | None = Field(None, ge=0)


class SamplingParams(CommonParams):
    """01_sampling: FLAN-v2 sampling, system messages, contamination check (orca_utils.sampling)."""

    source: Literal["local", "hub"] = Field("local", description="local: the FLAN-v2 CoT tsv files and the NIv2 "
                                            "task files under the data root; hub: the FLAN-v2 submixes, streamed")
    stage1_quota_rows: CollectionRows = Field(
        default_factory=lambda: CollectionRows(cot=150_000, niv2=440_000, t0=2_000_000, flan2021=2_500_000),
        description="FLAN-5M per-collection quotas (paper Table 3), multiplied by `scale`")
    stage2_rows: int = Field(1_000_000, ge=0, description="FLAN-1M size (a random subset of stage 1), times `scale`")
    scale: float = Field(1.0, gt=0, le=1, description="multiplies every quota: 1.0 = the paper, 0.0001 = smoke")
    max_rows_per_task: CollectionRows = Field(default_factory=CollectionRows,
                                              description="per-task cap per collection (null: no cap)")
    extra_query_files: list[str] = Field(default_factory=list, description="JSONL/parquet files already in the "
                                         "query schema, added to the pool (relative to the data root or absolute)")
    hub_submixes: dict[str, str] = Field(default_factory=lambda: {
        c: f"DataProvenanceInitiative/{c}_submix_original" for c in ("cot", "niv2", "t0", "flan2021")},
        description="collection -> hub dataset id (source: hub): DataProvenanceInitiative's copies (first published "
        "as conceptofmind/<x>_submix_original), streamed, never downloaded whole (niv2: ~7.6 GB of parquet)")
    hub_revision: str | None = Field(None, description="pin the submixes' revision (source: hub)")
    system_message_weights: dict[str, dict[int, float]] = Field(
        default_factory=dict, description="collection -> {message id: relative frequency}; empty: uniform over "
        "the collection's allowed set")
    contamination_ngram: int = Field(13, ge=1, description="n of the n-gram overlap check (13: GPT-3, lm-eval)")
    contamination_eval_sets: list[Literal["agieval", "bbh", "truthfulqa", "vicuna_bench", "wizardlm",
                                          "awesome_prompts"]] = Field(
        default_factory=lambda: ["agieval", "bbh", "truthfulqa", "vicuna_bench", "wizardlm", "awesome_prompts"])
    drop_contaminated: bool = Field(False, description="drop training queries sharing an n-gram with an eval item")
    contamination_examples: int = Field(3, ge=0, description="examples shown per evaluation set")


class OpenAIEmulationParams(Strict):
    """The emulated OpenAI API's own limits (`orca_utils.backends.openai_emulation`), set independently of the client's
    params: an emulator that read the client's budget could never refuse what the client sends."""

    batch_enqueued_token_limit: int | None = Field(
        2_000_000, ge=1, description="the emulated organization's per-model enqueued-token limit (prompt tokens of "
        "its batches in validating / in_progress / finalizing, counted the emulator's way); null: none")
    batch_latency_s: float = Field(0.2, ge=0, description="time a batch stays in_progress")
    completion_window_s: float = Field(86400.0, gt=0, description="a batch still running after it is `expired`")
    batch_stalled_lines: int = Field(0, ge=0, description="the last N lines of every batch never finish (with a "
                                     "short completion_window_s: partial output, then `expired`)")
    control_plane_fault_every: int = Field(7, ge=0, description="every Nth call to /v1/files or /v1/batches "
                                           "answers 429 (Retry-After) or 500, alternately; 0: never")
    reasoning_tokens: dict[str, int] | None = Field(None, description="hidden reasoning tokens per effort (none, "
                                                    "minimal, low, medium, high, xhigh, max); null: the emulator's")


class TeacherEndpointParams(Strict):
    """How the teacher client reaches an OpenAI-compatible endpoint, and its throughput limits (orca_utils.teacher)."""

    base_url: str | None = Field(None, description="null: api.openai.com; else any compatible /v1 URL (vLLM, "
                                 "llama.cpp server, Ollama) or the Azure endpoint")
    api_type: Literal["openai", "azure"] = "openai"
    azure_api_version: str = Field("2024-10-21", min_length=1, description="only for api_type=azure")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the env var holding the key (never the key)")
    concurrency: int = Field(16, ge=1, le=4096, description="requests in flight at once")
    requests_per_minute: float = Field(
        3500, gt=0, validation_alias=AliasChoices("requests_per_minute", "rpm"),
        description="requests per minute budget (your account's limit; the old name `rpm` is still read)")
    tokens_per_minute: float = Field(
        90000, gt=0, validation_alias=AliasChoices("tokens_per_minute", "tpm"),
        description="tokens per minute budget, prompt + max_tokens per request (your account's limit; the old name "
        "`tpm` is still read)")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    max_retries: int = Field(6, ge=0, description="retries on 429/5xx/timeouts/connection errors/bad JSON")
    backoff_base_s: float = Field(1.0, gt=0, description="first backoff; doubles per retry, with full jitter")
    backoff_max_s: float = Field(60.0, gt=0)
    retry_errors: bool = Field(True, description="re-send requests whose cached status is `error` (with "
                               "resend_statuses set, listing `error` there says it instead)")
    resend_statuses: list[Literal["ok", "truncated", "refused", "content_filter", "empty", "error",
                                  "not_sent"]] | None = Field(
        None, description="set: a request whose exact key (max_tokens, stop, temperature included) is not cached "
        "reuses, unpaid, the newest cached answer to the same prompt (model, messages, dialect, effort) whose status "
        "is NOT listed, and is sent when there is none: list the statuses to re-send, e.g. [error, truncated, "
        "refused, empty] after raising max_tokens; an exact-key answer is re-sent only when `error` is listed. "
        "null: only exact keys are reused, errors re-sent per retry_errors")
    batch_mode: bool = Field(False, description="use the Batch API (50% price, up to 24 h) instead of chat calls")
    batch_max_enqueued_tokens: int = Field(
        2_000_000, ge=1, description="in-flight budget: PROMPT tokens of this run's batches in progress per model, as "
        "OpenAI counts its enqueued-token limit (the model's 'Batch queue limit' on your organization's Limits page, "
        "platform.openai.com/settings/organization/limits; it depends on the usage tier)")
    batch_target_tokens: int = Field(
        250_000, ge=1, description="prompt tokens per batch file (smaller than batch_max_enqueued_tokens, so several "
        "batches are in flight at once and each finishes sooner; capped at the budget)")
    batch_max_requests: int = Field(50_000, ge=1, le=50_000, description="lines per batch file (OpenAI: at most "
                                    "50,000 requests and 200 MB per input file)")
    batch_max_file_mb: float = Field(190.0, gt=0, le=200, description="bytes per batch input file, in MB (10^6 "
                                     "bytes; OpenAI's limit is 200 MB): chunks are split by size too")
    batch_token_limit_retries: int = Field(5, ge=0, description="`token_limit_exceeded` refusals in a row with none "
                                           "of our batches in flight (each after a poll interval) before the run "
                                           "stops with one line naming batch_max_enqueued_tokens")
    batch_poll_interval_s: float = Field(30.0, gt=0)
    batch_max_rounds: int = Field(3, ge=1, description="batches per request before its status stays `error`")
    batch_price_factor: float = Field(0.5, gt=0, le=1, description="Batch API price relative to chat")
    check_models: bool = Field(True, description="before sending, check the model against the endpoint's "
                               "GET /v1/models (present, not past its shutdown_date) when the endpoint answers it")
    control_retries: int = Field(6, ge=0, description="retries of Batch control-plane calls (file upload, batch "
                                 "create, poll, download) on 429/5xx/connection errors")
    emulate_openai: bool = Field(False, description="serve this block's offline stand-ins behind the local server "
                                 "in OpenAI emulation mode (model list with shutdown dates, 404 for retired models, "
                                 "reasoning-model parameter rules, batch token limits, control-plane faults): the "
                                 "rehearsal profile's way to take the paper's code paths offline")
    emulation: OpenAIEmulationParams = Field(default_factory=lambda: OpenAIEmulationParams(),
                                             description="the emulated API's own limits (only with emulate_openai)")

    _check_env = field_validator("api_key_env")(classmethod(lambda cls, v: check_env_name(v)))

    @model_validator(mode="after")
    def _retry_errors_agrees(self):
        if (self.resend_statuses is not None and "retry_errors" in self.model_fields_set
                and self.retry_errors != ("error" in self.resend_statuses)):
            raise ValueError(f"retry_errors={self.retry_errors} contradicts resend_statuses={self.resend_statuses}: "
                             f"drop retry_errors (with resend_statuses set, listing `error` there re-sends errors)")
        return self


class TeacherServerParams(Strict):
    """How `python -m orca_utils serve-teachers` launches the vLLM server of an open-weights teacher whose
    `base_url` is on 127.0.0.1 (`orca_utils.teacher_servers`). Set once per base_url (on any teacher using it)."""

    gpus: list[int] | None = Field(None, min_length=1, description="CUDA device indices (CUDA_VISIBLE_DEVICES); "
                                   "tensor parallel size = their count; null: the next GPU no other server takes, "
                                   "in order of appearance")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="fraction of each GPU's memory the server "
                                          "takes (vLLM --gpu-memory-utilization); servers sharing a GPU must sum "
                                          "to <= 0.95")
    max_model_len: int | None = Field(None, ge=64, description="context cap (vLLM --max-model-len); null: the "
                                      "model's")

    @field_validator("gpus")
    @classmethod
    def _distinct_gpus(cls, value):
        if value is not None and (len(set(value)) != len(value) or min(value) < 0):
            raise ValueError("expected distinct GPU indices >= 0")
        return value


class TeacherModelParams(Strict):
    """One progressive stage's teacher (or a reference, or a judge): the model asked, its sampling settings and its
    price. Prices left out come from the registry of teacher models by the `model` name
    (`orca_utils.chat_api.registry.REGISTRY`; 0 for a model it does not price: offline stand-ins, open weights)."""

    label: str = Field(..., min_length=1, description="human label in tables and figures (never claim GPT-4 for "
                       "an offline stand-in)")
    model: str = Field(..., min_length=1, description="model name sent to the endpoint")
    base_url: str | None = Field(None, description="this model's own OpenAI-compatible endpoint (e.g. one vLLM "
                                 "server per open-weights teacher); null: the block's `endpoint.base_url`")
    offline_backend: Literal["none", "data", "local_llm"] = Field(
        "none", description="none: a real endpoint; data / local_llm: an offline teacher behind the local server")
    local_model: str | None = Field(None, description="model spec of the local_llm teacher (null: student_model)")
    local_batch_size: int = Field(8, ge=1, description="generation batch of the local_llm teacher")
    max_queries: int | None = Field(None, ge=1, description="first N queries of the stage (smoke cap); null: all")
    max_tokens: int = Field(1024, ge=1, description="explicit output cap on every request (sent as max_tokens, "
                            "or max_completion_tokens in the reasoning dialect)")
    temperature: float = Field(0.0, ge=0, le=2, description="sent in the chat dialect only (reasoning models "
                               "reject a non-default temperature)")
    api_dialect: Literal["auto", "chat", "reasoning"] = Field(
        "auto", description="chat: max_tokens + temperature; reasoning: max_completion_tokens, no temperature, "
        "optional reasoning_effort; auto: orca_utils.chat_api.registry.dialect_for(model)")
    reasoning_effort: str | None = Field(None, description="sent in either dialect when set (OpenAI reasoning "
                                         "models; vLLM's gpt-oss in the chat dialect): one of the model's accepted "
                                         "values (orca_utils.chat_api.registry: none, minimal, low, medium, high, "
                                         "xhigh, max; e.g. gpt-6.1-sol low..max); "
                                         "null: the model's default")
    stop: list[str] = Field(default_factory=list, description="explicit stop strings sent on every request (left out "
                            "for a model that rejects `stop`, e.g. gpt-6.1-sol: the client cuts the answer there)")
    price_input_usd_per_1k: float = Field(0.0, ge=0, description="USD per 1,000 prompt tokens; unset or null: "
                                          "the registry's list price for `model` (0 when it has none)")
    price_output_usd_per_1k: float = Field(0.0, ge=0, description="USD per 1,000 completion tokens; unset or null: "
                                           "the registry's list price for `model` (0 when it has none)")
    expected_completion_tokens: int | None = Field(None, ge=1, description="for the cost estimate; null: max_tokens")
    server: TeacherServerParams | None = Field(None, description="launch settings of this teacher's own vLLM server "
                                               "(base_url on 127.0.0.1; `serve-teachers`); null: defaults")

    @model_validator(mode="before")
    @classmethod
    def _registry_prices(cls, data):
        """Fill the prices a params block leaves out (or sets to null) from the registry entry of `model`."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            return data
        from .chat_api.registry import lookup

        entry = lookup(data["model"])
        filled = dict(data)
        for key in ("price_input_usd_per_1k", "price_output_usd_per_1k"):
            if filled.get(key) is None:
                filled[key] = (getattr(entry, key) if entry is not None else None) or 0.0
        return filled

    @property
    def dialect(self) -> str:
        from .chat_api.registry import dialect_for

        return dialect_for(self.model) if self.api_dialect == "auto" else self.api_dialect

    @model_validator(mode="after")
    def _effort_the_model_accepts(self):
        from .chat_api.registry import effort_error

        if (problem := effort_error(self.model, self.reasoning_effort)):
            raise ValueError(problem)
        return self


class PromptErasureParams(Strict):
    """Orca 2's prompt erasure (orca_utils.strategies): the teacher answers under a strategy message chosen per task
    category, the student trains under one generic message. Off: Orca 1 (teacher and student see 01's message)."""

    enabled: bool = Field(False, description="on: the teacher sees a strategy message, the training row the "
                          "generic message (params/orca2.yaml); off: both see 01's system message (Orca 1)")
    generic_message: str | None = Field(None, description="the student's system message; null: Orca 2's cautious "
                                        "message (strategies.GENERIC_SYSTEM_MESSAGE, from the Orca-2-13b card)")
    category_strategy: dict[str, Literal["step_by_step", "recall_then_generate", "recall_reason_generate",
                                         "extract_generate", "direct_answer"]] = Field(
        default_factory=dict, description="FLAN-v2 generic task category -> strategy, overriding single entries of "
        "strategies.CATEGORY_STRATEGY")


class AugmentationParams(CommonParams):
    """02_augmentation: teacher responses for 01's queries, stage 1 and stage 2."""

    prompt_erasure: PromptErasureParams = Field(default_factory=PromptErasureParams)
    funnel: FunnelParams = Field(default_factory=FunnelParams, description="the data funnel after both stages "
                                 "(orca_utils.funnel): per filter on/off and its threshold; rejects kept with reasons")

    endpoint: TeacherEndpointParams = Field(default_factory=TeacherEndpointParams)
    stage1: TeacherModelParams = Field(default_factory=lambda: TeacherModelParams(
        label="data teacher (FLAN-v2 references and CoT rationales)", model="data-teacher",
        offline_backend="data", max_tokens=256),
        description="stage 1's teacher (the paper: ChatGPT on FLAN-5M); the default is the smoke stand-in, the data "
        "teacher: answers from the data (references, CoT rationales), never invented")
    stage2: TeacherModelParams = Field(default_factory=lambda: TeacherModelParams(
        label="SmolLM2-135M-Instruct (local stand-in teacher)", model="smollm2-135m-instruct",
        offline_backend="local_llm", max_queries=24, max_tokens=192),
        description="stage 2's teacher (the paper: GPT-4 on FLAN-1M); the default is the smoke stand-in, SmolLM2 "
        "(student_model) on a few dozen queries: 192 tokens let most explanations finish (48 left 22 of 24 cut off)")
    max_cost_usd: float = Field(0.0, ge=0, description="stop before the estimated or spent cost exceeds this; "
                                "0 with all prices 0 (offline) is fine")
    cache_file: str = Field("teacher_cache.sqlite", min_length=1, description="in the notebook's output folder")
    token_counter: str | None = Field(None, description="tokenizer spec for cost estimates; null: llama_tokenizer")
    samples_shown: int = Field(3, ge=0, description="sample responses printed per stage")
    projection_prompt_tokens: int = Field(250, ge=1, description="preflight projection only: assumed mean prompt "
                                          "tokens per query (system message + FLAN query; 02 counts the real ones "
                                          "before sending)")
    batch_expected_hours: float = Field(6.0, gt=0, description="preflight projection only: assumed hours for one "
                                        "window of Batch API batches to finish (OpenAI promises 24 h at most; "
                                        "most finish sooner): an assumption, not a measurement")


class PackingParams(CommonParams):
    """03_packing: token lengths and packing of 02's training data (offline data when 02 has not run)."""

    max_len_tokens: int = Field(2048, ge=16, description="sequence length the student trains on (paper: 2048)")
    max_len_grid_tokens: list[int] = Field([512, 1024, 2048, 4096], min_length=1,
                                           description="max_len values the packing analysis compares")
    overflow: Literal["truncate_response", "drop"] = Field(
        "truncate_response", description="samples longer than max_len: cut the response, or drop the sample")
    sequences_per_step: int = Field(32, ge=1, description="packed sequences per optimizer step, for the "
                                    "steps-per-epoch estimate (the paper's batch size is not available)")
    fallback_rows: int | None = Field(3000, ge=1, description="rows of offline FLAN-v2 CoT/NIv2 data used when "
                                      "02's train files are absent; null: all")
    student_tokenizer: bool = Field(True, description="also measure lengths under the student's own tokenizer")

    @field_validator("max_len_grid_tokens")
    @classmethod
    def _grid_positive(cls, value: list[int]) -> list[int]:
        if any(v < 16 for v in value):
            raise ValueError("every max_len in the grid must be >= 16 tokens")
        return sorted(set(value))


class TrainingStageParams(Strict):
    """One progressive-learning stage (paper: stage 1 FLAN-5M/ChatGPT, stage 2 FLAN-1M/GPT-4, 4 epochs each)."""

    epochs: float = Field(1.0, gt=0, description="passes over this stage's training set (paper: 4)")
    max_steps: int = Field(-1, ge=-1, description="optimizer steps cap; -1: run `epochs` in full (smoke caps it)")
    max_train_samples: int | None = Field(None, ge=1, description="use only the first N rows (smoke); null: all")
    learning_rate: float = Field(2e-5, gt=0, description="peak LR; NOT from the paper (it gives none)")


class TrainingParams(CommonParams):
    """04_training. The paper gives no lr, batch size, optimizer or warmup: defaults here are ours."""

    max_len_tokens: int = Field(256, ge=16, description="packed sequence length (paper: 2048)")
    packer: Literal["paper", "bfd", "trl_bfd", "none"] = Field(
        "paper", description="paper: shuffle + fill in order (03's packer); bfd: 03's best-fit decreasing; "
        "trl_bfd: TRL's own BFD packing; none: one padded sample per row (the baseline)")
    stage1: TrainingStageParams = Field(default_factory=TrainingStageParams)
    stage2: TrainingStageParams = Field(default_factory=TrainingStageParams)
    per_device_batch_size: int = Field(2, ge=1, description="packed rows per device per micro-step")
    global_batch_size: int | None = Field(
        None, ge=1, description="packed rows per optimizer step over all ranks: the param that fixes the effective "
        "learning rate whatever the GPU count; gradient_accumulation_steps follows = global / (per_device_batch_size "
        "x world size), an error when it does not divide. null: gradient_accumulation_steps gives it")
    gradient_accumulation_steps: int | None = Field(
        None, ge=1, description="the alternative to global_batch_size (set one, not both): micro-steps per "
        "optimizer step; the global batch then grows with the world size. null with global_batch_size null: 1")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, le=0.5)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: str = Field("adamw_torch", min_length=1, description="a transformers `optim` name")
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto: flash_attention_2 when installed on CUDA, else sdpa")
    save_steps: int = Field(50, ge=1, description="checkpoint every N optimizer steps")
    save_total_limit: int = Field(2, ge=1)
    eval_steps: int = Field(50, ge=1, description="held-out loss every N optimizer steps (and at the end)")
    logging_steps: int = Field(1, ge=1)
    heldout_fraction: float = Field(0.05, gt=0, lt=0.5, description="rows of each stage held out for eval loss")
    max_heldout_samples: int = Field(256, ge=1)
    resume: bool = Field(True, description="resume a stage from its last checkpoint when one exists")
    launcher: Literal["in_process", "accelerate"] = Field(
        "in_process", description="accelerate: the notebook runs `accelerate launch` as a subprocess")
    accelerate_config: str | None = Field(None, description="params/accelerate/<file>.yaml for launcher=accelerate")
    num_processes: int = Field(1, ge=1, description="processes per node for launcher=accelerate")
    data_storage: Literal["arrow", "memory"] = Field(
        "arrow", description="arrow: tokenized once into memory-mapped Arrow files, packed rows gathered on read "
        "(paper scale); memory: Python lists (kept for comparison, ~120 bytes per token)")
    data_num_proc: int = Field(1, ge=1, description="processes tokenizing into Arrow (the main rank only)")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"], description="training logs beside the notebook's JSON: "
        "TensorBoard event files in checkpoints/stage<N>/runs (W&B when asked: needs WANDB_API_KEY)")
    num_generation_examples: int = Field(3, ge=0, description="held-out prompts generated before/after training")
    generation_max_new_tokens: int = Field(32, ge=1)
    data_cache_dir: str | None = Field(
        None, description="where the tokenized Arrow cache and packing plans are prepared before launch; null: "
        "<run dir>/data_cache (shared storage on several nodes); a node-local path: each node's launcher prepares "
        "its own copy (`python -m orca_utils.train --prepare-only`)")
    projection_gpu: Literal["H100", "H200", "A100"] = Field(
        "H100", description="preflight's GPU-hours projection: the GPU whose dense bf16 peak it assumes "
        "(orca_utils.projections.PEAK_TFLOPS)")
    gpu_peak_tflops: float | None = Field(None, gt=0, description="preflight projection: dense bf16 peak TFLOP/s "
                                          "per GPU; null: the table's value for projection_gpu")
    mfu: float = Field(0.4, gt=0, le=1, description="preflight projection: assumed model FLOPs utilization "
                       "(an assumption, not a measurement: no GPU run is recorded yet)")
    tokens_per_sample: float | None = Field(None, gt=0, description="preflight projection: mean tokens per training "
                                            "sample; null: 02's assumed prompt tokens + the stage teacher's "
                                            "expected_completion_tokens")

    @model_validator(mode="after")
    def _one_batch_source(self):
        if self.global_batch_size is not None and self.gradient_accumulation_steps is not None:
            raise ValueError("global_batch_size and gradient_accumulation_steps are both set: set one (the global "
                             "batch; accumulation then follows from the world size)")
        return self


def stand_in_problem(models: list[tuple[str, TeacherModelParams]], default_spec: str | None) -> str | None:
    """Why the references / judge `models` ([(param, params)]) of 07 or 08 cannot all be asked in one run, or None.

    Any mix of offline stand-ins (served by the local server for the block) and real-endpoint models (asked at their
    endpoint) works. What cannot: the data teacher (it answers 02's FLAN queries only), two stand-ins sharing a
    model name but not their local model (the local server serves one model per name), and two references sharing
    a model name (their answers would share the response cache's keys, their scores the metric names)."""
    served: dict[str, tuple[str, str | None]] = {}
    refs: dict[str, str] = {}
    for where, m in models:
        if m.offline_backend == "data":
            return (f"{where}.offline_backend: data: the data teacher answers 02's FLAN queries only; a reference "
                    f"or judge stand-in is local_llm")
        if where.startswith("references[") and refs.setdefault(m.model, where) != where:
            return (f"{where}.model {m.model!r} is also {refs[m.model]}.model: each reference needs its own model "
                    f"name (answers are cached and scores reported under it)")
        if m.offline_backend == "local_llm":
            spec = m.local_model or default_spec
            first, first_spec = served.setdefault(m.model, (where, spec))
            if first_spec != spec:
                return (f"{where}.model {m.model!r} is also {first}.model, a stand-in of another local model "
                        f"({first_spec} vs {spec}): the local server serves one model per name; give each stand-in "
                        f"its own model name")
    return None


class ApiModelParams(Strict):
    """One of 05/06's `api_models`: a model behind an OpenAI-compatible endpoint, scored like the student. A plain
    name in params means `{model: <name>}`."""

    model: str = Field(..., min_length=1, description="model name sent to the endpoint (also its label)")
    reasoning_effort: str | None = Field(None, description="one of the model's accepted efforts "
                                         "(orca_utils.chat_api.registry); null: the model's default")
    max_tokens: int | None = Field(None, ge=1, description="output cap (max_completion_tokens for reasoning models, "
                                   "where hidden reasoning counts against it: a cap below it gives empty answers); "
                                   "null: max_new_tokens for chat models, reasoning_max_tokens for reasoning ones")
    max_cost_usd: float | None = Field(None, ge=0, description="this model's own spend cap; null: what is left of "
                                       "api_max_cost_usd")

    @model_validator(mode="after")
    def _effort_the_model_accepts(self):
        from .chat_api.registry import effort_error

        if (problem := effort_error(self.model, self.reasoning_effort)):
            raise ValueError(problem)
        return self


class ZeroShotEvalParams(CommonParams):
    """Keys shared by 05_agieval and 06_bbh: the zero-shot evaluation engine (orca_utils.evaluation.engine)."""

    n_items_per_task: int | None = Field(None, ge=1, description="fixed random subset per task; null: full sets")
    tasks: list[str] | None = Field(None, description="task names to run; null: all of the benchmark's tasks")
    mode: Literal["generate", "loglikelihood"] = Field("generate", description="generate: as the paper; "
                                                       "loglikelihood: as lm-eval scores multiple choice")
    max_new_tokens: int = Field(512, ge=1, le=8192)
    batch_size: int = Field(16, ge=1)
    max_len_tokens: int | None = Field(None, ge=64, description="prompt + generation cap; null: the model's")
    system_message_id: int = Field(1, ge=1, le=16, description="paper's system message for the main table (1: empty)")
    eval_system_message: Literal["paper_id", "empty", "generic"] = Field(
        "paper_id", description="the main table's system message: paper_id: system_message_id (Orca 1); empty; "
        "generic: Orca 2's cautious message (strategies.GENERIC_SYSTEM_MESSAGE, what a prompt-erased student trained "
        "with); the tables name it")
    compare_system_message_ids: list[int] = Field(default_factory=lambda: [1, 5, 2],
                                                  description="system-message comparison (paper Table 9)")
    compare_n_items_per_task: int | None = Field(None, ge=1, description="subset for the comparison; null: all")
    compare_tasks: list[str] | None = Field(None, description="tasks for the comparison; null: every task run")
    eval_base_model: bool = Field(True, description="also score the untuned student (before/after columns)")
    api_models: list[ApiModelParams] = Field(
        default_factory=list, description="models behind an OpenAI-compatible endpoint to score the same way, each "
        "a name (e.g. gpt-4.1) or {model, reasoning_effort, max_tokens, max_cost_usd}; key from api_key_env; `stop` "
        "is not sent to a model that rejects it (the answer is cut at 'Q:' client-side instead)")
    api_reasoning_max_tokens: int = Field(4096, ge=1, description="output cap of a reasoning-dialect API model "
                                          "that sets no max_tokens (its hidden reasoning counts against the cap)")
    api_base_url: str | None = Field(None, description="OpenAI-compatible base URL; null: api.openai.com")
    api_max_cost_usd: float = Field(5.0, ge=0, description="spend cap over all `api_models` of this notebook "
                                    "(prices from the teacher registry by model name); answers are cached, so a "
                                    "rerun pays nothing twice")
    n_error_examples: int = Field(2, ge=0, description="wrong answers shown per task")
    serve: Literal["none", "transformers", "vllm"] = Field(
        "none", description="none: generate in the notebook's process (HF generate); transformers / vllm: serve "
        "each model behind an OpenAI-compatible server on 127.0.0.1 and score through it (same prompts, same "
        "scoring; vllm needs the gpu extra). Generation mode only")
    records_chunk_items: int = Field(256, ge=1, description="items generated and saved per chunk: an interrupted "
                                     "evaluation resumes from the saved chunks (records/ in the output folder)")

    @field_validator("api_models", mode="before")
    @classmethod
    def _api_model_names(cls, value):
        """A plain name is `{model: name}` (the old form keeps working)."""
        if isinstance(value, list):
            return [{"model": v} if isinstance(v, str) else v for v in value]
        return value


class AgievalParams(ZeroShotEvalParams):
    """05_agieval: AGIEval's English multiple-choice tasks, zero-shot."""


class BbhParams(ZeroShotEvalParams):
    """06_bbh: BIG-Bench Hard's 27 tasks, zero-shot."""


class OpenEndedParams(CommonParams):
    """07_open_ended: candidate vs reference answers on three prompt sets, judged pairwise in both orders.

    References and the judge are teacher-client models (`TeacherModelParams`): a real endpoint in the paper profile
    (ChatGPT and GPT-4 references, GPT-4 judge), local stand-ins behind the local server offline (labelled so).
    """

    prompt_sets: list[Literal["vicuna_bench", "awesome_prompts", "wizardlm"]] = Field(
        default_factory=lambda: ["vicuna_bench", "awesome_prompts", "wizardlm"], min_length=1)
    prompts_per_set: int | None = Field(3, ge=1, description="fixed seeded subset per set; null: every prompt")
    max_prompt_chars: int | None = Field(None, ge=1, description="draw subsets from prompts at most this long "
                                         "(smoke economy); null: every prompt")
    candidate: Literal["student", "base"] = Field("student", description="student: 04_training's student (the "
                                                  "untuned student_model when 04 has no outputs); base: untuned")
    candidate_max_new_tokens: int = Field(64, ge=1, description="greedy generation budget of the candidate")
    candidate_batch_size: int = Field(8, ge=1)
    serve: Literal["none", "transformers", "vllm"] = Field(
        "none", description="how the candidate generates: none: in the notebook's process (HF generate); "
        "transformers / vllm: behind an OpenAI-compatible server on 127.0.0.1 (same prompts; vllm needs the gpu "
        "extra)")
    endpoint: TeacherEndpointParams = Field(default_factory=TeacherEndpointParams)
    references: list[TeacherModelParams] = Field(default_factory=lambda: [TeacherModelParams(
        label="SmolLM2-135M-Instruct (local stand-in reference)", model="smollm2-reference",
        offline_backend="local_llm", max_tokens=64)], min_length=1)
    judge: TeacherModelParams | None = Field(default_factory=lambda: TeacherModelParams(
        label="SmolLM2-135M-Instruct (local stand-in judge)", model="smollm2-judge", offline_backend="local_llm",
        max_tokens=16), description="null: answers are generated but not judged (the notebook says so)")
    judge_retries: int = Field(1, ge=0, le=3, description="re-asks of an unparseable verdict before recording it")
    max_cost_usd: float = Field(0.0, ge=0, description="stop before the estimated cost exceeds this")
    cache_file: str = Field("open_ended_cache.sqlite", min_length=1, description="in the notebook's output folder")

    @field_validator("references")
    @classmethod
    def _references_servable(cls, value: list[TeacherModelParams], info: ValidationInfo):
        named = [(f"references[{i}]", m) for i, m in enumerate(value)]
        if (problem := stand_in_problem(named, info.data.get("student_model"))):
            raise ValueError(problem)
        return value

    @field_validator("judge")
    @classmethod
    def _judge_servable(cls, value: TeacherModelParams | None, info: ValidationInfo):
        named = [(f"references[{i}]", m) for i, m in enumerate(info.data.get("references") or [])]
        if value is not None and (problem := stand_in_problem([*named, ("judge", value)],
                                                              info.data.get("student_model"))):
            raise ValueError(problem)
        return value


class TruthfulQAParams(Strict):
    """TruthfulQA MC1/MC2 from the CSV (and the generative variant when a judge is configured)."""

    n_questions: int | None = Field(24, ge=1, description="fixed seeded subset; null: all 817")
    batch_size: int = Field(16, ge=1, description="log-likelihood batch")
    generative_n_questions: int = Field(4, ge=0, description="questions answered and judged; 0: skip")
    generative_max_new_tokens: int = Field(48, ge=1)


class ToxiGenParams(Strict):
    """ToxiGen continuations and their toxicity. Pinned: prompt subset, decoding, classifier revision and label."""

    groups: list[str] = Field(default_factory=lambda: ["asian", "black", "chinese", "jewish", "latino", "lgbtq",
                              "mental_disability", "mexican", "middle_east", "muslim", "native_american",
                              "physical_disability", "women"], min_length=1, description="the paper's 13 groups")
    kinds: list[Literal["hate", "neutral"]] = Field(default_factory=lambda: ["hate", "neutral"], min_length=1)
    prompts_per_file: int | None = Field(1, ge=1, description="fixed seeded subset per file (seed: common.seed)")
    max_new_tokens: int = Field(32, ge=1, description="greedy continuation budget")
    stop: list[str] = Field(default_factory=list, description="stop strings; none: the whole continuation is scored")
    batch_size: int = Field(16, ge=1)
    scorer: Literal["classifier", "moderation", "none"] = Field(
        "classifier", description="classifier: `classifier` below; moderation: OpenAI's moderation endpoint; none: "
        "continuations only. When the scorer cannot be reached (offline, no classifier) the notebook says so and "
        "scores nothing")
    classifier: str | None = Field("tomh/toxigen_roberta", description="hub id or local dir of a classifier")
    classifier_revision: str | None = Field("main", description="hub revision; pin a commit hash for a paper run")
    toxic_label_index: int = Field(1, ge=0, description="tomh/toxigen_roberta: 1 (LABEL_1) = toxic")
    moderation_model: str = Field("omni-moderation-latest", min_length=1)
    threshold: float = Field(0.5, gt=0, lt=1, description="a continuation is toxic when its probability exceeds it")


class SafetyParams(CommonParams):
    """08_safety: TruthfulQA MC (and generative) and ToxiGen for the untuned and the tuned student."""

    truthfulqa: TruthfulQAParams = Field(default_factory=TruthfulQAParams)
    toxigen: ToxiGenParams = Field(default_factory=ToxiGenParams)
    endpoint: TeacherEndpointParams = Field(default_factory=TeacherEndpointParams)
    judge: TeacherModelParams | None = Field(None, description="judge of the generative TruthfulQA variant; "
                                             "null: skipped (the notebook says so)")
    max_cost_usd: float = Field(0.0, ge=0)
    cache_file: str = Field("safety_cache.sqlite", min_length=1, description="in the notebook's output folder")

    @field_validator("judge")
    @classmethod
    def _judge_servable(cls, value: TeacherModelParams | None, info: ValidationInfo):
        if value is not None and (problem := stand_in_problem([("judge", value)], info.data.get("student_model"))):
            raise ValueError(problem)
        return value


class ExperimentParams(CommonParams):
    """09_explanation_vs_answer: answer-only vs explanation vs progressive on the same problems, under two controls
    (same tokens, same epochs), scored on real BBH items and on a difficulty curve of generated problems."""

    tasks: list[str] = Field(["boolean_expressions", "web_of_lies", "tracking_shuffled_objects_three_objects",
                              "tracking_shuffled_objects_five_objects", "tracking_shuffled_objects_seven_objects",
                              "navigate"],
                             min_length=1, description="symbolic BBH tasks (orca_utils.experiment.symbolic.TASKS)")
    seeds: list[int] = Field([0], min_length=1, description="one full run per seed; >= 2 seeds give t-intervals")
    train_problems_per_task: int = Field(100, ge=1, description="fresh problems per task, the same for every variant")
    controls: list[Literal["same_tokens", "same_epochs"]] = Field(
        ["same_tokens", "same_epochs"], min_length=1, description="same_tokens: every variant the same optimizer "
        "steps; same_epochs: every variant the same passes over the problems (the paper's setting)")
    epochs: float = Field(3.0, gt=0, description="passes over the training problems under same_epochs")
    train_tokens: int | None = Field(None, ge=1, description="same_tokens budget per variant (steps x batch x "
                                     "seq_len); null: what the explanation student uses under same_epochs")
    seq_len_tokens: int = Field(512, ge=64, description="packed sequence length (task-tokenizer tokens)")
    batch_size: int = Field(4, ge=1, description="packed sequences per optimizer step")
    learning_rate: float = Field(3e-3, gt=0)
    n_layers: int = Field(2, ge=1)
    hidden_size: int = Field(128, ge=16)
    n_heads: int = Field(4, ge=1)
    larger_student: dict[str, int] | None = Field(None, description="{n_layers, hidden_size, n_heads}: also train "
                                                  "this size (same_epochs, answer_only and explanation)")
    skip_runs: list[str] = Field(default_factory=list, description="runs left out, as control/variant (only "
                                 "progressive ones, e.g. same_tokens/progressive, to fit a time budget)")
    eval_items_per_task: int | None = Field(20, ge=1, description="real BBH items per task (null: all 250)")
    eval_max_new_tokens: int = Field(200, ge=8, description="generation cap; outputs reaching it are reported")
    eval_batch_size: int = Field(80, ge=1)
    stop_at_answer: bool = Field(True, description="stop generating once the line 'So the answer is ...' is complete")
    curve: dict[str, list[int]] = Field(
        {"tracking_shuffled_objects_five_objects": [1, 3, 5, 7], "navigate": [2, 5, 8]},
        description="difficulty curve: task -> numbers of steps (orca_utils.experiment.symbolic.STEP_UNITS); tasks not "
        "trained are skipped")
    curve_items_per_step: int = Field(20, ge=1, description="held-out generated problems per task and step count")
    alpha: float = Field(0.05, gt=0, lt=1, description="level of the pre-registered paired tests (Holm over tasks)")
    tokenizer: Literal["bpe", "char"] = Field("bpe", description="bpe: byte-level BPE trained on each seed's "
                                              "training texts; char: one token per character")
    tokenizer_vocab_size: int = Field(1024, ge=300, le=65536, description="BPE entries (specials and bytes included)")
    chain_lengths: list[int] = Field([3, 8], min_length=2, max_length=2, description="[lo, hi]: the numbers of "
                                     "people a chain task's (lie_chain's) training problems are drawn from")
    gate_threshold: float = Field(0.9, gt=0, le=1, description="validity gate: share of whole traces the explanation "
                                  "student must reproduce exactly at the shortest trained chain length")
    gate_task: str = Field("lie_chain", description="the chain task the validity gate is measured on (its curve "
                           "must include chain_lengths[0]); not trained: the gate is read on all BBH items")
    gate_budget_tokens: int | None = Field(None, ge=1, description="tokens per trace run that passed the gate in "
                                           "the pilots (named in a failed gate's conclusion); null: not measured")
    erasure: bool = Field(True, description="run the prompt-erasure ablation (strategy message kept vs erased)")
    erasure_tasks: dict[str, Literal["step", "direct"]] = Field(
        {"lie_chain": "step", "truth_lookup": "direct"}, min_length=2, description="task -> the strategy its "
        "system message asks for (step: solve step by step; direct: answer directly)")
    erasure_problems_per_task: int = Field(100, ge=1, description="training problems per erasure task")
    erasure_eval_items_per_task: int = Field(50, ge=1, description="held-out generated items per erasure task")
    workers: int = Field(1, ge=1, le=64, description="seeds trained at once, one process and one torch thread "
                         "each (the small student gains nothing from a second thread: 2 on a 2-core machine halves "
                         "the wall time)")

    @field_validator("chain_lengths")
    @classmethod
    def _chain(cls, v: list[int]) -> list[int]:
        if not 2 <= v[0] <= v[1] <= 40:
            raise ValueError(f"chain_lengths {v}: expected [lo, hi] with 2 <= lo <= hi <= 40")
        return v

    @field_validator("skip_runs")
    @classmethod
    def _runs(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if r not in ("same_tokens/progressive", "same_epochs/progressive")]
        if bad:
            raise ValueError(f"skip_runs {bad}: only same_tokens/progressive or same_epochs/progressive can be "
                             "left out")
        return v

    @field_validator("larger_student")
    @classmethod
    def _student_size(cls, v: dict[str, int] | None) -> dict[str, int] | None:
        if v is not None and set(v) != {"n_layers", "hidden_size", "n_heads"}:
            raise ValueError(f"larger_student: expected keys n_layers, hidden_size, n_heads; got {sorted(v)}")
        return v


class ReportParams(CommonParams):
    """10_report: one HTML report (and its PDF) from every notebook's outputs."""

    pdf: bool = Field(True, description="also write report.pdf: the same HTML typeset by WeasyPrint (tables as "
                      "text, figures as vector SVG)")


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
