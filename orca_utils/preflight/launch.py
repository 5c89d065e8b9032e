"""Accelerate configs (`check_accelerate`): 04's config exists, parses, and launches `num_processes` per node.
"""
from __future__ import annotations

import yaml

from ..train import accelerate_config_path
from .findings import Finding, Note, Options, Problem

__all__ = ["check_accelerate", "read_accelerate"]


# ---- 4. accelerate configs -------------------------------------------------------------------------------------
def read_accelerate(value: str) -> tuple[dict | None, str | None]:
    path = accelerate_config_path(value)
    if not path.is_file():
        return None, f"{value}: no such file: name a config under params/accelerate/"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return None, f"{value}: not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__}): fix the file"
    if not isinstance(data, dict) or not isinstance(data.get("num_processes"), int):
        return None, f"{value}: no integer num_processes: an accelerate config must set it"
    return data, None


def check_accelerate(cfgs: dict, opts: Options) -> list[Finding]:
    cfg = cfgs.get("04_training")
    if cfg is None or cfg.launcher != "accelerate":
        return []
    if not cfg.accelerate_config:
        return [Note("04_training.accelerate_config", f"none: accelerate launch --num_processes "
                                                      f"{cfg.num_processes} on this node")]
    data, error = read_accelerate(cfg.accelerate_config)
    if error:
        return [Problem("04_training.accelerate_config", error)]
    machines, total = int(data.get("num_machines") or 1), data["num_processes"]
    if total != cfg.num_processes * machines:
        return [Problem("04_training.num_processes", f"{cfg.num_processes} processes per node, but "
                        f"{cfg.accelerate_config} launches num_processes: {total} over num_machines: {machines} "
                        f"({total / machines:g} per node): set 04_training.num_processes: {total / machines:g} or "
                        f"edit the config")]
    from ..train import batch_plan

    try:
        plan = batch_plan(cfg, total)
    except ValueError as exc:
        return [Problem("04_training.global_batch_size", str(exc).split(": ", 1)[1])]
    return [Note("04_training.accelerate_config", f"{data.get('distributed_type', '?')}, {total} processes on "
                                                  f"{machines} node(s); global batch {plan['global_batch_size']} "
                                                  f"packed rows = {plan['per_device_batch_size']} per device x "
                                                  f"{total} x {plan['gradient_accumulation_steps']} accumulation")]
