"""Models on OpenAI-compatible endpoints (`check_endpoints`): listed by `GET <base_url>/models`, not past their
`shutdown_date`, the key variable set; offline stand-ins against the local server's OpenAI emulation mode.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from ..backends.endpoints import is_loopback
from ..chat_api.registry import REGISTRY, lookup, retired_on
from ..schemas import TeacherModelParams
from .findings import Finding, Note, OPENAI_BASE_URL, Options, Problem, WARN_DAYS, Warn, param_owner

__all__ = ["check_endpoints", "endpoint_uses", "fetch_model_list", "model_findings", "teacher_models"]


# ---- 1. models on OpenAI-compatible endpoints ----------------------------------------------------------------
@dataclass(frozen=True)
class _Use:
    param: str                     # e.g. 02_augmentation.stage2.model
    model: str
    offline: bool                  # an offline stand-in (offline_backend data / local_llm)


@dataclass
class _Endpoint:
    block: str
    base_url: str | None
    base_param: str
    key_env: str
    key_param: str
    api_type: str
    emulate: bool
    uses: list[_Use]


def teacher_models(cfg) -> list[tuple[str, TeacherModelParams]]:
    """(dotted name, params) of every teacher-client model of a block: stages, references, judge."""
    found = [(n, getattr(cfg, n, None)) for n in ("stage1", "stage2")]
    found += [(f"references[{i}]", t) for i, t in enumerate(getattr(cfg, "references", None) or [])]
    found.append(("judge", getattr(cfg, "judge", None)))
    return [(n, t) for n, t in found if isinstance(t, TeacherModelParams)]


def endpoint_uses(cfgs: dict) -> list[_Endpoint]:
    out = []
    for stem, cfg in cfgs.items():
        if getattr(cfg, "api_models", None):
            uses = [_Use(f"{stem}.api_models[{i}]", getattr(m, "model", m), False)
                    for i, m in enumerate(cfg.api_models)]
            out.append(_Endpoint(stem, cfg.api_base_url, f"{stem}.api_base_url", cfg.api_key_env,
                                 f"{param_owner(cfgs, 'api_key_env', stem)}.api_key_env", "openai", False, uses))
        ep = getattr(cfg, "endpoint", None)
        groups: dict[str | None, list[tuple[str, TeacherModelParams]]] = {}
        for n, t in teacher_models(cfg) if ep is not None else []:     # a model's own base_url overrides the block's
            groups.setdefault(getattr(t, "base_url", None) if t.offline_backend == "none" else None, []).append((n, t))
        for own, teachers in groups.items():
            uses = [_Use(f"{stem}.{n}.model", t.model, t.offline_backend != "none") for n, t in teachers]
            base_param = f"{stem}.{teachers[0][0]}.base_url" if own else f"{stem}.endpoint.base_url"
            out.append(_Endpoint(stem, own or ep.base_url, base_param, ep.api_key_env, f"{stem}.endpoint.api_key_env",
                                 ep.api_type, ep.emulate_openai, uses))
    return out


@dataclass
class _Listing:
    models: dict[str, Any] | None = None    # id -> shutdown_date (None: none announced)
    status: int | None = None
    error: str | None = None


def fetch_model_list(base_url: str, api_key: str | None, timeout_s: float) -> _Listing:
    """`GET <base_url>/models`; the key goes only into the Authorization header (omitted when None)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return _Listing(error=type(exc).__name__)
    if resp.status_code != 200:
        return _Listing(status=resp.status_code)
    try:
        return _Listing({m["id"]: m.get("shutdown_date") for m in resp.json()["data"]})
    except (ValueError, KeyError, TypeError):
        return _Listing(status=200, error="the answer is not an OpenAI model list")


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, (int, float)):                       # unix seconds, as some servers send
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).date()
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _examples(listed: dict[str, Any], today: dt.date) -> str:
    horizon = today + dt.timedelta(days=WARN_DAYS)
    current = [m for m, d in listed.items() if (_as_date(d) or dt.date.max) > horizon]
    current.sort(key=lambda m: (m not in REGISTRY, m))
    return f" (e.g. {', '.join(current[:3])})" if current else ""


def model_findings(param: str, model: str, listed: dict[str, Any], where: str, today: dt.date) -> list[Finding]:
    """Is `model` usable on `today`, given `listed` (id -> shutdown_date) from `where` (e.g. `<base_url>/models`)?"""
    if model not in listed:
        date = retired_on(model, today)
        if date:
            return [Problem(param, f"{model} was retired on {date} and {where} no longer lists it: "
                                   f"choose a current model{_examples(listed, today)}")]
        return [Problem(param, f"{model} is not listed by {where} (unknown model): check the name or "
                               f"choose a model it lists{_examples(listed, today)}")]
    day = _as_date(listed[model])
    if day is None and (entry := lookup(model)) is not None and entry.shutdown_date:
        # OpenAI lists `shutdown_date` only where a date is announced: the registry's date stands in
        day, where = _as_date(entry.shutdown_date), f"{where} lists none; orca_utils/chat_api/registry.py"
    if day is None:
        return []
    if day <= today:
        return [Problem(param, f"{model} was retired on {day} (shutdown_date listed by {where}): choose a "
                               f"current model{_examples(listed, today)}")]
    if (day - today).days <= WARN_DAYS:
        return [Warn(param, f"{model} shuts down on {day}, in {(day - today).days} days: move to a current "
                            f"model before then{_examples(listed, today)}")]
    return []


