"""Params: load `params/<profile>.yaml`, merge `common:` into each notebook's block, validate into typed objects.

A params file has a `common:` block and one block per notebook (keyed by the notebook's stem, e.g. `03_packing`).
A notebook block holds that notebook's own keys and may override any `common` key; nothing else is allowed, except
a top-level `extends: <profile>`: the file is then read as that profile's file with its own blocks merged over it
(mappings merged key by key, anything else replaced), so that a variant profile (`demo`) lists only what differs.
Every notebook receives one validated object: its schema class below, which inherits the common fields.

Bad input fails before any work starts with a one-line `ConfigError` naming the file, the key and what was
expected (the CLI turns it into exit code 2). Secrets never live here: a param may only *name* the environment
variable that holds a key (fields ending in `_env`), and any value that looks like an API key is rejected.

The per-notebook schemas live in `orca_utils/schemas.py` so that this module stays about loading and validating.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .paths import PARAMS_DIR
from .schemas import NOTEBOOK_SCHEMAS, CommonParams

__all__ = [
    "ConfigError",
    "NOTEBOOK_SCHEMAS",
    "load_profile",
    "load_notebook_config",
    "params_hash",
    "UNHASHED_FIELDS",
    "parse_overrides",
    "profile_path",
    "profile_chain",
]

_SECRET_PATTERN = re.compile(r"^(sk-[A-Za-z0-9_\-]{16,}|sk-proj-[A-Za-z0-9_\-]{8,}|Bearer\s+\S{16,})")


class ConfigError(ValueError):
    """A params problem, already phrased as one line: `<file>: <key>: <what was expected>`."""


def profile_path(profile: str, params_dir: Path | None = None) -> Path:
    params_dir = Path(params_dir) if params_dir else PARAMS_DIR
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", profile or ""):
        raise ConfigError(f"{params_dir}: profile {profile!r}: expected a profile name like 'smoke' or 'paper'")
    path = params_dir / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in params_dir.glob("*.yaml"))
        raise ConfigError(f"{path}: unknown profile {profile!r}: expected one of {known}")
    return path


def parse_overrides(overrides: str | list[str] | tuple[str, ...] | None) -> list[tuple[str, Any]]:
    """`"04_training.stage1.max_steps=5; seed=1"` or a list of `key=value` into (dotted key, YAML-parsed value) pairs.

    A bare key (no dot) addresses `common`. Values are parsed as YAML scalars, so `true`, `3`, `0.5`, `null` work.
    """
    if not overrides:
        return []
    items = overrides.split(";") if isinstance(overrides, str) else list(overrides)
    out = []
    for raw in items:
        raw = raw.strip()
        if not raw:
            continue
        if "=" not in raw:
            raise ConfigError(f"override {raw!r}: expected key=value, e.g. 04_training.stage1.max_steps=5")
        key, value = raw.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {raw!r}: value is not valid YAML ({exc.__class__.__name__})") from None
        key = key.strip()
        out.append((key if "." in key else f"common.{key}", parsed))
    return out


def _apply_override(raw: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    block = parts[0]
    if block != "common" and block not in NOTEBOOK_SCHEMAS:
        raise ConfigError(
            f"{source}: override {dotted!r}: unknown block {block!r}: expected 'common' or one of "
            f"{list(NOTEBOOK_SCHEMAS)}"
        )
    node = raw.setdefault(block, {})
    for depth, part in enumerate(parts[1:-1], start=1):
        if not isinstance(node.get(part), dict):
            # a nested block the profile leaves to the schema: change one key of its default, keep the rest
            seeded = _schema_default(block, parts[1:depth + 1])
            node[part] = seeded if seeded is not None else {}
        node = node[part]
    node[parts[-1]] = value


def _schema_default(block: str, path: list[str]) -> dict | None:
    """The schema's default for a nested params model at `block.path` as a dict, or None when it is no model."""
    obj: Any = CommonParams if block == "common" else NOTEBOOK_SCHEMAS[block]
    for part in path:
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            field = obj.model_fields.get(part)
            if field is None:
                return None
            obj = field.get_default(call_default_factory=True)
        elif isinstance(obj, BaseModel):
            obj = getattr(obj, part, None)
        else:
            return None
    return obj.model_dump() if isinstance(obj, BaseModel) else None


def _find_secrets(node: Any, path: str = "") -> str | None:
    if isinstance(node, dict):
        for key, value in node.items():
            hit = _find_secrets(value, f"{path}.{key}" if path else str(key))
            if hit:
                return hit
    elif isinstance(node, list):
        for i, value in enumerate(node):
            hit = _find_secrets(value, f"{path}[{i}]")
            if hit:
                return hit
    elif isinstance(node, str) and _SECRET_PATTERN.match(node.strip()):
        return path
    return None


def _format_validation_error(source: str, block: str, exc: ValidationError, block_keys: set[str]) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(block)"
    top = str(err["loc"][0]) if err["loc"] else ""
    where = block if top in block_keys or block == "common" else "common"
    kind = err["type"]
    if kind == "extra_forbidden":
        schema = NOTEBOOK_SCHEMAS.get(block, CommonParams)
        expected = f"unknown key: expected one of {sorted(schema.model_fields)}" if len(err["loc"]) == 1 else \
            "unknown key"
        return f"{source}: {where}.{loc}: {expected}"
    if kind == "missing":
        return f"{source}: {where}.{loc}: missing required value"
    got = err.get("input")
    got_txt = json.dumps(got, default=str) if not isinstance(got, (dict, list)) else type(got).__name__
    return f"{source}: {where}.{loc}: {err['msg']} (got {got_txt})"


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML at {where}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level: expected a mapping with 'common' and notebook blocks, "
                          f"got {type(raw).__name__}")
    return raw


