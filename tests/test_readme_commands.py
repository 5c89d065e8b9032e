"""Every `python -m orca_utils ...` command in README.md and in the pages under docs/ is valid, without running it.

The commands are read from the fenced code blocks and inline code spans of each page. Each is parsed by the real
command line (`orca_utils.cli.build_parser`: an unknown command or flag, a bad choice or a missing argument fails),
then checked the way `validate` would check it: the profile loads with its `--params-override`s (an override key
that does not exist fails), and `--only` / `--from` name existing notebooks. Usage synopses such as
`[--convention robust|published]` are expanded into one command per alternative.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import re
import shlex
from functools import lru_cache

import pytest

from orca_utils.cli import build_parser
from orca_utils.config import load_profile
from orca_utils.paths import REPO_ROOT
from orca_utils.runner import discover_notebooks, select_notebooks

MARKER = "-m orca_utils "
SHELL_STOPS = {"&&", "||", "|", ";", ">", ">>", "2>&1"}


def readme_commands(text: str) -> list[str]:
    """The argument strings (what follows `-m orca_utils`) of every command in fenced blocks and inline spans."""
    found = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
    for block in fenced.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if MARKER in line:
                found.append(line.split(MARKER, 1)[1].split(" #", 1)[0].strip())
    for span in re.findall(r"`([^`]+)`", fenced.sub("", text)):
        span = " ".join(span.split())              # a span may wrap over lines
        if MARKER in span:
            found.append(span.split(MARKER, 1)[1].strip())
    return found


def expand(command: str) -> list[list[str]]:
    """argv lists for a command: shell operators end it, `[...]` is kept, each `a|b` alternative gives one argv."""
    tokens = []
    for token in shlex.split(command.replace("[", " ").replace("]", " ")):
        if token in SHELL_STOPS:
            break
        tokens.append(token.split("|") if "|" in token else [token])
    return [list(argv) for argv in itertools.product(*tokens)]


def check(argv: list[str]) -> str | None:
    """None when the command line parses and its profile, overrides and notebooks exist; else why not."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:                            # `--help`: printed its usage, a valid command
            return None
        lines = err.getvalue().strip().splitlines() or [f"exit {exc.code}"]
        return f"rejected by the command line: {lines[-1]}"
    if hasattr(args, "profile"):
        problem = _profile_problem(args.profile, tuple(getattr(args, "params_override", []) or []),
                                   getattr(args, "params_dir", None))
        if problem:
            return problem
    if args.command == "run" and (args.only or args.start):
        try:
            select_notebooks(discover_notebooks(), args.only, args.start)
        except ValueError as exc:
            return f"notebook selection: {exc}"
    return None


@lru_cache(maxsize=None)
def _profile_problem(profile: str, overrides: tuple[str, ...], params_dir: str | None) -> str | None:
    try:
        load_profile(profile, overrides=list(overrides), params_dir=params_dir)
    except Exception as exc:   # noqa: BLE001 - ConfigError, a missing file: either way the line is wrong
        return f"params: {type(exc).__name__}: {exc}"
    return None


README = REPO_ROOT / "README.md"
DOC_PAGES = sorted((REPO_ROOT / "docs").glob("*.md"))
COMMANDS = readme_commands(README.read_text(encoding="utf-8"))
DOC_COMMANDS = [(page.name, command) for page in DOC_PAGES
                for command in readme_commands(page.read_text(encoding="utf-8"))]


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 8, COMMANDS
    assert any(c.startswith("validate") for c in COMMANDS) and any(c.startswith("score") for c in COMMANDS)


def test_the_docs_pages_have_commands():
    assert DOC_PAGES, "docs/ holds the per-notebook pages"
    assert len(DOC_COMMANDS) >= 10, DOC_COMMANDS
    assert {"score", "validate", "run"} <= {c.split()[0] for _, c in DOC_COMMANDS}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[:60])
def test_readme_command_is_valid(command):
    for argv in expand(command):
        problem = check(argv)
        assert problem is None, f"README: `python -m orca_utils {command}`: {problem}"


@pytest.mark.parametrize("page,command", DOC_COMMANDS, ids=lambda x: x[:60])
def test_docs_command_is_valid(page, command):
    for argv in expand(command):
        problem = check(argv)
        assert problem is None, f"docs/{page}: `python -m orca_utils {command}`: {problem}"


@pytest.mark.parametrize("command", [
    "rnu --profile smoke",                                         # no such command
    "run --profile smoke --onyl 03",                               # no such flag
    "validate --profile nosuchprofile",                            # no such params file
    "run --profile smoke --params-override 04_training.max_steps=5",   # no such key
    "run --profile smoke --only 42",                               # no such notebook
    "score --benchmark bbh --task date_understanding [--convention robust|loose] out.jsonl",   # bad choice
])
def test_a_wrong_command_is_caught(command):
    assert any(check(argv) for argv in expand(command)), command


def test_help_is_a_valid_command_and_a_bad_flag_after_it_is_not():
    assert check(["--help"]) is None and check(["validate", "--help"]) is None
    assert check(["validate", "--nosuchflag"]) is not None


def test_commands_are_read_from_blocks_and_spans():
    text = ("intro `python -m orca_utils run\n--profile paper --only 02`, and `orca_utils.train` too\n"
            "```bash\nX=1 .venv/bin/python -m orca_utils validate --profile smoke   # comment\n"
            "accelerate launch -m orca_utils.train --stage 1\n```\n")
    assert readme_commands(text) == ["validate --profile smoke", "run --profile paper --only 02"]
    assert expand("score --task t [--convention a|b] f") == [["score", "--task", "t", "--convention", "a", "f"],
                                                             ["score", "--task", "t", "--convention", "b", "f"]]
