"""Sampling FLAN-v2 queries the Orca way: per-collection quotas, per-task caps, zero-shot only, two stages.

Stage 1 (the FLAN-5M analogue, answered by ChatGPT in the paper) takes `quota * scale` queries per collection.
Within a collection the quota is spread evenly over tasks (stratified: every task gets the same share, tasks with
fewer rows give theirs all and the rest is redistributed), after capping each task at `max_rows_per_task`; inside a
task the rows are a uniform random sample. Only zero-shot templates are eligible and Big-Bench tasks are excluded.
Stage 2 (the FLAN-1M analogue, answered by GPT-4) is a uniform random subset of stage 1.

Everything works on metadata arrays (numpy), so the texts never need to be in memory to choose rows: sampling 5M rows
takes seconds (`benchmarks/sampling.py`). `reduce_to_task_reservoirs` does the same selection over a stream in
chunks (bottom-k per task on random keys), which is how the hub submixes are sampled without holding them.
Where the data cannot meet a quota, `SampleResult.report` says so per collection; no row is ever invented.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..flan import COLLECTIONS, is_big_bench

__all__ = ["SampleResult", "scaled_quotas", "allocate_evenly", "select_rows", "eligible_mask", "sample_stages",
           "reduce_to_task_reservoirs"]


@dataclass
class SampleResult:
    stage1: pd.DataFrame          # the sampled rows, shuffled (deterministic per seed)
    stage2: pd.DataFrame          # a random subset of stage1, in stage1's order
    report: pd.DataFrame          # one row per collection: quota, available, sampled, shortfall, status
    excluded: dict[str, int]      # rows left out before sampling, by reason


def scaled_quotas(quotas: Mapping[str, int], scale: float) -> dict[str, int]:
    """`round(quota * scale)` per collection (scale 1.0 = the paper's FLAN-5M)."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale={scale}: expected 0 < scale <= 1")
    unknown = set(quotas) - set(COLLECTIONS)
    if unknown:
        raise ValueError(f"quotas: unknown collections {sorted(unknown)}; expected {list(COLLECTIONS)}")
    return {c: int(round(int(q) * scale)) for c, q in quotas.items()}


def allocate_evenly(available: np.ndarray, quota: int, rng: np.random.Generator) -> np.ndarray:
    """Rows to take per task: equal shares of `quota`, never more than a task has (water-filling).

    If the tasks hold fewer rows than the quota, every row is taken. The remainder of an uneven split goes to
    randomly chosen tasks (one extra row each)."""
    available = np.asarray(available, dtype=np.int64)
    if available.sum() <= quota:
        return available.copy()
    s = np.sort(available)
    n = len(s)
    taken_before = np.concatenate([[0], np.cumsum(s)[:-1]])      # rows of the k smallest tasks, taken whole
    levels = (quota - taken_before) / (n - np.arange(n))           # equal share left for the other n-k tasks
    k = int(np.argmax(levels <= s))                                 # first task that cannot give its whole share
    base = np.minimum(available, int(np.floor(levels[k])))
    remainder = int(quota - base.sum())
    if remainder:
        room = np.flatnonzero(available > base)
        base[rng.choice(room, size=remainder, replace=False)] += 1
    return base


def _by_unique(values: pd.Series, fn) -> np.ndarray:
    """`fn` applied to each distinct value only (fast on 5M rows of a few hundred distinct strings)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return np.array([bool(fn(str(u))) for u in uniques], dtype=bool)[codes] if len(uniques) else \
        np.zeros(len(values), bool)


def eligible_mask(template_type: pd.Series, task: pd.Series) -> tuple[np.ndarray, dict[str, int]]:
    """Zero-shot rows of non-Big-Bench tasks; and how many rows each rule left out."""
    zero_shot = _by_unique(template_type, lambda t: "zs" in t.split("_"))
    not_big = ~_by_unique(task, is_big_bench)
    return zero_shot & not_big, {"not zero-shot": int((~zero_shot).sum()),
                                 "Big-Bench task": int((zero_shot & ~not_big).sum())}


def select_rows(collection_codes: np.ndarray, task_codes: np.ndarray, quotas: np.ndarray, caps: np.ndarray,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised stage-1 choice. Codes are small ints (`task_codes` global over collections); `quotas[c]` and
    `caps[c]` (-1 = no cap) per collection code. Returns (selected row indices in random order, keys)."""
    rng = np.random.default_rng(seed)
    n = len(task_codes)
    keys = rng.random(n)
    order = np.lexsort((keys, task_codes))                         # by task, then random key
    counts = np.bincount(task_codes, minlength=int(task_codes.max(initial=-1)) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_tasks = task_codes[order]
    rank = np.arange(n) - starts[sorted_tasks]                     # position of a row inside its task
    task_collection = np.full(len(counts), -1, dtype=np.int64)
    task_collection[task_codes] = collection_codes
    take = np.zeros(len(counts), dtype=np.int64)
    for c in range(len(quotas)):
        tasks = np.flatnonzero((task_collection == c) & (counts > 0))
        if not len(tasks):
            continue
        avail = counts[tasks] if caps[c] < 0 else np.minimum(counts[tasks], caps[c])
        take[tasks] = allocate_evenly(avail, int(quotas[c]), rng)
    chosen = order[rank < take[sorted_tasks]]
    return chosen[np.argsort(keys[chosen], kind="stable")], keys


def sample_stages(pool: pd.DataFrame, quotas: Mapping[str, int], *, scale: float = 1.0, stage2_rows: int,
                  max_rows_per_task: Mapping[str, int | None] | None = None, seed: int = 0,
                  unavailable: Mapping[str, str] | None = None) -> SampleResult:
    """Stage 1 and stage 2 from a pool of queries (the schema of `orca_utils.flan`).

    `stage2_rows * scale` rows go to stage 2; when stage 1 falls short of its quota total, stage 2 shrinks by the
    same factor (the paper's 1M : 5M ratio is kept). `unavailable` gives the reason a collection has no rows
    (e.g. "not in the offline data") for the report."""
    q = scaled_quotas(quotas, scale)
    caps_in = dict(max_rows_per_task or {})
    mask, excluded = eligible_mask(pool["template_type"], pool["task"])
    known = _by_unique(pool["collection"], lambda c: c in COLLECTIONS)
    quota_ok = _by_unique(pool["collection"], lambda c: c in q)
    excluded["unknown collection"] = int((mask & ~known).sum())
    excluded["collection without a quota"] = int((mask & known & ~quota_ok).sum())
    eligible = pool[mask & quota_ok]
    names = [c for c in COLLECTIONS if c in q]
    coll_codes = pd.Categorical(eligible["collection"].astype(str) if eligible["collection"].dtype == object
                                else eligible["collection"], categories=names).codes.astype(np.int64)
    task_codes = eligible.groupby(["collection", "task"], sort=False, observed=True).ngroup().to_numpy()
    caps = np.array([-1 if caps_in.get(c) is None else int(caps_in[c]) for c in names], dtype=np.int64)
    chosen, _ = select_rows(coll_codes, task_codes.astype(np.int64), np.array([q[c] for c in names]), caps, seed)
    stage1 = eligible.iloc[chosen].reset_index(drop=True)

    target2 = int(round(stage2_rows * scale))
    total1 = sum(q.values())
    if total1 and len(stage1) < total1:
        target2 = int(round(target2 * len(stage1) / total1))
    target2 = min(target2, len(stage1))
    # Stage 2 is its own seeded stream ([seed, 2]), not `orca_utils.data.seeded_subset`'s draw: kept so that a seed
    # samples the same FLAN-1M subset as before.
    pick2 = np.sort(np.random.default_rng([seed, 2]).permutation(len(stage1))[:target2])
    stage2 = stage1.iloc[pick2].reset_index(drop=True)

    rows = []
    task_sizes = np.bincount(task_codes) if len(task_codes) else np.zeros(0, np.int64)
    task_coll = np.zeros(len(task_sizes), np.int64)
    task_coll[task_codes] = coll_codes
    n1s = np.bincount(coll_codes[chosen], minlength=len(names))
    n2s = np.bincount(coll_codes[chosen][pick2], minlength=len(names))
    for ci, c in enumerate(names):
        per_task = task_sizes[task_coll == ci]
        available = int(per_task.sum())
        after_caps = int(np.minimum(per_task, caps_in[c]).sum()) if caps_in.get(c) is not None else available
        n1, n2 = int(n1s[ci]), int(n2s[ci])
        if available == 0:
            status = "unavailable: " + (dict(unavailable or {}).get(c) or "no rows loaded for this collection")
        elif n1 < q[c]:
            status = f"short: only {after_caps} eligible rows after per-task caps"
        else:
            status = "ok"
        rows.append({"collection": c, "quota_stage1": q[c], "tasks_available": int(len(per_task)),
                     "rows_available": available, "rows_after_caps": after_caps, "stage1": n1, "stage2": n2,
                     "shortfall": q[c] - n1, "status": status})
    return SampleResult(stage1, stage2, pd.DataFrame(rows), excluded)


def reduce_to_task_reservoirs(chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int,
                              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stream (task_codes, positions) chunks down to at most `k` uniformly random positions per task.

    Bottom-k sampling: every row gets a random key, each task keeps its k smallest keys. Memory is bounded by
    (tasks x k) + one chunk, whatever the stream's length. Returns (task_codes, positions) of the kept rows."""
    rng = np.random.default_rng(seed)
    kept_t = np.empty(0, np.int64)
    kept_p = np.empty(0, np.int64)
    kept_k = np.empty(0, np.float64)
    for tasks, positions in chunks:
        t = np.concatenate([kept_t, np.asarray(tasks, np.int64)])
        p = np.concatenate([kept_p, np.asarray(positions, np.int64)])
        keys = np.concatenate([kept_k, rng.random(len(tasks))])
        order = np.lexsort((keys, t))
        t_sorted = t[order]
        first = np.r_[True, t_sorted[1:] != t_sorted[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(t)), 0))
        keep = order[(np.arange(len(t)) - group_start) < k]
        kept_t, kept_p, kept_k = t[keep], p[keep], keys[keep]
    return kept_t, kept_p


def load_hub_collection(collection: str, hub_id: str, *, quota: int, max_rows_per_task: int | None, seed: int,
                        revision: str | None = None, chunk_rows: int = 100_000, open_stream=None,
                        report=None) -> pd.DataFrame:
    """The candidate rows of one FLAN-v2 submix on the hub, at most min(cap, quota) random rows per task.

    Two streamed passes: the first reads only task names and template types and keeps, per task, the positions of
    its k random zero-shot rows (`reduce_to_task_reservoirs`); the second maps just those rows into the schema.
    Memory holds the kept rows, never the submix. Pass the result to `sample_stages` as (part of) the pool."""
    from ..flan import LoadReport, iter_hub_submix, map_hub_row

    report = report if report is not None else LoadReport(source=hub_id, collection=collection)
    k = quota if max_rows_per_task is None else min(quota, max_rows_per_task)
    task_ids: dict[str, int] = {}

    def chunks():
        tasks, positions = [], []
        for pos, row in enumerate(iter_hub_submix(hub_id, revision, open_stream=open_stream)):
            tt, task = str(row.get("template_type") or ""), row.get("task_name")
            if "zs" not in tt.split("_") or not task or is_big_bench(str(task)):
                continue
            tasks.append(task_ids.setdefault(str(task), len(task_ids)))
            positions.append(pos)
            if len(tasks) >= chunk_rows:
                yield np.array(tasks), np.array(positions)
                tasks, positions = [], []
        if tasks:
            yield np.array(tasks), np.array(positions)

    _, keep = reduce_to_task_reservoirs(chunks(), k, seed)
    wanted = set(keep.tolist())
    rows = []
    for pos, row in enumerate(iter_hub_submix(hub_id, revision, open_stream=open_stream)):
        if pos in wanted:
            mapped = map_hub_row(row, collection, pos, report)
            if mapped is not None:
                rows.append(mapped)
    report.rows = len(rows)
    from ..flan import POOL_COLUMNS, empty_queries

    return pd.DataFrame(rows, columns=POOL_COLUMNS) if rows else empty_queries()
