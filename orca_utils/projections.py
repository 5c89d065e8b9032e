"""Preflight projections: how long notebook 02's teacher calls and how many GPU hours notebook 04 would take.

Arithmetic on the params, labelled as estimates with their assumptions; nothing is sent or measured. Printed by
`python -m orca_utils validate --profile P --deep` (`orca_utils.preflight.check_projections` turns them into notes;
this module is the arithmetic only and imports nothing of preflight).

02, per stage (queries = 01's quota x `scale`, capped by the teacher's `max_queries`; prompt tokens per query =
`02_augmentation.projection_prompt_tokens`, an assumption; completion = the teacher's `expected_completion_tokens`,
else `max_tokens`):
- Batch API (`endpoint.batch_mode`): windows = queries x enqueued tokens per query / `batch_max_enqueued_tokens` (a
  window is one full enqueued-token budget; the client keeps it full), wall time = windows x
  `02_augmentation.batch_expected_hours` (default 6 h: an assumption; OpenAI promises each batch within 24 h).
  Enqueued tokens per query: its prompt tokens only (OpenAI's enqueued-token limit counts prompts; the time
  scales inversely with `batch_max_enqueued_tokens`: set it to your organization's limit).
- chat calls: the slower of queries / `requests_per_minute` and queries x (prompt + max_tokens) /
  `tokens_per_minute` (the client paces both).

04, per stage: training tokens = samples x mean tokens per sample (`04_training.tokens_per_sample`, else 02's
assumed prompt + expected completion tokens) x `epochs` (or, with `max_steps`, max_steps x global batch x
max_len_tokens); GPU hours = 6 x parameters x tokens / (peak FLOP/s x `mfu`) / 3600 (6 N FLOPs per token: forward
and backward of the dense layers, attention's own FLOPs and the recomputation of activation checkpointing left to the
MFU), peak = `gpu_peak_tflops` or `PEAK_TFLOPS[projection_gpu]`; wall hours = GPU hours / the launch's GPUs.
"""
from __future__ import annotations

import math

__all__ = ["PEAK_TFLOPS", "stage_queries", "augmentation_hours", "training_gpu_hours", "STAGES"]

# Dense (no sparsity) bf16 tensor-core peak per GPU, from NVIDIA's datasheets: H100 SXM 989 TFLOP/s (the PCIe card:
# 756), H200 SXM the same silicon as H100 SXM (989), A100 (SXM and PCIe) 312.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}

STAGES = ("stage1", "stage2")


def stage_queries(cfgs: dict, stage: str) -> int | None:
    """Queries 01 writes for a stage (quotas x scale), capped by 02's teacher `max_queries`; None without 01."""
    sampling, aug = cfgs.get("01_sampling"), cfgs.get("02_augmentation")
    n = None
    if sampling is not None:
        quota = sampling.stage1_quota_rows.model_dump() if stage == "stage1" else {"rows": sampling.stage2_rows}
        n = int(sum(v or 0 for v in quota.values()) * sampling.scale)
    cap = getattr(getattr(aug, stage, None), "max_queries", None) if aug is not None else None
    if cap:
        n = min(n, cap) if n is not None else cap
    return n


def _completion_tokens(teacher) -> int:
    return teacher.expected_completion_tokens or teacher.max_tokens


def _enqueued_tokens_per_query(aug, teacher) -> tuple[int, str]:
    """(tokens a query counts against the enqueued-token budget, how): its prompt tokens only, as OpenAI counts
    the limit and as `endpoint.batch_max_enqueued_tokens` is documented (completions are not enqueued)."""
    return aug.projection_prompt_tokens, "prompt tokens"


