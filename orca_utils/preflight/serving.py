"""05/06/07 `serve` and the open-weights teachers' servers (`check_serving`): the engine is installed, every model
the notebook will serve is servable, and the command that starts each server.
"""
from __future__ import annotations

from .findings import Finding, Note, Options, Problem, hub_offline, param_owner

__all__ = ["check_serving"]


def _served_models(stem: str, cfg, cfgs: dict) -> list[tuple[str, str, str, bool]]:
    """(param, label, spec, produced_later) of every model a notebook with `serve` will serve: the untuned student
    (05/06 with eval_base_model, 07 with candidate: base), and notebook 04's student (05/06; 07 with candidate:
    student), which 04 writes to outputs/<profile>/04_training/student, or which a reused run folder holds
    (`ORCA_REUSE`, as the notebooks read it)."""
    from ..contracts import STUDENT_DIR
    from ..runs import profile_root, reuse_roots

    base = (f"{param_owner(cfgs, 'student_model', stem)}.student_model", cfg.base_model_label, cfg.student_model, False)
    candidates = [root / "04_training" / STUDENT_DIR for root in (profile_root(cfg), *reuse_roots())]
    tuned_dir = next((d for d in candidates if (d / "config.json").exists()), candidates[0])
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

    from ..backends.served import ServeTarget, ServingError, serve_target, server_command

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
    from ..teacher_servers import ServerPlanError, plan_servers

    try:
        servers = plan_servers(cfgs)
    except ServerPlanError as exc:
        return [Problem(exc.param, exc.message)]
    profile = next(iter(cfgs.values())).profile if cfgs else "?"
    return [Note(f"{s.params[0]}.base_url", f"{s.model} is served here on port {s.port} (GPU(s) "
                                            f"{','.join(map(str, s.gpus))}; start with `python -m orca_utils "
                                            f"serve-teachers --profile {profile}`): {s.command()}") for s in servers]