def _missing_key(ep: _Endpoint) -> Problem:
    return Problem(ep.key_param, f"environment variable {ep.key_env} is not set: export the API key there "
                                 f"(params only hold the variable's name)")


def _listing_findings(ep: _Endpoint, uses: list[_Use], listing: _Listing, where: str, key_set: bool,
                      today: dt.date, url_param: str, label: str | None = None,
                      start: str | None = None) -> list[Finding]:
    if listing.models is not None:
        label = label or f"{where}/models"
        return [f for u in uses for f in model_findings(u.param, u.model, listing.models, label, today)]
    if listing.status == 401 and not key_set:
        return [_missing_key(ep)]
    if listing.status == 401:
        return [Problem(ep.key_param, f"{where} refused the key in ${ep.key_env} (HTTP 401): export a valid key "
                                      f"for this endpoint")]
    if listing.status is not None:
        what = listing.error or f"answered HTTP {listing.status}"
        return [Problem(url_param, f"GET {where}/models {what}: give the endpoint's OpenAI-compatible /v1 base URL")]
    todo = start or ("is its server running? start it, or fix the URL" if is_loopback(where)
                     else "check the URL and the network")
    return [Problem(url_param, f"could not reach {where} ({listing.error}): {todo}")]


def _check_remote(ep: _Endpoint, uses: list[_Use], opts: Options, cache: dict,
                  start: str | None = None) -> list[Finding]:
    where = (ep.base_url or OPENAI_BASE_URL).rstrip("/")
    if ep.api_type == "azure":
        return [Note(ep.base_param, "Azure endpoint: deployments are not listed by GET /models; model names "
                                    "not checked")]
    key = os.environ.get(ep.key_env) or None
    if key is None and not is_loopback(where):
        return [_missing_key(ep)]
    if (where, ep.key_env) not in cache:
        cache[where, ep.key_env] = fetch_model_list(where, key, opts.timeout_s)
    return _listing_findings(ep, uses, cache[where, ep.key_env], where, key is not None, opts.today,
                             ep.base_param, start=start)


class _ListOnly:
    """A backend for the emulated endpoint: preflight only asks `GET /models`, never for a completion."""

    def complete(self, messages, max_tokens, temperature, stop):
        from ..backends.base import Completion

        return Completion(text="")


def _check_emulated(ep: _Endpoint, uses: list[_Use], opts: Options) -> list[Finding]:
    param = f"{ep.block}.endpoint.emulate_openai"
    names = ", ".join(sorted({u.model for u in uses}))
    if not ep.emulate:
        return [Note(param, f"offline stand-ins ({names}) are served by the notebook itself: not checked "
                            f"(emulate_openai: true checks them against the emulated endpoint)")]
    from ..backends import local_server

    if not hasattr(local_server, "Emulation"):
        return [Problem(param, "orca_utils.backends.local_server has no OpenAI emulation mode in this checkout: "
                               "update it, or set emulate_openai: false")]
    backends = {u.model: _ListOnly() for u in uses}
    try:
        with local_server.serve_openai_compatible(backends, emulate=local_server.Emulation(today=opts.today)) as url:
            listing = fetch_model_list(url, "preflight", opts.timeout_s)
    except Exception as exc:  # noqa: BLE001 - any start-up failure is one line
        return [Problem(param, f"the emulated endpoint did not start ({type(exc).__name__}: {exc}): "
                               f"set emulate_openai: false to skip it")]
    found = _listing_findings(ep, uses, listing, url, True, opts.today, param, "the emulated endpoint's /models")
    return found + [Note(param, f"offline stand-ins ({names}) checked against the emulated endpoint")]


def check_endpoints(cfgs: dict, opts: Options) -> list[Finding]:
    """Also: an open-weights teacher on 127.0.0.1 (`orca_utils.teacher_servers`) that does not answer, or answers
    without the model the params send, gets a problem line naming the command that starts its server."""
    from ..teacher_servers import ServerPlanError, plan_servers, server_for_url

    try:
        servers = plan_servers(cfgs)
    except ServerPlanError:            # reported by check_serving
        servers = []
    profile = next(iter(cfgs.values())).profile if cfgs else "?"
    out: list[Finding] = []
    cache: dict = {}
    for ep in endpoint_uses(cfgs):
        local = [u for u in ep.uses if u.offline]
        remote = [u for u in ep.uses if not u.offline]
        out += _check_emulated(ep, local, opts) if local else []
        server = server_for_url(servers, ep.base_url)
        if server is None:
            out += _check_remote(ep, remote, opts, cache) if remote else []
            continue
        run = f"`python -m orca_utils serve-teachers --profile {profile}`, which runs `{server.command()}`"
        for f in _check_remote(ep, remote, opts, cache, start=f"start its server: {run}") if remote else []:
            listed = isinstance(f, Problem) and "is not listed by" in f.message
            out.append(Problem(f.param, f"{f.message}; the server on port {server.port} must serve {server.model}: "
                                        f"start it with {run}") if listed else f)
    return out
