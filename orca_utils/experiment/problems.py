"""Notebook 09's data: the real BBH items (evaluation), fresh generated training problems (every BBH input of a
task excluded), the held-out difficulty-curve problems, and the symbolic teacher's responses to the training
problems, asked through the project's teacher client against the local OpenAI-compatible server."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .symbolic import BBH_SOURCE, count_steps, generate_problems
from .symbolic_teacher import SYSTEM_MESSAGES, TEACHER_LABEL, SymbolicTeacher

__all__ = ["TEACHER_MODEL", "load_bbh_items", "make_problems", "make_curve_items", "collect_responses"]

TEACHER_MODEL = "symbolic-teacher"


def load_bbh_items(data_dir: str | None, offline: bool, task: str, limit: int | None = None) -> pd.DataFrame:
    """The real BBH items of `task` (`item` id, `input`, `target`, `steps`); `limit` takes a fixed random subset
    (seed 0). A chain task reads the items of its BBH source (`lie_chain`: web_of_lies, at their own length); a
    task with none (`truth_lookup`) has no items."""
    from ..data import resolve_dataset

    if task not in BBH_SOURCE:
        return pd.DataFrame(columns=["task", "item", "input", "target", "steps"])
    path = resolve_dataset("bbh", data_dir, offline).path / f"{BBH_SOURCE[task]}.json"
    if not path.exists():
        raise FileNotFoundError(f"BBH task file {path} not found")
    frame = pd.DataFrame(json.loads(path.read_text())["examples"])[["input", "target"]]
    frame.insert(0, "item", [f"{task}/{i}" for i in range(len(frame))])
    frame.insert(0, "task", task)
    frame["steps"] = [count_steps(task, q) for q in frame["input"]]
    if limit is not None and limit < len(frame):
        frame = frame.sample(n=limit, random_state=0).sort_index()
    return frame.reset_index(drop=True)


def make_problems(tasks: list[str], n_per_task: int, seed: int, data_dir: str | None = None,
                  offline: bool = True, steps: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """Fresh training problems per task; EVERY BBH input of the task is excluded (all items, not only the
    evaluation subset: the subset is a sample, and an unsampled BBH item is still a test item). `steps`: task ->
    [lo, hi], the range of steps its problems are drawn from (a chain task's trained lengths)."""
    rows = []
    for task in tasks:
        every_item = set(load_bbh_items(data_dir, offline, task)["input"])
        span = (steps or {}).get(task)
        for i, text in enumerate(generate_problems(task, n_per_task, seed, exclude=every_item,
                                                   steps=tuple(span) if span else None)):
            rows.append({"id": f"{task}-{seed}-{i}", "task": task, "user": text})
    return pd.DataFrame(rows)


def make_curve_items(curve: dict[str, list[int]], n_per_step: int, exclude: dict[str, set[str]]) -> pd.DataFrame:
    """Held-out generated problems with a set number of steps (the difficulty curve), the same for every seed and
    variant; none equals a BBH item or a training problem of any seed (`exclude`, per task)."""
    from .symbolic import solve

    rows = []
    for task, levels in curve.items():
        for k in levels:
            for i, text in enumerate(generate_problems(task, n_per_step, "curve", exclude=exclude.get(task, set()),
                                                       steps=k)):
                rows.append({"task": task, "item": f"curve/{task}/{k}/{i}", "input": text,
                             "target": solve(task, text).answer, "steps": k})
    return pd.DataFrame(rows, columns=["task", "item", "input", "target", "steps"])


def collect_responses(problems: pd.DataFrame, styles: list[str], cache_path: Path,
                      progress: bool = True, system_of_task: dict[str, str] | None = None) -> pd.DataFrame:
    """Ask the symbolic teacher for each problem in each style: the project's teacher client (`complete_chats`,
    cached in `cache_path`) against the local OpenAI-compatible server, exactly as 02 asks GPT-4.
    `system_of_task` (task -> system message) asks each problem once under its task's message instead (style
    "strategy": the prompt-erasure ablation's strategy messages)."""
    from ..schemas import TeacherEndpointParams
    from ..teacher import ChatRequest, complete_chats, serve_offline

    if system_of_task is not None:
        rows = [(row.id, row.task, "strategy", system_of_task[row.task], row.user) for row in problems.itertuples()]
    else:
        rows = [(row.id, row.task, style, SYSTEM_MESSAGES[style], row.user)
                for style in styles for row in problems.itertuples()]
    requests = [ChatRequest(id=f"{rid}-{style}", model=TEACHER_MODEL, max_tokens=2048,
                            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
                for rid, _, style, system, user in rows]
    local = TeacherEndpointParams(concurrency=16, requests_per_minute=1e7, tokens_per_minute=1e10, max_retries=2)
    with serve_offline({TEACHER_MODEL: SymbolicTeacher()}, local) as endpoint:
        chat = complete_chats(requests, endpoint, cache_path, progress=progress, desc="symbolic teacher")
    out = pd.DataFrame(rows, columns=["id", "task", "style", "system", "user"])
    out["response"] = [r.text for r in chat.results]
    out["status"] = [r.status for r in chat.results]
    out["finish_reason"] = [r.finish_reason for r in chat.results]
    out["teacher"], out["teacher_model"] = TEACHER_LABEL, TEACHER_MODEL
    bad = out[out["status"] != "ok"]
    if len(bad):
        raise RuntimeError(f"symbolic teacher: {len(bad)} of {len(out)} requests not ok "
                           f"({bad['status'].value_counts().to_dict()}); first id {bad['id'].iloc[0]}")
    return out