def _deep_merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_profile_raw(path: Path, params_dir: Path, seen: tuple[str, ...] = ()) -> dict:
    """The raw mapping of a params file, with the chain of `extends:` resolved (bases from the same folder)."""
    raw = _read_yaml(path)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: extends: expected the name of another profile, got {type(base).__name__}")
    if base in seen or base == path.stem:
        raise ConfigError(f"{path}: extends: {base!r} extends itself through {' -> '.join(seen + (base,))}")
    base_path = profile_path(base, params_dir)
    return _deep_merge(_read_profile_raw(base_path, params_dir, seen + (path.stem,)), raw)


def profile_chain(profile: str, params_dir: Path | str | None = None) -> list[str]:
    """The profile and the profiles it extends, nearest first (`rehearsal` -> ['rehearsal', 'paper'])."""
    params_dir = Path(params_dir) if params_dir else PARAMS_DIR
    chain = [profile]
    while (base := _read_yaml(profile_path(chain[-1], params_dir)).get("extends")) and base not in chain:
        chain.append(str(base))
    return chain


def load_profile(
    profile: str,
    overrides: str | list[str] | tuple[str, ...] | None = None,
    params_dir: Path | str | None = None,
    path: Path | str | None = None,
) -> dict[str, CommonParams]:
    """Validate every block of a profile; return {notebook stem: validated params}. Raises ConfigError."""
    path = Path(path) if path else profile_path(profile, Path(params_dir) if params_dir else None)
    source = str(path)
    raw = _read_profile_raw(path, Path(params_dir) if params_dir else path.parent)
    for dotted, value in parse_overrides(overrides):
        _apply_override(raw, dotted, value, source)
    for key in raw:
        if key != "common" and key not in NOTEBOOK_SCHEMAS:
            raise ConfigError(f"{source}: {key}: unknown block: expected 'common' or one of {list(NOTEBOOK_SCHEMAS)}")
    secret = _find_secrets(raw)
    if secret:
        raise ConfigError(f"{source}: {secret}: looks like an API key: secrets never go in params; put it in an "
                          f"environment variable and name that variable in an `*_env` param")
    common = raw.get("common") or {}
    if not isinstance(common, dict):
        raise ConfigError(f"{source}: common: expected a mapping, got {type(common).__name__}")
    try:
        CommonParams.model_validate({**common, "profile": profile})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, "common", exc, set())) from None
    out: dict[str, CommonParams] = {}
    for stem, schema in NOTEBOOK_SCHEMAS.items():
        block = raw.get(stem) or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{source}: {stem}: expected a mapping, got {type(block).__name__}")
        merged = {**common, **block, "profile": profile}
        try:
            out[stem] = schema.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(source, stem, exc, set(block))) from None
    return out


def load_notebook_config(notebook: str, profile: str, overrides=None, params_dir=None) -> CommonParams:
    """The validated params object for one notebook (the whole profile is validated first)."""
    if notebook not in NOTEBOOK_SCHEMAS:
        raise ConfigError(f"notebook {notebook!r}: expected one of {list(NOTEBOOK_SCHEMAS)}")
    return load_profile(profile, overrides=overrides, params_dir=params_dir)[notebook]


# Params that cannot change a number a notebook computes, left out of `params_hash` (at any depth of the params
# models): the profile's name, where outputs and caches go, the name of the variable holding an API key, where
# training logs are mirrored, and how many processes run notebook 09's seeds side by side. Labels
# (`base_model_label`, a teacher's or judge's `label`) stay in: they are written into the tables that later
# notebooks read and show.
UNHASHED_FIELDS = frozenset({"profile", "output_dir", "cache_file", "data_cache_dir", "api_key_env", "report_to",
                             "workers"})


def _hashed(value: Any, dumped: Any) -> Any:
    """`dumped` (the JSON dump of `value`) without the UNHASHED_FIELDS of every params model inside `value`."""
    if isinstance(value, BaseModel):
        return {k: _hashed(getattr(value, k), v) for k, v in dumped.items() if k not in UNHASHED_FIELDS}
    if isinstance(value, (list, tuple)) and isinstance(dumped, list) and len(value) == len(dumped):
        return [_hashed(v, d) for v, d in zip(value, dumped)]
    return dumped


def params_hash(cfg: BaseModel) -> str:
    """A short stable hash of a validated params object: what a notebook's own params make it compute.

    Left out (`UNHASHED_FIELDS`, wherever they sit in the params models): `profile` (the profile's name: a profile
    that `extends:` another and changes nothing of a notebook hashes that notebook alike), `output_dir` (where
    outputs go), `cache_file` (the name of a notebook's request cache in its own folder), `data_cache_dir` (where
    04 keeps its tokenized data), `api_key_env` (the name of the variable holding a key, never the key),
    `report_to` (where training logs are mirrored) and `workers` (09's seeds side by side). Everything else
    counts, labels included.
    A notebook's outputs are keyed by `runs.notebook_hash`: this hash plus its upstream notebooks' keys.
    """
    dumped = _hashed(cfg, cfg.model_dump(mode="json"))
    payload = json.dumps(dumped, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
