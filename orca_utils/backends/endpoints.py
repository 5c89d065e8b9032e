"""Where an OpenAI-compatible endpoint is and how we talk to it: the one loopback check and the one client factory.

- `is_loopback(url_or_host)`: whether a base URL (or a bare host) is this machine (127.0.0.1, localhost, ::1). A
  loopback endpoint is one of ours (the local server, a served engine, `serve-teachers`): it needs no key, and a
  failure to reach it means a server to start, not a key to fix.
- `openai_client(base_url, api_key_env, ...)`: `openai.OpenAI` or `AsyncOpenAI` (Azure: `AzureOpenAI` /
  `AsyncAzureOpenAI`) with the key read from the environment variable *named* by `api_key_env` (params never hold a
  key); a loopback endpoint without a key gets a placeholder. `timeout_s` / `max_retries` left None keep the
  `openai` package's defaults.
"""
from __future__ import annotations

import os
from typing import Callable
from urllib.parse import urlparse

__all__ = ["LOOPBACK", "LOOPBACK_KEY", "is_loopback", "openai_client"]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
LOOPBACK_KEY = "no-key-needed-for-loopback"     # what a loopback client sends when no key is set


def is_loopback(where: str | None) -> bool:
    """Whether `where` (a URL such as `http://127.0.0.1:8000/v1`, or a bare host) names this machine."""
    if not where:
        return False
    host = urlparse(where).hostname if "://" in where else where.strip("[]")
    return host in LOOPBACK


def _missing_key(api_key_env: str) -> Exception:
    return RuntimeError(f"environment variable {api_key_env} is not set: export the API key there (params only "
                        f"hold the variable's name)")


def openai_client(base_url: str | None, api_key_env: str, *, asynchronous: bool = False, api_type: str = "openai",
                  azure_api_version: str | None = None, timeout_s: float | None = None,
                  max_retries: int | None = None,
                  missing_key: Callable[[str], Exception] = _missing_key):
    """An OpenAI client for `base_url` with the key from `$api_key_env`; `missing_key(api_key_env)` is raised when
    the variable is unset and the endpoint is not loopback."""
    import openai

    key = os.environ.get(api_key_env)
    if not key:
        if not is_loopback(base_url):
            raise missing_key(api_key_env)
        key = LOOPBACK_KEY
    options: dict = {"api_key": key}
    if timeout_s is not None:
        options["timeout"] = timeout_s
    if max_retries is not None:
        options["max_retries"] = max_retries
    if api_type == "azure":
        cls = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        return cls(azure_endpoint=base_url, api_version=azure_api_version, **options)
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(base_url=base_url, **options)
