"""Preflight (`python -m orca_utils validate --profile P --deep`): what would fail before money or GPU hours are spent.

Each check is one function `check_*(cfgs, opts) -> list[Finding]`, run in this order by `run_preflight`:
- `check_endpoints`: every model sent to an OpenAI-compatible endpoint (02's stages, 07's references and judge,
  08's judge, 05/06's `api_models`) is listed by `GET <base_url>/models` and not past its `shutdown_date` (within
  30 days: a warning); the key variable is set (its value is never printed). Offline stand-ins are checked against
  the local server in OpenAI emulation mode when their block has `endpoint.emulate_openai: true`, else noted.
- `check_model_specs`: local model specs exist (no weights are loaded); hub models, revisions and dataset repos
  exist and are not gated for us (one note instead when offline; one line when the hub cannot be reached).
- `check_url_sources`: every dataset the notebooks read has a local copy, or (online) the first file of its pinned
  URL source answers.
- `check_accelerate`: 04's accelerate config exists, parses, and launches `04_training.num_processes` per node.
- `check_memory`: GPU memory per device for training (04; fp32 master weights, gradients and AdamW states under
  mixed bf16) and inference (05-08), from the student's config.json (offline, a published architecture:
  `PUBLISHED_CONFIGS`), against the free memory of the visible CUDA devices (`training_memory` /
  `inference_memory` hold the arithmetic).
- `check_projections` (`orca_utils.projections`): 02's wall time and 04's GPU hours per stage, as estimates.

A problem is one line `<notebook>.<dotted.param>: <what is wrong>: <what to do>` and makes the command exit 2;
warnings and notes are printed with a `warning:` / `note:` prefix and do not.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .backends.endpoints import is_loopback
from .chat_api.registry import REGISTRY, lookup, retired_on
from .models import ModelSpecError, resolve_model
from .paths import REPO_ROOT
from .schemas import TeacherModelParams
from .train import accelerate_config_path
from .projections import check_projections      # 02's wall time and 04's GPU hours, as estimates

__all__ = ["Finding", "MemoryEstimate", "ModelDims", "Note", "Options", "Problem", "Report", "Warn",
           "PUBLISHED_CONFIGS", "check_accelerate", "check_endpoints", "check_memory", "check_model_specs",
           "check_url_sources", "hub_offline", "load_model_config",
           "inference_memory", "model_dims", "model_findings", "run_preflight", "training_memory"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
WARN_DAYS = 30                     # a shutdown date this close is a warning
ASSUMED_PROMPT_TOKENS = 1024       # prompt length for the KV cache where no param caps it
GPU_NOTEBOOKS = ("04_training", "05_agieval", "06_bbh", "07_open_ended", "08_safety")
GB = 1e9


# ---- findings and report ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    param: str                     # `<notebook>.<dotted.param>` (or `common.<param>`)
    message: str                   # `<what is wrong>: <what to do>`
    level: ClassVar[str] = "note"

    def __str__(self) -> str:
        line = f"{self.param}: {self.message}"
        return line if self.level == "problem" else f"{self.level}: {line}"


class Problem(Finding):
    """Would fail the run (or waste it): exit 2."""
    level = "problem"


class Warn(Finding):
    """Will fail soon (a model shutting down within 30 days); does not fail the check."""
    level = "warning"


class Note(Finding):
    """What was checked, skipped or estimated."""
    level = "note"


@dataclass
class Options:
    today: dt.date = field(default_factory=dt.date.today)
    hub_api: Any = None                            # huggingface_hub.HfApi() when None
    gpus: list[tuple[int, int]] | None = None      # (free, total) bytes per CUDA device; None: ask torch
    timeout_s: float = 10.0
    hub_unreachable: bool = False                  # set by check_model_specs: later checks use the cache only


@dataclass
class Report:
    findings: list[Finding]

    def of(self, level: str) -> list[Finding]:
        return [f for f in self.findings if f.level == level]

    @property
    def ok(self) -> bool:
        return not self.of("problem")

    def lines(self) -> list[str]:
        return [str(f) for level in ("problem", "warning", "note") for f in self.of(level)]

    def summary(self) -> str:
        counts = ", ".join(f"{len(self.of(lv))} {lv}(s)" for lv in ("problem", "warning", "note"))
        return f"preflight: {counts}: " + ("ready" if self.ok else "fix the problem lines above before running")


def run_preflight(cfgs: dict, options: Options | None = None) -> Report:
    """Every check on a loaded profile ({notebook stem: validated params}, from `config.load_profile`)."""
    opts = options or Options()
    findings: list[Finding] = []
    for check in (check_endpoints, check_model_specs, check_url_sources, check_accelerate, check_serving,
                  check_memory, check_projections):
        findings += [f for f in check(cfgs, opts) if f not in findings]
    return Report(findings)


def _served_models(stem: str, cfg, cfgs: dict) -> list[tuple[str, str, str, bool]]:
    """(param, label, spec, produced_later) of every model a notebook with `serve` will serve: the untuned student
    (05/06 with eval_base_model, 07 with candidate: base), and notebook 04's student (05/06; 07 with candidate:
    student), which 04 writes to outputs/<profile>/04_training/student."""
    from .contracts import STUDENT_DIR
    from .runs import profile_root

    base = (f"{_owner(cfgs, 'student_model', stem)}.student_model", cfg.base_model_label, cfg.student_model, False)
    tuned_dir = profile_root(cfg) / "04_training" / STUDENT_DIR
    tuned = (f"{stem}.serve", "04_training's student", str(tuned_dir), not (tuned_dir / "config.json").exists())
    if stem == "07_open_ended":
        return [base] if cfg.candidate == "base" else [tuned]
    return ([base] if getattr(cfg, "eval_base_model", False) else []) + [tuned]


def _display(cmd: list[str]) -> str:
    import shlex
    import sys

    return " ".join("python" if c == sys.executable else c if c == "<port>" else shlex.quote(c) for c in cmd)


def check_serving(cfgs: dict, opts: Options) -> list[Finding]:
    """05/06/07 `serve`: the mode allows serving, the engine is installed (vLLM comes with the `gpu` extra; it
    serves on CUDA), and every model the notebook will serve is servable (a local directory that exists or that 04
    will write, or a hub id: its template read from tokenizer_config.json, never the weights), with the command
    line in a note. Then the open-weights teachers' servers (`orca_utils.teacher_servers`): their placement, and
    the command that starts each."""
    import importlib.util

    from .backends.served import ServeTarget, ServingError, serve_target, server_command

    findings: list[Finding] = []
    for stem, cfg in cfgs.items():
        engine = getattr(cfg, "serve", "none")
        if engine == "none":
            continue
        if getattr(cfg, "mode", "generate") != "generate":
            findings.append(Problem(f"{stem}.serve", f"{engine}: a served model answers chat requests only, but "
                                    f"mode is {cfg.mode}: set mode: generate, or serve: none"))
        if engine == "vllm" and importlib.util.find_spec("vllm") is None:
            where = "on the GPU machine" if cfg.device in ("cuda", "auto") else "(vLLM serves on CUDA: device is " \
                f"{cfg.device})"
            findings.append(Problem(f"{stem}.serve", f"vllm is not installed here: pip install -e '.[gpu]' {where}, "
                                    f"or set serve: transformers"))
        if engine == "transformers" and importlib.util.find_spec("transformers.cli.serve") is None:
            findings.append(Problem(f"{stem}.serve", "this transformers has no `transformers serve`: install "
                                    "transformers[serving] >= 4.48, or set serve: none"))
        offline = hub_offline(cfg) or opts.hub_unreachable
        for param, label, spec, later in _served_models(stem, cfg, cfgs):
            if later:
                target = ServeTarget(spec, "dir", spec, note="written by 04_training (with its chat template)")
            else:
                try:
                    target = serve_target(spec, engine, offline=offline, prepare=False)
                except ServingError as exc:
                    findings.append(Problem(param, f"{engine} cannot serve {label} for {stem}: {exc}: give a hub id "
                                                   f"or an existing directory"))
                    continue
            cmd = _display(server_command(engine, target, "<port>", cfg.device, cfg.dtype))
            findings.append(Note(f"{stem}.serve", f"{engine} serves {label} ({spec}; {target.note}): {cmd}"))
    findings += _teacher_server_findings(cfgs)
    return findings


def _teacher_server_findings(cfgs: dict) -> list[Finding]:
    from .teacher_servers import ServerPlanError, plan_servers

    try:
        servers = plan_servers(cfgs)
    except ServerPlanError as exc:
        return [Problem(exc.param, exc.message)]
    profile = next(iter(cfgs.values())).profile if cfgs else "?"
    return [Note(f"{s.params[0]}.base_url", f"{s.model} is served here on port {s.port} (GPU(s) "
                                            f"{','.join(map(str, s.gpus))}; start with `python -m orca_utils "
                                            f"serve-teachers --profile {profile}`): {s.command()}") for s in servers]


def _owner(cfgs: dict, name: str, stem: str) -> str:
    """`common` when `stem`'s value of `name` is the one most blocks share (so it came from `common`), else `stem`."""
    values = Counter(repr(getattr(c, name, None)) for c in cfgs.values())
    return "common" if values[repr(getattr(cfgs[stem], name))] * 2 > len(cfgs) else stem


