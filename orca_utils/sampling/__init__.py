"""Notebook 01: the training queries, sampled from FLAN-v2 the Orca way (paper §3.1, Tables 2 and 3).

    from orca_utils import sampling
    pool, load_report, unavailable = sampling.load_pool(cfg)
    result = sampling.sample_queries(pool, cfg, unavailable)

- `queries.py`: the notebook's steps, each one call (`load_pool`, `sample_queries`, `collections_table`,
  `plot_system_message_frequencies`, `check_contamination`, `write_queries`, `summary_metrics`);
- `stages.py`: per-collection quotas, per-task caps, the two stages (`sample_stages`, `reduce_to_task_reservoirs`);
- `contamination.py`: the n-gram overlap check against the evaluation sets (`build_index`, `scan_queries`).
The FLAN-v2 loaders (CoT tsv files, NIv2 task files, the hub submixes, into one schema) are `orca_utils.flan`,
read by 03 too. The paper's 16 system messages are shared with 03 and 05/06: `orca_utils.system_messages`. What 01
writes for 02 (`queries_stage{1,2}.parquet` and their columns) is in `orca_utils.contracts`.
"""
from __future__ import annotations

from .contamination import ContaminationReport, drop_overlapping
from .queries import (check_contamination, collections_table, data_label, load_pool, plot_system_message_frequencies,
                      sample_queries, summary_metrics, write_queries)
from .stages import SampleResult

__all__ = ["ContaminationReport", "SampleResult", "check_contamination", "collections_table", "data_label",
           "drop_overlapping", "load_pool", "plot_system_message_frequencies", "sample_queries", "summary_metrics",
           "write_queries"]
