"""vLLM servers on this machine with explicit GPU placement: the command, its environment, launching and readiness.

`GpuServer` is one `vllm serve` process: the model it serves (also its `--served-model-name`), its port on
127.0.0.1, the GPUs it gets (`CUDA_VISIBLE_DEVICES`; tensor parallel size = their count), the share of their memory
(`--gpu-memory-utilization`) and an optional `--max-model-len`. `launch_servers` starts those not already answering,
one sharing a GPU with an earlier one only once that one is ready (vLLM sizes its memory from what is free when it
starts), and returns once every one answers `GET /v1/models` with its model. Which servers a profile needs, and on
which GPUs, is decided from the params by `orca_utils.teacher_servers` (the `serve-teachers` command).

vLLM flags used (https://docs.vllm.ai/en/v0.8.5/serving/engine_args.html): `--served-model-name`,
`--tensor-parallel-size`, `--gpu-memory-utilization` (default 0.9), `--max-model-len`; `vllm serve <model>`
with `--host` / `--port` (https://docs.vllm.ai/en/v0.17.1/serving/openai_compatible_server/). Devices are picked
with CUDA_VISIBLE_DEVICES, as for any CUDA program; inside the server they are renumbered from 0.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .served import stop_process

__all__ = ["GpuServer", "launch_servers", "models_served", "stop_server"]


@dataclass(frozen=True)
class GpuServer:
    base_url: str
    port: int
    model: str                              # the weights served, and the name requests carry
    params: tuple[str, ...]                 # the params using it, e.g. 02_augmentation.stage1
    gpus: tuple[int, ...]
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None

    @property
    def tensor_parallel_size(self) -> int:
        return len(self.gpus)

    @property
    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpus))}

    def argv(self, executable: str = "vllm") -> list[str]:
        cmd = [executable, "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port),
               "--served-model-name", self.model, "--tensor-parallel-size", str(self.tensor_parallel_size),
               "--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}"]
        return cmd + (["--max-model-len", str(self.max_model_len)] if self.max_model_len else [])

    def command(self) -> str:
        """The shell line: `CUDA_VISIBLE_DEVICES=... vllm serve <model> ...`."""
        return " ".join(f"{k}={v}" for k, v in self.env.items()) + " " + shlex.join(self.argv())


def models_served(base_url: str, timeout_s: float = 2.0) -> list[str] | None:
    """The model ids `GET <base_url>/models` lists, or None when nothing answers there."""
    import httpx

    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/models", timeout=timeout_s)
        return [m["id"] for m in resp.json()["data"]] if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def _vllm_executable() -> str:
    beside = Path(sys.executable).with_name("vllm")
    found = str(beside) if beside.exists() else shutil.which("vllm")
    if not found:
        raise RuntimeError("vllm is not installed here (no `vllm` command): pip install -e '.[gpu]' on the GPU "
                           "machine")
    return found


def stop_server(proc: subprocess.Popen) -> None:
    stop_process(proc, grace_s=30.0)      # vLLM may take a while to free the GPU


def _wait_ready(server: GpuServer, proc: subprocess.Popen, log: Path, deadline: float) -> None:
    while True:
        listed = models_served(server.base_url)
        if listed is not None and server.model in listed:
            return
        if proc.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-8:]) if log.exists() else ""
            raise RuntimeError(f"the server for {server.model} (port {server.port}) exited with {proc.returncode} "
                               f"at start-up (log {log}): {tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server for {server.model} (port {server.port}) is not ready: see {log}")
        time.sleep(2.0)


def launch_servers(servers: list[GpuServer], log_dir: Path, ready_timeout_s: float = 3600.0,
                   executable: str | None = None, echo=print) -> dict[int, subprocess.Popen]:
    """Start every server not already answering with its model (each in its own process group, with its
    CUDA_VISIBLE_DEVICES), one sharing a GPU with an earlier one only once that one is ready (vLLM sizes its memory
    from what is free when it starts); return {port: process} once all answer `GET /v1/models`. On any failure the
    servers started here are stopped and the error says which failed."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: dict[int, tuple[GpuServer, subprocess.Popen, Path]] = {}
    deadline = time.monotonic() + ready_timeout_s
    try:
        for server in servers:
            listed = models_served(server.base_url)
            if listed is not None:
                if server.model not in listed:
                    raise RuntimeError(f"port {server.port} already serves {', '.join(listed) or 'nothing'}, not "
                                       f"{server.model}: stop that server, or move {server.params[0]} to another port")
                echo(f"port {server.port}: already serving {server.model}")
                continue
            for other, proc, log in list(started.values()):
                if set(other.gpus) & set(server.gpus):
                    _wait_ready(other, proc, log, deadline)
            exe = executable or _vllm_executable()
            log = log_dir / f"{server.port}.log"
            echo(f"starting: {server.command()}  (log {log})")
            with open(log, "w") as out:
                proc = subprocess.Popen(server.argv(exe), stdout=out, stderr=subprocess.STDOUT,
                                        env={**os.environ, **server.env}, start_new_session=True)
            started[server.port] = (server, proc, log)
        for server, proc, log in started.values():
            _wait_ready(server, proc, log, deadline)
            echo(f"ready: {server.base_url} serves {server.model} on GPU(s) {','.join(map(str, server.gpus))}")
    except BaseException:
        for _, proc, _ in started.values():
            stop_server(proc)
        raise
    return {port: proc for port, (_, proc, _) in started.items()}
