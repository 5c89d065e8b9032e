"""Request validation against OpenAI's OpenAPI description: `RequestSchemas` loads it (from `DEFAULT_OPENAPI_PATH`,
the pinned, trimmed copy in `tests/fixtures/openai_openapi/`, unless told otherwise) and answers a chat-completions or
batch-create body that the schema does not allow with OpenAI's 400."""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import openai_error

__all__ = ["DEFAULT_OPENAPI_PATH", "RequestSchemas"]

log = logging.getLogger(__name__)

# The pinned, trimmed copy of OpenAI's OpenAPI description (tests/fixtures/openai_openapi/README.md says where from).
DEFAULT_OPENAPI_PATH = (Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "openai_openapi"
                        / "openapi.trimmed.json")


def _nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (which OpenAI's 3.1 document still uses here and there) as JSON Schema."""
    if isinstance(node, list):
        return [_nullable_to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + (["null"] if "null" not in types else [])
            if "enum" in out and None not in out["enum"]:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


_JSON_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean",
               "array": "an array", "object": "an object", "null": "null"}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _param(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class RequestSchemas:
    """Validates request bodies against OpenAI's OpenAPI description (`load` caches one per path)."""

    def __init__(self, document: dict):
        from jsonschema import Draft202012Validator

        self.schemas = _nullable_to_json_schema(document["components"]["schemas"])
        components = {"schemas": self.schemas}
        self.chat = Draft202012Validator({"$ref": "#/components/schemas/CreateChatCompletionRequest",
                                          "components": components})
        self.batch = Draft202012Validator({"$ref": "#/components/schemas/CreateBatchRequest",
                                           "components": components})
        self.chat_fields = self.properties("CreateChatCompletionRequest")
        self.batch_fields = self.properties("CreateBatchRequest")
        self.message_fields = {}
        for variant in self._resolve(self.schemas["ChatCompletionRequestMessage"]).get("oneOf", []):
            schema = self._resolve(variant)
            roles = (schema.get("properties", {}).get("role") or {}).get("enum") or []
            for role in roles:
                self.message_fields[role] = self.properties(schema)

    @staticmethod
    @lru_cache(maxsize=8)
    def _load(path: str) -> RequestSchemas | None:
        p = Path(path)
        if not p.is_file():
            log.warning("OpenAI emulation: no OpenAPI description at %s: request bodies are not validated", p)
            return None
        try:
            return RequestSchemas(json.loads(p.read_text(encoding="utf-8")))
        except ImportError:
            log.warning("OpenAI emulation: jsonschema is not installed: request bodies are not validated")
            return None

    @classmethod
    def load(cls, path: str | Path) -> RequestSchemas | None:
        return cls._load(str(path))

    def _resolve(self, schema: dict) -> dict:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def properties(self, schema: str | dict) -> set[str]:
        """Every property a schema defines, through `$ref` and `allOf` (OpenAI's schemas do not set
        `additionalProperties: false`, so "no undefined field" is enforced from these names)."""
        schema = self._resolve(self.schemas[schema] if isinstance(schema, str) else schema)
        names = set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            names |= self.properties(part)
        return names

    def _error(self, validator, fields: set[str], body: Any) -> tuple[int, dict] | None:
        if isinstance(body, dict):
            unknown = sorted(set(body) - fields)
            if unknown:
                # OpenAI's answer to a field it does not define (xlinx/sd-webui-decadetw-auto-prompt-llm#29: top_k;
                # nashsu/llm_wiki#336: thinking): 400 "Unrecognized request argument supplied: <name>", param and
                # code null. The field is also given as `param` here, so that it is named in a structured way too.
                return 400, openai_error(f"Unrecognized request argument supplied: {', '.join(unknown)}",
                                         param=unknown[0])
            messages = body.get("messages") if validator is self.chat else None
            for i, message in enumerate(messages if isinstance(messages, list) else []):
                if isinstance(message, dict) and message.get("role") in self.message_fields:
                    extra = sorted(set(message) - self.message_fields[message["role"]])
                    if extra:
                        return 400, openai_error(f"Additional properties are not allowed ({extra[0]!r} was "
                                                 f"unexpected) - 'messages.{i}'", param=f"messages[{i}].{extra[0]}")
        from jsonschema.exceptions import best_match

        error = best_match(validator.iter_errors(body))
        if error is None:
            return None
        param = _param(error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            return 400, openai_error(f"Missing required parameter: '{_param([*error.absolute_path, missing])}'.",
                                     param=_param([*error.absolute_path, missing]),
                                     code="missing_required_parameter")
        if error.validator == "type":
            expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
            wanted = " or ".join(_JSON_TYPES.get(t, t) for t in expected if t != "null")
            # Jeffser/Alpaca#904: 400 "Invalid type for 'max_tokens': expected an integer, but got a decimal number
            # instead.", param max_tokens, code invalid_type.
            return 400, openai_error(f"Invalid type for '{param}': expected {wanted}, but got "
                                     f"{_json_kind(error.instance)} instead.", param=param or None,
                                     code="invalid_type")
        return 400, openai_error(f"Invalid value for '{param}': {error.message}", param=param or None,
                                 code="invalid_value")

    def chat_error(self, body: Any) -> tuple[int, dict] | None:
        return self._error(self.chat, self.chat_fields, body)

    def batch_create_error(self, body: Any) -> tuple[int, dict] | None:
        return self._error(self.batch, self.batch_fields, body)
