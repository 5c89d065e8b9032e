"""Notebook 04's driver: explanation tuning in two stages (Orca §3.2), and what the notebook shows and records.

The training is `orca_utils.train` (TRL's `SFTTrainer` behind `run_stage`, also the entry point under
`accelerate launch`); the held-out prompts, tables and figures are `orca_utils.train_report`; generations before and
after tuning come from the in-process backend of `orca_utils.backends`. This module gathers the calls notebook 04
makes, one name per step, so that the notebook imports one module:

    ids, convs, references = training.heldout_conversations(cfg, upstream, 2, cfg.num_generation_examples)
    result1 = training.run_stage(cfg, run, 1, overrides=overrides)
    metrics, metrics_provenance = training.summary_metrics(cfg, [result1, result2], teacher_label)
"""
from __future__ import annotations

from .backends.hf import HFBackend
from .contracts import STUDENT_DIR
from .train import run_stage
from .train_report import generation_table, heldout_conversations, plot_loss_curves, stage_metrics, stage_summary

__all__ = ["heldout_conversations", "load_backend", "run_stage", "plot_loss_curves", "stage_summary",
           "generation_table", "summary_metrics"]


def load_backend(spec: str, cfg) -> HFBackend:
    """The model at `spec` (a model spec or a saved student folder) for generation, on cfg's device and dtype."""
    return HFBackend(spec, device=cfg.device, dtype=cfg.dtype)


def summary_metrics(cfg, results: list[dict], teacher_label: str, teacher_sources: list[dict] | None = None
                    ) -> tuple[dict, dict]:
    """(metrics.json entries of the stages in order, and where the tuned student is; their provenance).
    `teacher_sources`: the `sources` notebook 02 saved (`contracts.read_sources`), the teachers of the data the
    student was tuned on (left out: the student alone)."""
    metrics: dict = {}
    for result in results:
        metrics.update(stage_metrics(result))   # losses, steps, tokens/s, samples per row, the batch
    metrics["student/dir"] = STUDENT_DIR
    from .provenance import Provenance, student_source

    provenance = Provenance({"student": f"tuned from {cfg.base_model_label}", "data": f"notebook 02 ({teacher_label})",
                             "packer": cfg.packer, "engine": "TRL SFTTrainer"},
                            sources=[student_source("student", f"tuned from {cfg.base_model_label}", cfg.student_model),
                                     *(teacher_sources or [])])
    return metrics, provenance
