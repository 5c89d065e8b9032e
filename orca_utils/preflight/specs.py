"""Model specs and hub repos (`check_model_specs`): local specs exist (no weights loaded); hub models, revisions
and dataset repos exist and are not gated for us.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..models import ModelSpecError, resolve_model
from ..paths import REPO_ROOT
from .endpoints import teacher_models
from .findings import Finding, Note, Options, Problem, hub_offline, param_owner

__all__ = ["check_model_specs", "spec_uses"]


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
    out = [_Spec(f"{param_owner(cfgs, n, s)}.{n}", getattr(c, n), offline=hub_offline(c))
           for n in ("student_model", "llama_tokenizer") for s, c in cfgs.items()]
    for stem, cfg in cfgs.items():
        off = hub_offline(cfg)
        if getattr(cfg, "token_counter", None):
            out.append(_Spec(f"{stem}.token_counter", cfg.token_counter, offline=off))
        out += [_Spec(f"{stem}.{n}.local_model", t.local_model, offline=off) for n, t in teacher_models(cfg)
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
