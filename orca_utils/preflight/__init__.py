"""Preflight (`python -m orca_utils validate --profile P --deep`): what would fail before money or GPU hours are spent.

Each check is one function `check_*(cfgs, opts) -> list[Finding]`, run in this order by `run_preflight`:
- `check_endpoints`: every model sent to an OpenAI-compatible endpoint (02's stages, 07's references and judge,
  08's judge, 05/06's `api_models`) is listed by `GET <base_url>/models` and not past its `shutdown_date` (within
  30 days: a warning); the key variable is set (its value is never printed). Offline stand-ins are checked against
  the local server in OpenAI emulation mode when their block has `endpoint.emulate_openai: true`, else noted.
- `check_model_specs`: local model specs exist (no weights are loaded); hub models, revisions and dataset repos
  exist and are not gated for us (one note instead when offline; one line when the hub cannot be reached).
- `check_url_sources`: every dataset the notebooks read has a local copy, or (online) the first file of its pinned
  URL source answers.
- `check_accelerate`: 04's accelerate config exists, parses, and launches `04_training.num_processes` per node.
- `check_memory`: GPU memory per device for training (04; fp32 master weights, gradients and AdamW states under
  mixed bf16) and inference (05-08), from the student's config.json (offline, a published architecture:
  `PUBLISHED_CONFIGS`), against the free memory of the visible CUDA devices (`training_memory` /
  `inference_memory` hold the arithmetic).
- `check_projections`: 02's wall time and 04's GPU hours per stage, as estimates (the arithmetic:
  `orca_utils.projections`).

A problem is one line `<notebook>.<dotted.param>: <what is wrong>: <what to do>` and makes the command exit 2;
warnings and notes are printed with a `warning:` / `note:` prefix and do not.

One module per part: `findings` (what a check returns, the report), `endpoints`, `specs` (model specs and hub),
`sources` (datasets and URLs), `launch` (accelerate configs), `serving`, `memory` (GPU memory and the projections);
`run_preflight`, here, runs them in order.
"""
from __future__ import annotations

from .findings import (ASSUMED_PROMPT_TOKENS, Finding, GB, GPU_NOTEBOOKS, Note, OPENAI_BASE_URL, Options, Problem,
                       Report, WARN_DAYS, Warn, hub_offline, param_owner)
from .serving import check_serving
from .endpoints import check_endpoints, endpoint_uses, fetch_model_list, model_findings, teacher_models
from .specs import check_model_specs, spec_uses
from .sources import check_url_sources, datasets_needed
from .launch import check_accelerate, read_accelerate
from .memory import (MemoryEstimate, ModelDims, PUBLISHED_CONFIGS, check_memory, check_projections, cuda_free_memory,
                     estimate_memory, inference_memory, load_model_config, model_dims, training_memory)

__all__ = ["ASSUMED_PROMPT_TOKENS", "Finding", "GB", "GPU_NOTEBOOKS", "MemoryEstimate", "ModelDims", "Note",
           "OPENAI_BASE_URL", "Options", "PUBLISHED_CONFIGS", "Problem", "Report", "WARN_DAYS", "Warn",
           "check_accelerate", "check_endpoints", "check_memory", "check_model_specs", "check_projections",
           "check_serving", "check_url_sources", "cuda_free_memory", "datasets_needed", "endpoint_uses",
           "estimate_memory", "fetch_model_list", "hub_offline", "inference_memory", "load_model_config", "model_dims",
           "model_findings", "param_owner", "read_accelerate", "run_preflight", "spec_uses", "teacher_models",
           "training_memory"]


def run_preflight(cfgs: dict, options: Options | None = None) -> Report:
    """Every check on a loaded profile ({notebook stem: validated params}, from `config.load_profile`)."""
    opts = options or Options()
    findings: list[Finding] = []
    for check in (check_endpoints, check_model_specs, check_url_sources, check_accelerate, check_serving,
                  check_memory, check_projections):
        findings += [f for f in check(cfgs, opts) if f not in findings]
    return Report(findings)
