"""One model at a time: which backend generates for a model spec, and the mapping that keeps only one loaded.

- `generation_backend(spec, serve, ...)`: `HFBackend` in this process (`serve: none`), or an OpenAI-compatible
  server started for the block (`serve: transformers | vllm`, `orca_utils.backends.served`) reached through
  `OpenAIBackend`. Both render the prompt with the model's chat template (the trained student's is the Orca training
  format), so the answers differ only by the engine. A served model answers chat requests only (`mode: generate`).
- `ResidentBackends`: {label: backend} over several models that keeps at most ONE loaded (or served): reading a
  label drops the one before (its server stopped, its memory freed) and loads the next. 05/06 walk their models
  with it; 08 walks them once per task with it.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Callable, Iterator, Mapping, Sequence

from .hf import HFBackend
from .openai_backend import OpenAIBackend
from .served import served_model

__all__ = ["generation_backend", "ResidentBackends", "empty_device_cache"]


@contextlib.contextmanager
def generation_backend(spec: str, serve: str, *, label: str, device: str = "auto", dtype: str = "auto",
                       batch_size: int = 8, max_len_tokens: int | None = None,
                       mode: str = "generate") -> Iterator:
    """The backend that generates for `spec` for the block (see the module docstring); `mode` is the scoring
    mode the caller will use (a served model cannot score log-likelihoods)."""
    if serve == "none":
        backend = HFBackend(spec, batch_size=batch_size, device=device, max_len_tokens=max_len_tokens, label=label,
                            dtype=dtype)
        try:
            yield backend
        finally:
            del backend
        return
    if mode != "generate":
        raise ValueError(f"serve: {serve}: a served model answers chat requests only; set mode: generate")
    with served_model(spec, serve, device=device, dtype=dtype) as server:
        yield OpenAIBackend(server.base_url, server.model, label=label, concurrency=batch_size)


class ResidentBackends(Mapping):
    """{label: backend} over `models` ([(label, spec)]) that keeps at most ONE model loaded: reading a label loads
    its backend with `make(label, spec)` after dropping the one loaded before. Two 13B models never share the
    device; a notebook that walks the models once per task loads each model once per task.

    `make` may return a backend, or a context manager yielding one (`generation_backend`: a served model's server
    is stopped when the next model is read, or when this mapping is closed: `with ResidentBackends(...)` or
    `close()`)."""

    def __init__(self, models: Sequence[tuple[str, str]], make: Callable[[str, str], object]):
        self._specs = dict(models)
        self._make = make
        self._label: str | None = None
        self._backend = None
        self._stack = contextlib.ExitStack()
        self.loads = 0

    def __getitem__(self, label: str):
        if label not in self._specs:
            raise KeyError(label)
        if label != self._label:
            self._backend, self._label = None, None
            self._stack.close()
            gc.collect()
            empty_device_cache()
            made = self._make(label, self._specs[label])
            if isinstance(made, contextlib.AbstractContextManager):
                made = self._stack.enter_context(made)
            self._backend, self._label = made, label
            self.loads += 1
        return self._backend

    def __iter__(self):
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def close(self) -> None:
        """Drop the loaded backend (stop its server, if served)."""
        self._backend, self._label = None, None
        self._stack.close()

    def __enter__(self) -> "ResidentBackends":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def empty_device_cache() -> None:
    """Give the CUDA caching allocator's free blocks back (nothing without torch or a GPU)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
