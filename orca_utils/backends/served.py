"""Serve a model behind an OpenAI-compatible server for evaluation: vLLM on GPUs, `transformers serve` anywhere.

    with served_model("outputs/paper/04_training/student", engine="vllm", device="cuda", dtype="bfloat16") as s:
        backend = OpenAIBackend(s.base_url, s.model, label="student")    # then scored like any API model

Notebooks 05-07 evaluate through it when their `serve` param names an engine
(`orca_utils.backends.resident.generation_backend`): a 13B model generating 512 tokens for thousands of items is
hours with `generate` and minutes with vLLM's continuous batching; the prompts and the scoring stay the project's
own (`orca_utils.evaluation.engine`), only the generation moves to the server.

One prompt format: the server renders the chat template saved with the model. A template-less model (the untuned
LLaMA, or any model trained on the plain format) gets `orca_utils.tokens.ORCA_PLAIN_TEMPLATE`, so that the server's
prompt is the training format, byte for byte, as `HFBackend` renders it: vLLM through `--chat-template <file>` (the
template written once into the cache dir), `transformers serve` (which has no such option) from a *view* of the
model's directory (symlinks to the weights, a copy of the tokenizer config carrying the template). Hub ids are
served by id (`huggyllama/llama-13b`, `id@revision`: vLLM `--revision` / `--tokenizer-revision`); whether they have a
template is read from their tokenizer_config.json, never from the weights (offline: from the local HF cache, else
assumed template-less). `serve_target` decides all this; `server_command` builds the command line. The server runs
as a subprocess on 127.0.0.1 (a free port, `free_port`), is ready when `GET /v1/models` answers (`wait_ready`, also
used by the local server), and is stopped (process group, `stop_process`) when the block ends, also on errors.
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
from typing import Callable, Iterator

from ..paths import cache_dir

__all__ = ["ENGINES", "ServeTarget", "ServedModel", "ServingError", "free_port", "hub_chat_template", "hub_offline",
           "plain_template_file", "request_name", "serve_target", "served_model_dir", "server_command", "served_model",
           "stop_process", "wait_ready"]

ENGINES = ("transformers", "vllm")


class ServingError(RuntimeError):
    """The server could not be started or did not become ready; the message ends with its log's last lines."""


@dataclass(frozen=True)
class ServedModel:
    base_url: str
    model: str            # the name requests must carry
    engine: str


def _view_path(source: Path) -> Path:
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "served" / f"{source.name}-{digest}"


def _dir_has_template(source: Path) -> bool:
    config_path = source / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    return bool(config.get("chat_template")) or (source / "chat_template.jinja").exists()


def _template_view(source: Path) -> Path:
    """A view of `source` (symlinks to its files) whose tokenizer config carries the Orca plain template."""
    from ..tokens import ORCA_PLAIN_TEMPLATE

    config_path = source / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    view = _view_path(source)
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