def augmentation_hours(cfgs: dict, stage: str) -> tuple[float, str] | None:
    """(wall hours, the line that explains them) for one stage of 02; None when its size is unknown."""
    aug = cfgs.get("02_augmentation")
    n = stage_queries(cfgs, stage)
    if aug is None or not n:
        return None
    teacher, ep = getattr(aug, stage), aug.endpoint
    prompt, completion = aug.projection_prompt_tokens, _completion_tokens(teacher)
    if ep.batch_mode:
        per_query, how = _enqueued_tokens_per_query(aug, teacher)
        budget = ep.batch_max_enqueued_tokens          # in flight at once, in batch files of batch_target_tokens
        windows = math.ceil(n * per_query / budget)
        hours = windows * aug.batch_expected_hours
        return hours, (f"{teacher.model}, Batch API: {n:,} queries x {per_query:,} enqueued {how} (assumed) / "
                       f"{budget:,}-token enqueued budget (batch_max_enqueued_tokens) = {windows:,} "
                       f"window{'s' if windows != 1 else ''} x "
                       f"{aug.batch_expected_hours:g} h per window (batch_expected_hours, assumed) = "
                       f"{_duration(hours)}")
    by_requests = n / ep.requests_per_minute
    by_tokens = n * (prompt + teacher.max_tokens) / ep.tokens_per_minute
    hours = max(by_requests, by_tokens) / 60
    limit = "tokens_per_minute" if by_tokens >= by_requests else "requests_per_minute"
    return hours, (f"{teacher.model}, chat calls: {n:,} queries / {ep.requests_per_minute:,.0f} requests per minute "
                   f"= {_duration(by_requests / 60)}; x {prompt + teacher.max_tokens:,} tokens (prompt {prompt} "
                   f"assumed + max_tokens) / {ep.tokens_per_minute:,.0f} tokens per minute = "
                   f"{_duration(by_tokens / 60)}: {_duration(hours)} ({limit} binds; completion ~{completion} tokens)"
                   + ("; rate limits only: a self-hosted server's generation speed is not modelled"
                      if (teacher.base_url or ep.base_url) else ""))


def training_gpu_hours(cfgs: dict, stage: int, n_params: float, world_size: int) -> tuple[float, str] | None:
    """(GPU hours, the line that explains them) for one stage of 04; None when its size is unknown."""
    cfg, aug = cfgs.get("04_training"), cfgs.get("02_augmentation")
    if cfg is None:
        return None
    from .train import batch_plan

    scfg = cfg.stage1 if stage == 1 else cfg.stage2
    peak = cfg.gpu_peak_tflops or PEAK_TFLOPS[cfg.projection_gpu]
    peak_how = f"{peak:g} TFLOP/s" + ("" if cfg.gpu_peak_tflops else f" ({cfg.projection_gpu} dense bf16)")
    if scfg.max_steps and scfg.max_steps > 0:
        try:
            rows = batch_plan(cfg, world_size)["global_batch_size"]
        except ValueError:
            rows = cfg.per_device_batch_size * world_size
        tokens = scfg.max_steps * rows * cfg.max_len_tokens
        what = f"max_steps {scfg.max_steps} x {rows} rows x {cfg.max_len_tokens} tokens (full rows, upper bound)"
    else:
        samples = stage_queries(cfgs, f"stage{stage}")
        if scfg.max_train_samples:
            samples = min(samples, scfg.max_train_samples) if samples else scfg.max_train_samples
        if not samples:
            return None
        if cfg.tokens_per_sample:
            per, per_how = cfg.tokens_per_sample, "tokens_per_sample"
        elif aug is not None:
            teacher = getattr(aug, f"stage{stage}")
            per = aug.projection_prompt_tokens + _completion_tokens(teacher)
            per_how = f"{aug.projection_prompt_tokens} prompt assumed + {_completion_tokens(teacher)} completion"
        else:
            return None
        tokens = samples * per * scfg.epochs
        what = f"{samples:,} samples x {per:g} tokens ({per_how}) x {scfg.epochs:g} epochs"
    flops = 6 * n_params * tokens
    gpu_hours = flops / (peak * 1e12 * cfg.mfu) / 3600
    gpu_how = f"{gpu_hours:,.0f}" if gpu_hours >= 10 else f"{gpu_hours:.2g}"
    return gpu_hours, (f"{what} = {_count(tokens)} tokens; 6 x {_count(n_params)} params x tokens / "
                       f"({peak_how} x MFU {cfg.mfu:g}, assumed) = {gpu_how} GPU hours, "
                       f"{_duration(gpu_hours / world_size)} on {world_size} GPU(s)")


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.3g}M"


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:,.1f} h" if hours < 48 else f"{hours:,.0f} h ({hours / 24:,.1f} days)"
