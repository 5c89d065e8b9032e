"""How text comes out of a model: the one place that loads, serves or calls a model for generation.

    from orca_utils.backends import HFBackend, generation_backend
    with generation_backend(spec, "none", label="student") as backend:
        texts = backend.generate(["What is 2 + 2?"], max_new_tokens=32)

- `base.py`: `Completion`, the `Backend` base (`generate()` written once over `generate_completions`), `Servable`
  (what the local server serves) and `ServerFault`, `to_messages`, `cut_at_stop`;
- `hf.py`: `HFBackend`, a Hugging Face causal LM in this process (batched greedy generation, log-likelihoods);
- `openai_backend.py`: `OpenAIBackend`, any OpenAI-compatible chat endpoint;
- `endpoints.py`: the one loopback check (`is_loopback`) and the one OpenAI client factory (`openai_client`);
- `served.py`: engines serving a model behind an OpenAI-compatible server (`transformers serve`, vLLM):
  `served_model`, `serve_target`, `server_command`, readiness (`wait_ready`), `free_port`, `stop_process`;
- `resident.py`: `generation_backend` (in process or served) and `ResidentBackends` (one model loaded at a time),
  used by 05/06, 07 and 08;
- `local_server.py`: our own OpenAI-compatible server (FastAPI) for offline stand-ins, tests and rehearsals (its
  Batch API endpoints in `local_batches.py`, the micro-batcher in `micro_batching.py`, its state and response bodies
  in `local_state.py`), and `openai_emulation/`, its OpenAI emulation mode.

Built on `orca_utils.chat_api` (model registry, wire format), `models` and `tokens`; never on `teacher/` or a
notebook driver (the teacher client builds on this package, not the other way round). The local server's names
(`serve_openai_compatible`, `build_app`) are loaded on first use, so that importing a backend does not load FastAPI.
"""
from __future__ import annotations

from .base import Backend, Completion, Conversation, Servable, ServerFault, cut_at_stop, to_messages
from .endpoints import LOOPBACK, is_loopback, openai_client
from .hf import HFBackend
from .openai_backend import OpenAIBackend
from .resident import ResidentBackends, generation_backend
from .served import ENGINES, ServedModel, ServeTarget, ServingError, serve_target, served_model, server_command

_SERVER_NAMES = ("build_app", "serve_openai_compatible")

__all__ = ["Backend", "Completion", "Conversation", "Servable", "ServerFault", "cut_at_stop", "to_messages",
           "LOOPBACK", "is_loopback", "openai_client", "HFBackend", "OpenAIBackend", "ResidentBackends",
           "generation_backend", "ENGINES", "ServedModel", "ServeTarget", "ServingError", "serve_target",
           "served_model", "server_command", *_SERVER_NAMES]


def __getattr__(name: str):
    if name in _SERVER_NAMES:
        from . import local_server

        return getattr(local_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