def plain_template_file(write: bool = True) -> Path:
    """`orca_utils.tokens.ORCA_PLAIN_TEMPLATE` as a Jinja file in the cache dir (written once, keyed by its text),
    for `vllm serve --chat-template <file>`."""
    from ..tokens import ORCA_PLAIN_TEMPLATE

    path = cache_dir() / "served" / f"orca_plain-{hashlib.sha256(ORCA_PLAIN_TEMPLATE.encode()).hexdigest()[:12]}.jinja"
    if write and not (path.is_file() and path.read_text() == ORCA_PLAIN_TEMPLATE):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(ORCA_PLAIN_TEMPLATE)
        os.replace(tmp, path)
    return path


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def hub_chat_template(repo: str, revision: str | None, offline: bool) -> tuple[bool | None, str]:
    """(does the hub model ship a chat template: True / False, or None when unknown; how that was decided), from its
    tokenizer_config.json (and chat_template.jinja, where newer models keep it): small files, never the weights.
    Offline (or when the hub cannot be reached) only the local HF cache is read."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    def cached(name: str) -> Path | None:
        found = try_to_load_from_cache(repo, name, revision=revision)
        return Path(found) if isinstance(found, str) else None

    where = f"{repo}@{revision}" if revision else repo
    files: dict[str, Path | None] = {}
    source = "the hub"
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        if offline:
            files[name], source = cached(name), "the local HF cache"
            continue
        try:
            files[name] = Path(hf_hub_download(repo, name, revision=revision))
        except LocalEntryNotFoundError:   # hub not reachable (or HF_HUB_OFFLINE) and not cached
            files[name], source, offline = cached(name), "the local HF cache (hub not reached)", True
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:   # gated repos included
            what = "revision" if isinstance(exc, RevisionNotFoundError) else "repo (or it is gated or private)"
            raise ServingError(f"{where}: no such {what} on the hub for this token: check the id, the "
                               f"revision and HF_TOKEN") from None
        except EntryNotFoundError:        # the hub answered: no such file in the repo
            files[name] = None
        except Exception:  # noqa: BLE001 - network, auth: fall back to the cache (the server reports the rest)
            files[name], source, offline = cached(name), "the local HF cache (hub not reached)", True
    config_file, jinja = files["tokenizer_config.json"], files["chat_template.jinja"]
    if jinja is not None:
        return True, f"{where} ships a chat template ({source}): served with its own"
    if config_file is None:
        if offline:
            return None, (f"{where}: tokenizer_config.json is not in {source}: assumed template-less, served with "
                          f"the Orca plain template")
        return False, f"{where} has no tokenizer_config.json on the hub: served with the Orca plain template"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        config = {}
    if config.get("chat_template"):
        return True, f"{where} ships a chat template ({source}): served with its own"
    return False, f"{where} has no chat template ({source}): served with the Orca plain template"


@dataclass(frozen=True)
class ServeTarget:
    """What a server loads for a model spec, and with which prompt format."""

    spec: str
    kind: str                      # "dir" | "hub"
    model: str                     # the directory (or its template view), or the hub id
    revision: str | None = None    # hub revision (None: the default branch)
    chat_template: Path | None = None   # a template file passed to the server (vLLM); None: the model's own
    note: str = ""                 # how the prompt format was decided


def serve_target(spec: str, engine: str, offline: bool | None = None, prepare: bool = True) -> ServeTarget:
    """How `engine` serves `spec`. A model without a chat template is served in the Orca plain format
    (`orca_utils.tokens.ORCA_PLAIN_TEMPLATE`): vLLM gets it as `--chat-template <file>` (hub ids and directories
    alike, the weights untouched); `transformers serve` has no such option (its CLI takes a model and serving
    options only), so it is served from a view of the model's directory whose tokenizer config carries the template
    (a template-less hub model is downloaded first, as the server would). Hub ids are served by id: vLLM with
    `--revision` / `--tokenizer-revision`, `transformers serve` as `<id>@<revision>`; whether they have a template
    is read from their tokenizer_config.json, never from the weights. `prepare=False` (preflight) writes and
    downloads nothing: it only says what would be served."""
    from ..models import ModelSpecError, hf_location, resolve_model

    if engine not in ENGINES:
        raise ServingError(f"serve engine {engine!r}: expected one of {ENGINES}")
    offline = hub_offline() if offline is None else offline
    try:
        resolved = resolve_model(spec)
    except (ModelSpecError, FileNotFoundError) as exc:
        raise ServingError(f"model spec {spec!r} cannot be served: {exc}") from None
    if resolved.kind == "hub":
        if resolved.path.count("/") > 1:
            raise ServingError(f"model spec {spec!r}: no such directory, and not a hub id (owner/name)")
        has_template, note = hub_chat_template(resolved.path, resolved.revision, offline)
        if has_template:
            model = resolved.path if engine == "vllm" or not resolved.revision else \
                f"{resolved.path}@{resolved.revision}"
            return ServeTarget(spec, "hub", model, resolved.revision, None, note)
        if engine == "vllm":
            return ServeTarget(spec, "hub", resolved.path, resolved.revision, plain_template_file(prepare), note)
        if not prepare:
            return ServeTarget(spec, "hub", f"<template view of the {resolved.path} snapshot>", resolved.revision,
                               None, note + " (a view of its downloaded snapshot)")
        from huggingface_hub import snapshot_download

        try:
            snapshot = Path(snapshot_download(resolved.path, revision=resolved.revision, local_files_only=offline))
        except Exception as exc:  # noqa: BLE001 - not cached offline, network: one line
            raise ServingError(f"model spec {spec!r}: transformers serve needs a template view of the downloaded "
                               f"snapshot, and the download failed ({type(exc).__name__}): download it first, or "
                               f"serve with vllm") from None
        return ServeTarget(spec, "hub", str(_template_view(snapshot)), resolved.revision, None, note)
    if resolved.kind == "gguf" and not prepare:
        from ..models import gguf_cache_dir

        source = gguf_cache_dir(Path(resolved.path))
        if not source.is_dir():
            return ServeTarget(spec, "dir", str(source), note=f"{resolved.path} is de-quantized into this directory "
                                                               f"when served; its template is read then")
    else:
        source = Path(hf_location(resolved)[0])
    if not source.is_dir():
        raise ServingError(f"model spec {spec!r}: {source} is not a directory")
    if source.is_dir() and _dir_has_template(source):
        return ServeTarget(spec, "dir", str(source), note=f"{source} has a chat template: served with its own")
    note = f"{source} has no chat template: served with the Orca plain template"
    if engine == "vllm":
        return ServeTarget(spec, "dir", str(source), None, plain_template_file(prepare), note)
    view = _template_view(source) if prepare else _view_path(source)
    return ServeTarget(spec, "dir", str(view), note=note + f" (a view of the directory: {view})")


def served_model_dir(spec: str) -> Path:
    """A local HF directory for `spec` whose tokenizer carries a chat template (a view with the Orca plain
    template when the model has none); a hub model is downloaded (snapshot) first."""
    from ..models import hf_location, resolve_model

    resolved = resolve_model(spec)
    if resolved.kind == "hub":
        from huggingface_hub import snapshot_download

        source = Path(snapshot_download(resolved.path, revision=resolved.revision, local_files_only=hub_offline()))
    else:
        source = Path(hf_location(resolved)[0])
    if not source.is_dir():
        raise ServingError(f"model spec {spec!r}: {source} is not a directory")
    return source if _dir_has_template(source) else _template_view(source)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(engine: str, target: ServeTarget | Path | str, port: int | str, device: str = "auto",
                   dtype: str = "auto", name: str = "student") -> list[str]:
    """The command line that serves `target` (a `ServeTarget`, or a directory whose tokenizer has a chat template)
    on 127.0.0.1:`port` under the request name `name`.

    vLLM flags (https://docs.vllm.ai/en/v0.8.5/serving/engine_args.html: `--revision`, `--tokenizer-revision`,
    `--served-model-name`, `--dtype`; https://docs.vllm.ai/en/v0.17.1/serving/openai_compatible_server/: a model
    without a chat template gets one with `--chat-template <file>`). `transformers serve` takes the model as its
    positional argument (a directory, or `<hub id>@<revision>`) and has no chat-template option."""
    if not isinstance(target, ServeTarget):
        target = ServeTarget(str(target), "dir", str(target))
    if engine == "transformers":
        return [sys.executable, "-m", "transformers.cli.transformers", "serve", target.model, "--host",
                "127.0.0.1", "--port", str(port), "--device", "cpu" if device == "cpu" else "auto",
                "--dtype", dtype if dtype != "auto" else "auto"]
    if engine == "vllm":
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", target.model]
        if target.revision:
            cmd += ["--revision", target.revision, "--tokenizer-revision", target.revision]
        if target.chat_template is not None:
            cmd += ["--chat-template", str(target.chat_template)]
        return cmd + ["--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
                      "--dtype", dtype if dtype != "auto" else "bfloat16"]
    raise ServingError(f"serve engine {engine!r}: expected one of {ENGINES}")


def request_name(engine: str, target: ServeTarget | Path | str, name: str) -> str:
    # `transformers serve <model>` answers every request with the forced model; requests name it as it was given.
    model = target.model if isinstance(target, ServeTarget) else str(target)
    return model if engine == "transformers" else name


@contextlib.contextmanager
def served_model(spec: str, engine: str = "transformers", device: str = "auto", dtype: str = "auto",
                 ready_timeout_s: float = 600.0, log_path: Path | None = None,
                 offline: bool | None = None) -> Iterator[ServedModel]:
    """Start an OpenAI-compatible server for `spec` (a directory, or a hub id served by id: see `serve_target`);
    yield where to reach it; stop it when the block ends. `offline` (None: $HF_HUB_OFFLINE) reads hub files from
    the local cache only."""
    if engine == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ServingError("serve: vllm: the package is not installed (pip install -e '.[gpu]' on a GPU "
                               "machine), or set serve: transformers")
    target = serve_target(spec, engine, offline=offline)
    port = free_port()
    cmd = server_command(engine, target, port, device, dtype)
    log_path = Path(log_path) if log_path else cache_dir() / "served" / f"server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(base_url, alive=lambda: proc.poll() is None, timeout_s=ready_timeout_s, poll_s=0.5,
                   probe_timeout_s=2.0,
                   on_exit=lambda: ServingError(f"{engine} server for {spec!r} exited with {proc.returncode} at "
                                                f"start-up: " + _tail(log_path)),
                   on_timeout=lambda: ServingError(f"{engine} server for {spec!r} not ready after "
                                                   f"{ready_timeout_s:.0f}s: " + _tail(log_path)))
        yield ServedModel(base_url, request_name(engine, target, "student"), engine)
    finally:
        stop_process(proc)


def wait_ready(base_url: str, *, alive: Callable[[], bool], timeout_s: float, poll_s: float,
               on_exit: Callable[[], Exception], on_timeout: Callable[[], Exception], probe_timeout_s: float = 2.0,
               headers: dict | None = None) -> None:
    """Return once `GET <base_url>/models` answers 200; raise `on_exit()` when `alive()` turns false first, and
    `on_timeout()` after `timeout_s`."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if not alive():
            raise on_exit()
        try:
            if httpx.get(f"{base_url}/models", timeout=probe_timeout_s, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise on_timeout()
        time.sleep(poll_s)


def stop_process(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Stop a server started in its own session: SIGTERM to its process group, SIGKILL after `grace_s`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
