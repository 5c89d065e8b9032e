"""Notebook 09's seeds side by side: one process per seed, one torch thread each.

The students are tiny (a 2-layer, hidden-128 model): one torch thread trains them as fast as two (see
`pipeline._pick_threads`), so on a 2-core machine one process leaves a core idle. `map_jobs` runs jobs (one seed
of the experiment, or of the erasure arms, each) in `workers` processes (spawned, so a Jupyter kernel's threads are
never forked) and returns their results in job order (`map_seeds`: one function over seeds); each process writes
only its own seed's files, so a run interrupted here resumes as a sequential one would. Log lines are collected in
the worker and printed by the parent when the job finishes; an error in a job is raised in the parent with its own
message.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable

__all__ = ["map_jobs", "map_seeds"]


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _call(fn: Callable, seed: int, kwargs: dict[str, Any]) -> tuple[Any, list[str]]:
    lines: list[str] = []
    return fn(seed, log=lines.append, **{**kwargs, "progress": False}), lines


def map_jobs(jobs: list[tuple[Callable, int, dict[str, Any]]], workers: int,
             log: Callable[[str], Any] = print) -> list[Any]:
    """`[fn(seed, log=log, **kwargs) for fn, seed, kwargs in jobs]`, with up to `workers` jobs at a time in their
    own processes, started in list order (`fn` must be a module-level function; `kwargs` must pickle and include
    `progress`). One pool for several kinds of job keeps both cores busy: 3 seeds on 2 processes would leave one
    idle for the last seed, unless other jobs (the erasure arms' seeds) fill it."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(seed, log=log, **kwargs) for fn, seed, kwargs in jobs]
    n = min(workers, len(jobs))
    log(f"{len(jobs)} jobs in {n} processes (one torch thread each); each job's lines appear when it finishes")
    results: dict[int, Any] = {}
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        futures = {pool.submit(_call, fn, seed, kwargs): i for i, (fn, seed, kwargs) in enumerate(jobs)}
        for future in as_completed(futures):
            result, lines = future.result()
            for line in lines:
                log(line)
            results[futures[future]] = result
    return [results[i] for i in range(len(jobs))]


def map_seeds(fn: Callable, seeds: list[int], workers: int, log: Callable[[str], Any] = print,
              **kwargs) -> list[Any]:
    """`map_jobs` of one function over `seeds`, in seed order."""
    return map_jobs([(fn, seed, kwargs) for seed in seeds], workers, log)