def hub_offline(cfg) -> bool:
    return cfg.offline or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


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


def _teachers(cfg) -> list[tuple[str, TeacherModelParams]]:
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
                                 f"{_owner(cfgs, 'api_key_env', stem)}.api_key_env", "openai", False, uses))
        ep = getattr(cfg, "endpoint", None)
        groups: dict[str | None, list[tuple[str, TeacherModelParams]]] = {}
        for n, t in _teachers(cfg) if ep is not None else []:     # a model's own base_url overrides the block's
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
        from .backends.base import Completion

        return Completion(text="")


def _check_emulated(ep: _Endpoint, uses: list[_Use], opts: Options) -> list[Finding]:
    param = f"{ep.block}.endpoint.emulate_openai"
    names = ", ".join(sorted({u.model for u in uses}))
    if not ep.emulate:
        return [Note(param, f"offline stand-ins ({names}) are served by the notebook itself: not checked "
                            f"(emulate_openai: true checks them against the emulated endpoint)")]
    from .backends import local_server

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
    from .teacher_servers import ServerPlanError, plan_servers, server_for_url

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


# ---- 2. model specs and hub repos -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    param: str
    spec: str
    revision: str | None = None
    revision_param: str | None = None
    repo_type: str = "model"
    offline: bool = False


def spec_uses(cfgs: dict) -> list[_Spec]:
    """Every model spec and hub repo the profile's notebooks load (once each, under the first param naming it)."""
    out = [_Spec(f"{_owner(cfgs, n, s)}.{n}", getattr(c, n), offline=hub_offline(c))
           for n in ("student_model", "llama_tokenizer") for s, c in cfgs.items()]
    for stem, cfg in cfgs.items():
        off = hub_offline(cfg)
        if getattr(cfg, "token_counter", None):
            out.append(_Spec(f"{stem}.token_counter", cfg.token_counter, offline=off))
        out += [_Spec(f"{stem}.{n}.local_model", t.local_model, offline=off) for n, t in _teachers(cfg)
                if t.offline_backend == "local_llm" and t.local_model]
        tox = getattr(cfg, "toxigen", None)
        if tox is not None and tox.scorer == "classifier" and tox.classifier:
            out.append(_Spec(f"{stem}.toxigen.classifier", tox.classifier, tox.classifier_revision,
                             f"{stem}.toxigen.classifier_revision", offline=off))
        if getattr(cfg, "source", None) == "hub":
            out += [_Spec(f"{stem}.hub_submixes.{c}", repo, cfg.hub_revision, f"{stem}.hub_revision", "dataset",
                          off) for c, repo in cfg.hub_submixes.items()]
    seen: set = set()
    return [s for s in out if (k := (s.spec, s.revision, s.repo_type)) not in seen and not seen.add(k)]


