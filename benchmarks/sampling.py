"""Benchmark: sampling FLAN-5M's worth of query metadata (paper quotas, 5.09M rows) with orca_utils.sampling.stages.

Two paths, measured side by side in one run:
1. in memory: `sample_stages` on a synthetic metadata pool (collection, task, template type, multiple-choice flag;
   no texts) with the paper's four collections, task counts and quotas, including few-shot and Big-Bench rows that
   must be filtered out;
2. streamed: `reduce_to_task_reservoirs` over the same number of rows arriving in chunks, as the hub path does;
   its memory must stay bounded by (tasks x k) + one chunk, not by the rows streamed.
Prints readable lines; the last line is one JSON object. Usage: python benchmarks/sampling.py [--rows 5090000]
"""
from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from orca_utils.sampling.stages import reduce_to_task_reservoirs, sample_stages

PAPER_QUOTAS = {"cot": 150_000, "niv2": 440_000, "t0": 2_000_000, "flan2021": 2_500_000}
TASKS = {"cot": 9, "niv2": 1556, "t0": 99, "flan2021": 71}        # FLAN-v2's task list (flan_collection_info.csv)


def synthetic_pool(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` metadata rows, split over collections like the quotas (x1.6 so sampling has a choice), with
    Zipf-like task sizes (flatter for NIv2, whose tasks are capped at 300 rows), 20% few-shot rows and one
    Big-Bench task."""
    rng = np.random.default_rng(seed)
    total_quota = sum(PAPER_QUOTAS.values())
    all_names = [f"{c}_task{i}" for c in PAPER_QUOTAS for i in range(TASKS[c])]
    all_names[TASKS["cot"] + 5] = "task062_bigbench_repeat_copy_logic"
    offset = {c: sum(TASKS[d] for d in list(PAPER_QUOTAS)[:i]) for i, c in enumerate(PAPER_QUOTAS)}
    parts = []
    for c, quota in PAPER_QUOTAS.items():
        n = int(rows * 1.6 * quota / total_quota)
        weights = 1.0 / np.arange(1, TASKS[c] + 1) ** (0.2 if c == "niv2" else 0.8)   # NIv2 tasks: similar sizes
        task = rng.choice(TASKS[c], size=n, p=weights / weights.sum())
        parts.append(pd.DataFrame({
            "id": np.arange(n, dtype=np.int64) + sum(len(p) for p in parts),
            "collection": pd.Categorical.from_codes(np.full(n, list(PAPER_QUOTAS).index(c)), list(PAPER_QUOTAS)),
            "task": pd.Categorical.from_codes(task + offset[c], all_names),
            "template_type": pd.Categorical.from_codes((rng.random(n) < 0.2).astype(np.int8), ["zs_opt", "fs_opt"]),
            "is_multiple_choice": rng.random(n) < 0.3,
        }))
    return pd.concat(parts, ignore_index=True)


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, elapsed, peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=sum(PAPER_QUOTAS.values()), help="rows to sample (stage 1)")
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=300, help="rows kept per task in the streamed path")
    args = parser.parse_args()
    scale = args.rows / sum(PAPER_QUOTAS.values())

    t0 = time.perf_counter()
    pool = synthetic_pool(args.rows)
    pool_mib = pool.memory_usage(deep=True).sum() / 2**20
    print(f"synthetic pool: {len(pool):,} metadata rows ({pool_mib:.0f} MiB) built in {time.perf_counter() - t0:.1f}s")

    # (ruff reads `pool` as undefined because of the `del pool` below; the lambda runs before it)
    res, t_mem, peak_mem = measure(lambda: sample_stages(pool, PAPER_QUOTAS, scale=min(1.0, scale),  # noqa: F821
                                                         stage2_rows=1_000_000, seed=0,
                                                         max_rows_per_task={"niv2": 300}))
    n1, n2 = len(res.stage1), len(res.stage2)
    print(f"in memory: stage 1 {n1:,} rows, stage 2 {n2:,} rows from {len(pool):,} in {t_mem:.2f}s "
          f"({n1 / t_mem:,.0f} sampled rows/s, {len(pool) / t_mem:,.0f} pool rows/s); "
          f"peak traced {peak_mem:.0f} MiB (the pool itself: {pool_mib:.0f} MiB)")
    print(res.report.to_string(index=False))

    tasks = pool["task"].cat.codes.to_numpy(np.int64)
    del pool, res

    def chunks():
        rng = np.random.default_rng(1)
        for start in range(0, args.rows, args.chunk_rows):
            stop = min(args.rows, start + args.chunk_rows)
            yield rng.permutation(tasks[start:stop]), np.arange(start, stop)

    (kt, _), t_stream, peak_stream = measure(lambda: reduce_to_task_reservoirs(chunks(), args.k, seed=0))
    n_tasks = len(np.unique(tasks[: args.rows]))
    print(f"streamed: {args.rows:,} rows in chunks of {args.chunk_rows:,} -> {len(kt):,} kept (k={args.k}, "
          f"{n_tasks} tasks) in {t_stream:.2f}s ({args.rows / t_stream:,.0f} rows/s); peak traced "
          f"{peak_stream:.0f} MiB")
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS {max_rss:.0f} MiB; goal: {args.rows:,} rows in under 60 s")
    print(json.dumps({
        "rows_target": args.rows, "pool_rows": int(len(tasks)), "stage1_rows": n1, "stage2_rows": n2,
        "in_memory_s": round(t_mem, 3), "in_memory_sampled_rows_per_s": round(n1 / t_mem),
        "in_memory_peak_traced_mib": round(peak_mem, 1), "pool_mib": round(pool_mib, 1),
        "streamed_rows": args.rows, "streamed_s": round(t_stream, 3),
        "streamed_rows_per_s": round(args.rows / t_stream), "streamed_peak_traced_mib": round(peak_stream, 1),
        "streamed_kept_rows": int(len(kt)), "max_rss_mib": round(max_rss),
        "goal_under_60s": bool(t_mem < 60 and t_stream < 60)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
