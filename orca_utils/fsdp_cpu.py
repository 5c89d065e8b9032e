"""FSDP on CPU ranks: `python -m orca_utils.fsdp_cpu <orca_utils.train arguments>` under `accelerate launch`.

accelerate 1.15 turns an FSDP config into `DistributedType.FSDP` only on accelerators. On CPU ranks it builds the
FSDP plugin and then trains with plain data parallelism, so the sharded-checkpoint and consolidation code never runs
(and the final save of a model that was never sharded goes wrong). torch's FSDP2 (`fully_shard`) and its distributed
checkpoints do run on CPU over gloo, so this entry point makes accelerate report FSDP on CPU ranks whenever an FSDP
plugin exists, then runs `orca_utils.train` unchanged. From there on it is the paper profile's path: `fully_shard`
per decoder layer, activation checkpointing by the plugin, SHARDED_STATE_DICT checkpoints (one file per rank),
resume from them, one consolidated student at the end.

`orca_utils.train.launch_command` uses it when `device: cpu` meets an accelerate config whose `distributed_type` is
FSDP (the rehearsal profile: params/accelerate/fsdp_rehearsal_2cpu.yaml). On GPUs it is never used.
"""
from __future__ import annotations

import runpy
import sys


def enable() -> None:
    """Patch accelerate's state so that CPU ranks with an FSDP plugin run FSDP (idempotent)."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    if getattr(AcceleratorState, "_orca_fsdp_on_cpu", False):
        return

    def get(self):
        kind = self.__dict__.get("_orca_distributed_type", self.__dict__.get("distributed_type"))
        if kind == DistributedType.MULTI_CPU and self.__dict__.get("fsdp_plugin") is not None:
            return DistributedType.FSDP
        return kind

    def set_(self, value):
        self.__dict__["_orca_distributed_type"] = self.__dict__["distributed_type"] = value

    init = AcceleratorState.__init__

    def init_keeping_plugin(self, mixed_precision=None, cpu=False, dynamo_plugin=None, deepspeed_plugin=None,
                            fsdp_plugin=None, *args, **kwargs):
        init(self, mixed_precision, cpu, dynamo_plugin, deepspeed_plugin, fsdp_plugin, *args, **kwargs)
        if fsdp_plugin is not None and self.__dict__.get("fsdp_plugin") is None:
            self.fsdp_plugin = fsdp_plugin          # accelerate's CPU branch drops it

    AcceleratorState.distributed_type = property(get, set_)
    AcceleratorState.__init__ = init_keeping_plugin
    AcceleratorState._orca_fsdp_on_cpu = True


if __name__ == "__main__":
    enable()
    sys.argv = ["orca_utils.train", *sys.argv[1:]]
    runpy.run_module("orca_utils.train", run_name="__main__")