def _hub_findings(s: _Spec, repo: str, revision: str | None, api) -> list[Finding]:
    """One hub repo: exists, has the revision, is not gated for us. Network errors propagate (one line upstream)."""
    from huggingface_hub import errors

    gated = Problem(s.param, f"{repo} is gated and your hub token has no access: accept its conditions on "
                             f"https://huggingface.co/{'datasets/' * (s.repo_type == 'dataset')}{repo} and export "
                             f"HF_TOKEN")
    try:
        info = (api.dataset_info if s.repo_type == "dataset" else api.model_info)(repo, revision=revision)
    except errors.GatedRepoError:
        return [gated]
    except errors.RepositoryNotFoundError:
        return [Problem(s.param, f"{repo}: no such {s.repo_type} repo on the hub (or private): check the id")]
    except errors.RevisionNotFoundError:
        return [Problem(s.revision_param or s.param, f"{repo} has no revision {revision!r}: pin an existing "
                                                     f"branch, tag or commit")]
    except errors.HfHubHTTPError as exc:
        code = getattr(getattr(exc, "response", None), "status_code", "?")
        return [Problem(s.param, f"{repo}: the hub answered HTTP {code}: check the id and HF_TOKEN")]
    if not getattr(info, "gated", False):
        return []
    try:
        api.auth_check(repo, repo_type=s.repo_type)
    except Exception:  # noqa: BLE001 - no token, or no access: both mean the download would fail
        return [gated]
    return [Note(s.param, f"{repo} is gated; your hub token has access")]


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the hub client raises when the hub cannot be reached (its HTTP answers are handled before)."""
    import httpx

    errors: list[type[BaseException]] = [OSError, httpx.HTTPError]
    for module, name in (("httpx2", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def check_model_specs(cfgs: dict, opts: Options) -> list[Finding]:
    out: list[Finding] = []
    hub, skipped = [], []
    for s in spec_uses(cfgs):
        repo, revision = s.spec, s.revision
        if s.repo_type == "dataset":            # a folder in the hub's layout (relative to the checkout) or an id
            if (REPO_ROOT / s.spec).is_dir():
                continue
            if s.spec.startswith((".", "/", "~")) or s.spec.count("/") != 1:
                out.append(Problem(s.param, f"{s.spec}: no such folder (relative to the checkout), and not a hub "
                                            f"id (owner/name): fix the path or the id"))
                continue
        else:
            try:
                resolved = resolve_model(s.spec)
            except (ModelSpecError, FileNotFoundError) as exc:
                out.append(Problem(s.param, f"{exc}: give a hub id, a directory, a .gguf file, pkg:<package>/<file> "
                                            f"or shared:<path> that exists"))
                continue
            if resolved.kind != "hub":
                continue
            repo, revision = resolved.path, revision or resolved.revision
        (skipped if s.offline else hub).append((s, repo, revision))
    if skipped:
        names = sorted({r for _, r, _ in skipped})
        out.append(Note("common.offline", f"hub checks skipped (offline): {len(names)} repo(s) not checked "
                                          f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"))
    if hub:
        from huggingface_hub import HfApi

        api = opts.hub_api or HfApi()
        for i, (s, repo, revision) in enumerate(hub):
            try:
                out += _hub_findings(s, repo, revision, api)
            except _network_errors() as exc:  # one line, and stop asking
                out.append(Problem("common.offline", f"the Hugging Face hub could not be reached "
                                                     f"({type(exc).__name__}; {len(hub) - i} repo(s) not checked): "
                                                     f"check the network, or set offline: true with local copies"))
                opts.hub_unreachable = True
                break
    return out


# ---- 3. URL sources of datasets --------------------------------------------------------------------------------
def datasets_needed(cfgs: dict) -> dict[str, str]:
    """{dataset name: the first notebook reading it} for this profile (orca_utils.data names)."""
    needs: list[tuple[str, str]] = []
    for stem, cfg in cfgs.items():
        if stem == "01_sampling":
            local = ["flan_cot", "niv2", "flan"] if cfg.source == "local" else []
            needs += [(stem, d) for d in local + list(cfg.contamination_eval_sets)]
        elif stem in ("05_agieval", "06_bbh"):
            needs.append((stem, stem[3:]))
        elif stem == "07_open_ended":
            needs += [(stem, d) for d in cfg.prompt_sets] + ([(stem, "fastchat_judge")] if cfg.judge else [])
        elif stem == "08_safety":
            needs += [(stem, "truthfulqa"), (stem, "toxigen")]
        elif stem == "09_explanation_vs_answer":
            needs.append((stem, "bbh"))
    out: dict[str, str] = {}
    for stem, name in needs:
        out.setdefault(name, stem)
    return out


def _local_copy(name: str, source, cfg) -> bool:
    """A local data root holds the dataset, or a complete download of its pinned files is in the cache."""
    from . import data

    if any(root is not None and (root / source.local).exists() for _, root in data.candidate_roots(cfg.data_dir)):
        return True
    gh = getattr(source, "github", None)
    folder = data.github_cache_dir(name, gh) if gh else None
    return bool(gh) and all((folder / local).is_file() for _, local in gh.files)


def _url_answers(url: str, timeout_s: float) -> int:
    """The HTTP status of a HEAD (GET when HEAD is refused), following redirects."""
    import httpx

    resp = httpx.head(url, follow_redirects=True, timeout=timeout_s)
    if resp.status_code in (403, 405):
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as streamed:
            return streamed.status_code
    return resp.status_code


def check_url_sources(cfgs: dict, opts: Options) -> list[Finding]:
    """Datasets the profile reads without a local copy: offline, a problem; online, the first file of their pinned
    URL source must answer 200 (datasets with only a hub source are left to the notebook)."""
    import httpx

    from . import data

    out: list[Finding] = []
    todo = []
    for name, stem in datasets_needed(cfgs).items():
        source, cfg = data.DATASETS.get(name, data.DatasetSource(name)), cfgs[stem]
        param = f"{_owner(cfgs, 'data_dir', stem)}.data_dir"
        if _local_copy(name, source, cfg):
            continue
        if hub_offline(cfg):
            out.append(Problem(param, f"dataset {name} ({stem}) has no local copy and offline mode skips every "
                                      f"download: put a copy under the data root (data_dir, $ORCA_DATA_DIR or "
                                      f"../shared/data), or set offline: false"))
        elif getattr(source, "github", None) is not None:
            todo.append((name, param, source.github))
    for name, param, gh in todo:
        url = gh.url(gh.files[0][0])
        try:
            status = _url_answers(url, opts.timeout_s)
        except httpx.HTTPError as exc:
            out.append(Problem(param, f"dataset {name}: {url} could not be reached ({type(exc).__name__}): check the "
                                      f"network, or put local copies under the data root"))
            break
        if status != 200:
            out.append(Problem(param, f"dataset {name}: {url} answered HTTP {status}: put a local copy under the "
                                      f"data root (data_dir, $ORCA_DATA_DIR or ../shared/data)"))
    return out


# ---- 4. accelerate configs -------------------------------------------------------------------------------------
def _read_accelerate(value: str) -> tuple[dict | None, str | None]:
    path = accelerate_config_path(value)
    if not path.is_file():
        return None, f"{value}: no such file: name a config under params/accelerate/"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return None, f"{value}: not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__}): fix the file"
    if not isinstance(data, dict) or not isinstance(data.get("num_processes"), int):
        return None, f"{value}: no integer num_processes: an accelerate config must set it"
    return data, None


def check_accelerate(cfgs: dict, opts: Options) -> list[Finding]:
    cfg = cfgs.get("04_training")
    if cfg is None or cfg.launcher != "accelerate":
        return []
    if not cfg.accelerate_config:
        return [Note("04_training.accelerate_config", f"none: accelerate launch --num_processes "
                                                      f"{cfg.num_processes} on this node")]
    data, error = _read_accelerate(cfg.accelerate_config)
    if error:
        return [Problem("04_training.accelerate_config", error)]
    machines, total = int(data.get("num_machines") or 1), data["num_processes"]
    if total != cfg.num_processes * machines:
        return [Problem("04_training.num_processes", f"{cfg.num_processes} processes per node, but "
                        f"{cfg.accelerate_config} launches num_processes: {total} over num_machines: {machines} "
                        f"({total / machines:g} per node): set 04_training.num_processes: {total / machines:g} or "
                        f"edit the config")]
    from .train import batch_plan

    try:
        plan = batch_plan(cfg, total)
    except ValueError as exc:
        return [Problem("04_training.global_batch_size", str(exc).split(": ", 1)[1])]
    return [Note("04_training.accelerate_config", f"{data.get('distributed_type', '?')}, {total} processes on "
                                                  f"{machines} node(s); global batch {plan['global_batch_size']} "
                                                  f"packed rows = {plan['per_device_batch_size']} per device x "
                                                  f"{total} x {plan['gradient_accumulation_steps']} accumulation")]


# ---- 5. GPU memory -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDims:
    n_params: int
    n_layers: int
    hidden: int
    vocab: int
    kv_dim: int                    # key/value heads x head dim (the KV cache's width per layer)
    max_positions: int | None


def model_dims(config: dict) -> ModelDims:
    """Sizes of a decoder-only transformer from its HF `config.json` (ValueError naming what is missing).

    Parameters, unless the config states `num_parameters`:
        V*h (embeddings; twice when the output head is untied) + h (final norm)
        + L * (h*q + 2*h*kv + q*h [attention: q, k, v, o]  +  m*h*i*E [MLP]  +  2*h [norms])
    with q = heads x head_dim, kv = kv_heads x head_dim, i = intermediate size, E = experts (1 if dense) and
    m = 3 for gated MLPs (SiLU/SwiGLU, e.g. LLaMA), else 2. LLaMA-13B: 13.016e9.
    """
    c = config.get("text_config") or config
    pick = lambda *names: next((c[n] for n in names if c.get(n) is not None), None)
    h, layers = pick("hidden_size", "n_embd", "d_model"), pick("num_hidden_layers", "n_layer", "num_layers")
    heads, vocab = pick("num_attention_heads", "n_head"), pick("vocab_size")
    missing = [n for n, v in [("hidden_size", h), ("num_hidden_layers", layers), ("num_attention_heads", heads),
                              ("vocab_size", vocab)] if v is None]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)}")
    head_dim = pick("head_dim") or h // heads
    kv = (pick("num_key_value_heads") or heads) * head_dim
    n = pick("num_parameters")
    if n is None:
        gated = c.get("hidden_act") in ("silu", "swish", "swiglu") or str(c.get("model_type", "")).startswith("gemma")
        mlp = (3 if gated else 2) * h * (pick("intermediate_size", "n_inner", "ffn_dim") or 4 * h)
        attn = 2 * h * heads * head_dim + 2 * h * kv
        tied = c.get("tie_word_embeddings", config.get("tie_word_embeddings", True))
        n = vocab * h * (1 if tied else 2) + h + layers * (attn + mlp * (pick("num_local_experts", "num_experts") or 1)
                                                            + 2 * h)
    return ModelDims(int(n), layers, h, vocab, kv, pick("max_position_embeddings", "n_positions"))


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict[str, float]        # bytes per device, by what holds them

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        return f"{_size(self.total)} = " + " + ".join(f"{_size(v)} {k}" for k, v in self.parts.items())


def _size(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def training_memory(n_params: float, n_layers: int, hidden: int, vocab: int, *, weight_bytes: int, batch: int,
                    seq_len: int, checkpointing: bool, shards: tuple[int, int, int] = (1, 1, 1),
                    fp32_master: bool = False) -> MemoryEstimate:
    """Bytes per device to train a decoder with AdamW (w = weight_bytes: 4 fp32, 2 bf16/fp16, the compute dtype).

    Pure precision (`fp32_master=False`: fp32 training, or bf16 weights trained as bf16 in one process):
        weights     = P * w / s_w
        grads       = P * w / s_g
        AdamW       = 2 * P * w / s_o                  (exp_avg and exp_avg_sq, in the parameters' dtype)
    Mixed precision (`fp32_master=True`: an accelerate config with `mixed_precision: bf16` / `fp16` under FSDP or
    DeepSpeed). FSDP upcasts the sharded parameters to fp32 and computes in bf16: the sharded state is fp32
    master weights, fp32 gradients (reduced in fp32) and fp32 AdamW moments, 16 bytes per parameter, plus the bf16
    copy of the layers gathered for compute (the current one and the one prefetched); ZeRO-3 keeps bf16 weights and
    gradients (2 + 2) beside fp32 master weights and moments (4 + 8): the same 16 bytes per parameter:
        weights     = P * 4 / s_w                      (fp32 master)
        grads       = P * 4 / s_g                      (fp32)
        AdamW       = 2 * P * 4 / s_o                  (fp32 moments)
        compute copy= 2 * (P / L) * w                  (two decoder layers gathered unsharded, in bf16)
    Both:
        activations = b * s * h * w * (17 * L)         without gradient checkpointing (Korthikanti et al. 2022:
                                                        34sbh bytes per layer in 16 bit, flash/SDPA attention)
                    = b * s * h * w * (L + 17)         with it (each layer's input, plus one layer recomputed)
        logits      = 2 * b * s * V * 4                (fp32 logits and their gradient)
    (s_w, s_g, s_o) = the shards: (N, N, N) for FSDP full shard / ZeRO-3 over N processes, (1, 1, 1) unsharded.
    LLaMA-13B, pure bf16: weights 13.0e9 x 2 = 26 GB, grads 26 GB, AdamW 52 GB, unsharded; mixed bf16 on 8 GPUs:
    (52 + 52 + 104) / 8 = 26 GB per GPU of sharded state, plus a 1.3 GB compute copy.
    """
    s_w, s_g, s_o = shards
    state_bytes = 4 if fp32_master else weight_bytes
    per_token = batch * seq_len * hidden * weight_bytes
    parts = {
        "weights" + (" (fp32 master)" if fp32_master else ""): n_params * state_bytes / s_w,
        "grads" + (" (fp32)" if fp32_master else ""): n_params * state_bytes / s_g,
        "AdamW states" + (" (fp32)" if fp32_master else ""): 2 * n_params * state_bytes / s_o,
    }
    if fp32_master:
        parts[f"compute copy ({'bf16' if weight_bytes == 2 else 'fp32'}, 2 layers)"] = \
            2 * n_params / max(n_layers, 1) * weight_bytes
    parts["activations"] = per_token * ((n_layers + 17) if checkpointing else 17 * n_layers)
    parts["logits"] = 2 * batch * seq_len * vocab * 4
    return MemoryEstimate(parts)


def inference_memory(n_params: float, n_layers: int, kv_dim: int, *, weight_bytes: int, batch: int,
                     seq_len: int) -> MemoryEstimate:
    """Bytes to generate with a decoder: weights = P * w; KV cache = 2 (K, V) * L * b * s * kv_dim * w,
    with s = prompt + new tokens and kv_dim = kv_heads x head_dim (LLaMA-13B: 0.82 MB per token in bf16)."""
    return MemoryEstimate({"weights": n_params * weight_bytes,
                           "KV cache": 2 * n_layers * batch * seq_len * kv_dim * weight_bytes})


# Published architectures, so that the paper's student is estimated offline (no hub, no cache): the values of its
# config.json. LLaMA-13B: Touvron et al. 2023 ("LLaMA: Open and Efficient Foundation Language Models"), Table 2
# (dimension 5120, 40 heads, 40 layers; SwiGLU FFN of 2/3 x 4d rounded: 13824; vocabulary 32000 SentencePiece
# tokens; context 2048), as in huggyllama/llama-13b's config.json. 04 adds one [[PAD]] row (32001): negligible here.
PUBLISHED_CONFIGS: dict[str, dict] = {
    "huggyllama/llama-13b": {
        "model_type": "llama", "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 13824,
        "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000,
        "max_position_embeddings": 2048, "tie_word_embeddings": False,
        "_source": "Touvron et al. 2023, Table 2 / huggyllama/llama-13b config.json"},
}


def load_model_config(spec: str, offline: bool) -> tuple[dict | None, str]:
    """(config.json of a model spec, "") without loading weights, or (None, why not).

    A hub model whose config.json cannot be read (offline, hub unreachable, not cached) but whose architecture is
    published (`PUBLISHED_CONFIGS`: the paper's LLaMA-13B) gets that config, with its source as the second value."""
    config, why = _read_model_config(spec, offline)
    if config is None:
        repo = spec.split("@", 1)[0]
        published = PUBLISHED_CONFIGS.get(repo) or PUBLISHED_CONFIGS.get(repo.lower())
        if published is not None:
            return dict(published), f"published architecture: {published['_source']}; {why}"
    return config, ("" if config is not None else why)


def _read_model_config(spec: str, offline: bool) -> tuple[dict | None, str]:
    try:
        resolved = resolve_model(spec)
    except (ModelSpecError, FileNotFoundError):
        return None, "the model spec does not resolve"
    if resolved.kind == "gguf":
        from .models import gguf_cache_dir

        path = gguf_cache_dir(Path(resolved.path)) / "config.json"
        why = "GGUF not de-quantized yet: `python -m orca_utils fetch-model` writes its config"
    elif resolved.kind == "dir":
        path, why = Path(resolved.path) / "config.json", f"no config.json in {resolved.path}"
    else:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        try:
            found = try_to_load_from_cache(resolved.path, "config.json", revision=resolved.revision) if offline \
                else hf_hub_download(resolved.path, "config.json", revision=resolved.revision)
        except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: reported by check_model_specs
            return None, f"config.json not downloaded ({type(exc).__name__})"
        path = Path(found) if isinstance(found, str) else Path("/nonexistent")
        why = "hub not used (offline or unreachable), and config.json is not in the hub cache"
    return (json.loads(path.read_text()), "") if path.is_file() else (None, why)


def cuda_free_memory() -> list[tuple[int, int]]:
    """(free, total) bytes of each visible CUDA device; [] without CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [tuple(torch.cuda.mem_get_info(i)) for i in range(torch.cuda.device_count())]


def _sharding(cfg) -> tuple[tuple[int, int, int], str, bool]:
    """(weights, grads, optimizer) shard counts of 04's launch, a label, and whether it keeps fp32 master weights
    (FSDP / DeepSpeed under the config's `mixed_precision: bf16` or `fp16`, with a 16-bit `precision`)."""
    if cfg.launcher != "accelerate" or not cfg.accelerate_config:
        return (1, 1, 1), "unsharded", False
    data, _ = _read_accelerate(cfg.accelerate_config)
    if data is None:
        return (1, 1, 1), "unsharded (config unreadable)", False
    n, kind = data["num_processes"], data.get("distributed_type")
    mixed = str(data.get("mixed_precision", "no")).lower() in ("bf16", "fp16") and cfg.precision != "fp32"
    how = f", mixed {data.get('mixed_precision')} (fp32 master weights)" if mixed else ""
    if kind == "FSDP":
        full = (data.get("fsdp_config") or {}).get("fsdp_reshard_after_forward", True) is not False
        return ((n if full else 1), n, n), f"FSDP over {n}{how}", mixed
    if kind == "DEEPSPEED":
        stage = int((data.get("deepspeed_config") or {}).get("zero_stage", 0))
        return (((n if stage >= 3 else 1), (n if stage >= 2 else 1), (n if stage >= 1 else 1)),
                f"ZeRO-{stage} over {n}{how}", mixed)
    return (1, 1, 1), f"{kind or 'unsharded'}, replicated", False


def _inference_shape(stem: str, cfg) -> tuple[int, int, int | None, str]:
    """(batch, new tokens, prompt + new cap or None, the batch param) of an evaluation notebook."""
    if stem == "07_open_ended":
        return cfg.candidate_batch_size, cfg.candidate_max_new_tokens, None, "candidate_batch_size"
    if stem == "08_safety":
        tqa, tox = cfg.truthfulqa, cfg.toxigen
        param = "truthfulqa.batch_size" if tqa.batch_size > tox.batch_size else "toxigen.batch_size"
        return max(tqa.batch_size, tox.batch_size), max(tqa.generative_max_new_tokens, tox.max_new_tokens), None, param
    return cfg.batch_size, cfg.max_new_tokens, cfg.max_len_tokens, "batch_size"


def estimate_memory(stem: str, cfg, dims: ModelDims, on_cuda: bool) -> tuple[MemoryEstimate, str, str]:
    """(estimate per device, how, the param that shrinks it) for one of GPU_NOTEBOOKS."""
    if stem == "04_training":
        shards, how, mixed = _sharding(cfg)
        est = training_memory(dims.n_params, dims.n_layers, dims.hidden, dims.vocab,
                              weight_bytes={"fp32": 4, "bf16": 2, "fp16": 2}[cfg.precision],
                              batch=cfg.per_device_batch_size, seq_len=cfg.max_len_tokens,
                              checkpointing=cfg.gradient_checkpointing, shards=shards, fp32_master=mixed)
        ckpt = "with" if cfg.gradient_checkpointing else "without"
        return est, f"{cfg.precision}, {how}, {ckpt} gradient checkpointing", "per_device_batch_size"
    batch, new, cap, param = _inference_shape(stem, cfg)
    seq = cap or ASSUMED_PROMPT_TOKENS + new
    seq = min(seq, dims.max_positions) if dims.max_positions else seq
    est = inference_memory(dims.n_params, dims.n_layers, dims.kv_dim, weight_bytes=2 if on_cuda else 4,
                           batch=batch, seq_len=seq)
    prompt = "" if cap else f", prompt <= {ASSUMED_PROMPT_TOKENS} tokens assumed"
    return est, f"{'bf16' if on_cuda else 'fp32'}, batch {batch} x {seq} tokens{prompt}", param


def _devices_needed(stem: str, cfg) -> int:
    return cfg.num_processes if stem == "04_training" and cfg.launcher == "accelerate" else 1


def check_memory(cfgs: dict, opts: Options) -> list[Finding]:
    gpus = cuda_free_memory() if opts.gpus is None else opts.gpus
    stems = [s for s in GPU_NOTEBOOKS if s in cfgs]
    out: list[Finding] = []
    if not gpus:
        out += [Problem(p, "device: cuda, but no CUDA device is visible here: run on a GPU machine, or set "
                           "device: cpu") for p in dict.fromkeys(f"{_owner(cfgs, 'device', s)}.device"
                                                                 for s in stems if cfgs[s].device == "cuda")]
    configs: dict[str, tuple[dict | None, str]] = {}
    for stem in stems:
        cfg = cfgs[stem]
        if cfg.student_model not in configs:
            configs[cfg.student_model] = load_model_config(cfg.student_model,
                                                           hub_offline(cfg) or opts.hub_unreachable)
        config, why = configs[cfg.student_model]
        try:
            dims = model_dims(config) if config else None
        except ValueError as exc:
            dims, why = None, str(exc)
        if dims is None:
            out.append(Note(stem, f"GPU memory not estimated ({why})"))
            continue
        # the dtype the run will use: bf16 generation on CUDA (device: cuda even where no GPU is visible here)
        on_cuda = cfg.device == "cuda" or (bool(gpus) and cfg.device == "auto")
        est, how, param = estimate_memory(stem, cfg, dims, on_cuda)
        if why:                                  # a published architecture stood in for the unread config.json
            how += f"; {dims.n_params / 1e9:.2f}B parameters from the {why.split(';')[0]}"
        out += _compare(stem, cfg, est, how, param, gpus if on_cuda else [])
    return out


def _compare(stem: str, cfg, est: MemoryEstimate, how: str, param: str, gpus: list) -> list[Finding]:
    if not gpus:
        return [Note(stem, f"memory estimate {est.describe()} ({how}; runs on {cfg.device}: not compared)")]
    need = _devices_needed(stem, cfg)
    if need > len(gpus):
        return [Problem(f"{stem}.num_processes", f"{need} processes per node, but {len(gpus)} CUDA device(s) are "
                                                 f"visible: lower num_processes or run on a node with {need} GPUs")]
    free = min(f for f, _ in gpus[:need])
    if est.total > free:
        return [Problem(f"{stem}.{param}", f"needs ~{est.describe()} per GPU ({how}) but a device has only "
                                           f"{free / GB:.1f} GB free: lower {param} or the sequence length"
                                           f"{', shard over more GPUs' if stem == '04_training' else ''}")]
    return [Note(stem, f"memory estimate {est.describe()} per GPU ({how}); {free / GB:.1f} GB free: fits")]
