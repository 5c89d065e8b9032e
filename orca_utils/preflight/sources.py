"""URL sources of datasets (`check_url_sources`): every dataset the notebooks read has a local copy, or (online)
the first file of its pinned URL source answers.
"""
from __future__ import annotations

from .findings import Finding, Options, Problem, hub_offline, param_owner

__all__ = ["check_url_sources", "datasets_needed"]


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
    from .. import data

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

    from .. import data

    out: list[Finding] = []
    todo = []
    for name, stem in datasets_needed(cfgs).items():
        source, cfg = data.DATASETS.get(name, data.DatasetSource(name)), cfgs[stem]
        param = f"{param_owner(cfgs, 'data_dir', stem)}.data_dir"
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
