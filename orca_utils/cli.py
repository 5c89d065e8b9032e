"""Command line: `python -m orca_utils <command>` (also installed as `orca`).

Commands: `run` (the pipeline), `validate` (check a params file; with `--deep`, the preflight of
`orca_utils.preflight`), `fetch-model` (prepare the offline smoke model), `serve-teachers` (start, or with
`--print` print, the vLLM servers of a profile's open-weights teachers: `orca_utils.teacher_servers`).
Other modules register more through `COMMANDS` (e.g. `score`). Exit codes: 0 ok, 1 a notebook or command failed,
2 bad params or bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .config import ConfigError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def _add_run(p):
    p.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default: smoke)")
    p.add_argument("--only", nargs="+", help="notebook numbers or stems to run, e.g. --only 03 04")
    p.add_argument("--from", dest="start", help="run from this notebook to the end, e.g. --from 02")
    p.add_argument("--params-override", action="append", default=[], metavar="KEY=VALUE",
                   help="e.g. 04_training.stage1.max_steps=5 or seed=1 (common); repeatable")
    p.add_argument("--run-dir", help="outputs folder for this run (default: outputs/<profile>)")
    p.add_argument("--reuse", action="extend", nargs="+", default=[], metavar="RUN_DIR",
                   help="read upstream outputs this run lacks from another run's folder when they were computed "
                        "from the same params, e.g. --only 07 --reuse outputs/smoke (default: $ORCA_REUSE)")
    p.add_argument("--notebooks-dir", help=argparse.SUPPRESS)


def _run(args) -> int:
    from pathlib import Path

    from .runner import NotebookFailed, run_pipeline

    try:
        run_pipeline(args.profile, only=args.only, start=args.start, overrides=args.params_override,
                     run_dir=args.run_dir, notebooks_dir=Path(args.notebooks_dir) if args.notebooks_dir else None,
                     reuse=args.reuse)
    except NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_validate(p):
    p.add_argument("--profile", default="smoke")
    p.add_argument("--params-override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--params-dir", help="folder holding <profile>.yaml (default: params/)")
    p.add_argument("--deep", action="store_true", help="also check endpoints and model names, model specs and hub "
                   "repos, accelerate configs and GPU memory (orca_utils.preflight; uses the network)")


def _validate(args) -> int:
    from .config import load_profile

    cfgs = load_profile(args.profile, overrides=args.params_override, params_dir=args.params_dir)
    where = f"{args.params_dir}/{args.profile}.yaml" if args.params_dir else f"params/{args.profile}.yaml"
    print(f"{where}: ok ({len(cfgs)} notebook blocks)")
    if not args.deep:
        return 0
    from .preflight import run_preflight

    report = run_preflight(cfgs)
    for line in report.lines():
        print(line)
    print(report.summary())
    return 0 if report.ok else 2


def _add_fetch(p):
    p.add_argument("--profile", default="smoke")


def _fetch(args) -> int:
    from .config import load_profile
    from .models import dequantize_gguf, resolve_model

    cfgs = load_profile(args.profile)
    specs = sorted({c.student_model for c in cfgs.values()})
    for spec in specs:
        resolved = resolve_model(spec)
        if resolved.kind == "gguf":
            print(f"{spec}: de-quantized into {dequantize_gguf(resolved.path)}")
        else:
            print(f"{spec}: {resolved.kind} {resolved.path} (nothing to prepare)")
    return 0


COMMANDS["run"] = (_add_run, _run)
COMMANDS["validate"] = (_add_validate, _validate)
COMMANDS["fetch-model"] = (_add_fetch, _fetch)


def _add_serve_teachers(p):
    from .teacher_servers import add_args

    add_args(p)


def _serve_teachers(args) -> int:
    from .teacher_servers import main

    return main(args)


COMMANDS["serve-teachers"] = (_add_serve_teachers, _serve_teachers)


def _load_plugins() -> None:
    """Modules that add commands import here (kept lazy so `run` starts fast)."""
    import importlib

    for module in ("orca_utils.evaluation.score_cli",):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every registered command included; parsing with it runs nothing."""
    _load_plugins()
    parser = argparse.ArgumentParser(prog="python -m orca_utils", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except ConfigError as exc:
        print(f"params error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
