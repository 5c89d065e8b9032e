"""Serve a model behind an OpenAI-compatible server for evaluation: vLLM on GPUs, `transformers serve` anywhere.

    with served_model("outputs/paper/04_training/student", engine="vllm", device="cuda", dtype="bfloat16") as s:
        backend = OpenAIBackend(s.base_url, s.model, label="student")    # then scored like any API model

Notebooks 05-07 evaluate through it when their `serve` param names an engine: a 13B model generating 512 tokens for
thousands of items is hours with `generate` and minutes with vLLM's continuous batching; the prompts and the
scoring stay the project's own (`orca_utils.evaluation.engine`), only the generation moves to the server.

One prompt format: the server renders the chat template saved with the model. A template-less model (the untuned
LLaMA, or any model trained on the plain format) is served from a *view* of its directory (symlinks to the weights,
a copy of the tokenizer config carrying `orca_utils.tokens.ORCA_PLAIN_TEMPLATE`), so that the server's prompt is the
training format, byte for byte, as `HFBackend` renders it. The server runs as a subprocess on 127.0.0.1 (a free
port), is ready when `GET /v1/models` answers, and is stopped (process group) when the block ends, also on errors.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .paths import cache_dir

__all__ = ["ENGINES", "ServedModel", "ServingError", "generation_backend", "served_model_dir", "server_command",
           "served_model"]

ENGINES = ("transformers", "vllm")


class ServingError(RuntimeError):
    """The server could not be started or did not become ready; the message ends with its log's last lines."""


@dataclass(frozen=True)
class ServedModel:
    base_url: str
    model: str            # the name requests must carry
    engine: str


def served_model_dir(spec: str) -> Path:
    """A local HF directory for `spec` whose tokenizer carries a chat template (a view with the Orca plain
    template when the model has none). Hub ids are resolved to local directories only when already local."""
    from .models import hf_location, resolve_model
    from .tokens import ORCA_PLAIN_TEMPLATE

    resolved = resolve_model(spec)
    location, _ = hf_location(resolved)
    source = Path(location)
    if resolved.kind == "hub" or not source.is_dir():
        raise ServingError(f"model spec {spec!r}: serving needs a local directory (download it first, e.g. "
                           f"`huggingface-cli download {resolved.path} --local-dir <dir>`)")
    config_path = source / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    if config.get("chat_template") or (source / "chat_template.jinja").exists():
        return source
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    view = cache_dir() / "served" / f"{source.name}-{digest}"
    stamp = f"{source.resolve()}:{config_path.stat().st_mtime_ns if config_path.exists() else 0}"
    if (view / ".source").exists() and (view / ".source").read_text() == stamp:
        return view
    tmp = view.with_name(view.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "tokenizer_config.json":
            (tmp / item.name).symlink_to(item.resolve())
    (tmp / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": ORCA_PLAIN_TEMPLATE},
                                                          indent=2))
    (tmp / ".source").write_text(stamp)
    shutil.rmtree(view, ignore_errors=True)
    tmp.rename(view)
    return view


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(engine: str, model_dir: Path, port: int, device: str = "auto", dtype: str = "auto",
                   name: str = "student") -> list[str]:
    """The command line that serves `model_dir` on 127.0.0.1:`port` under the request name `name`."""
    if engine == "transformers":
        return [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir), "--host",
                "127.0.0.1", "--port", str(port), "--device", "cpu" if device == "cpu" else "auto",
                "--dtype", dtype if dtype != "auto" else "auto"]
    if engine == "vllm":
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
                "--dtype", dtype if dtype != "auto" else "bfloat16"]
    raise ServingError(f"serve engine {engine!r}: expected one of {ENGINES}")


def _request_name(engine: str, model_dir: Path, name: str) -> str:
    # `transformers serve <dir>` answers every request with the forced model; requests name its directory.
    return str(model_dir) if engine == "transformers" else name


@contextlib.contextmanager
def served_model(spec: str, engine: str = "transformers", device: str = "auto", dtype: str = "auto",
                 ready_timeout_s: float = 600.0, log_path: Path | None = None) -> Iterator[ServedModel]:
    """Start an OpenAI-compatible server for `spec`; yield where to reach it; stop it when the block ends."""
    import httpx

    if engine == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ServingError("serve: vllm: the package is not installed (pip install -e '.[gpu]' on a GPU "
                               "machine), or set serve: transformers")
    model_dir = served_model_dir(spec)
    port = _free_port()
    cmd = server_command(engine, model_dir, port, device, dtype)
    log_path = Path(log_path) if log_path else cache_dir() / "served" / f"server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise ServingError(f"{engine} server for {spec!r} exited with {proc.returncode} at start-up: "
                                   + _tail(log_path))
            try:
                if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServingError(f"{engine} server for {spec!r} not ready after {ready_timeout_s:.0f}s: "
                                   + _tail(log_path))
            time.sleep(0.5)
        yield ServedModel(base_url, _request_name(engine, model_dir, "student"), engine)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def generation_backend(spec: str, serve: str, *, label: str, device: str = "auto", dtype: str = "auto",
                       batch_size: int = 8, max_len_tokens: int | None = None) -> Iterator:
    """A backend that generates for `spec`: `HFBackend` in this process (`serve: none`), or an OpenAI-compatible
    server started for the block (`serve: transformers | vllm`) reached through `OpenAIBackend`. Both render the
    prompt with the model's chat template (the trained student's is the Orca training format), so the answers
    differ only by the engine."""
    from .generate import HFBackend, OpenAIBackend

    if serve == "none":
        yield HFBackend(spec, batch_size=batch_size, device=device, max_len_tokens=max_len_tokens, label=label,
                        dtype=dtype)
        return
    with served_model(spec, serve, device=device, dtype=dtype) as server:
        yield OpenAIBackend(server.base_url, server.model, label=label, concurrency=batch_size)

