"""OpenAI's error body, the one shape every refusal of the emulation takes (chat checks, schema checks, batch lines)."""
from __future__ import annotations

__all__ = ["openai_error"]


def openai_error(message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> dict:
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}` (the shape every issue quoted here
    shows)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
