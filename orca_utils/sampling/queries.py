"""Notebook 01's steps, each one call: the query pool from the params, the two sampled stages with their system
messages, the collections table beside the paper's Table 3, the system-message frequency figure, the two query
tables for notebook 02 (`write_queries`) and the notebook's metrics (`summary_metrics`).

The pieces live beside it: `flan` (loaders), `stages` (quotas, caps, stages) and `contamination`; the system
messages in `orca_utils.system_messages`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts import QUERY_TABLE_COLUMNS, check_table, queries_file
from ..data import resolve_data_root, resolve_dataset
from ..paths import REPO_ROOT
from ..reference import format_paper_value, paper_block
from ..schemas import SamplingParams
from ..system_messages import SYSTEM_MESSAGES, assign_system_messages
from .contamination import ContaminationReport, build_index, load_eval_texts, scan_queries
from ..flan import COLLECTIONS, LoadReport, load_cot_dir, load_niv2_dir, load_schema_file, load_task_list
from .stages import SampleResult, load_hub_collection, sample_stages

__all__ = ["load_pool", "sample_queries", "data_label", "collections_table", "plot_system_message_frequencies",
           "check_contamination", "write_queries", "summary_metrics"]

SYSTEM_MESSAGES_PROVENANCE = "paper Table 2; per-collection sets: replica (single-source)"
_PAPER_NAMES = {"cot": "CoT", "niv2": "NIV2", "t0": "T0", "flan2021": "FLAN2021"}


def _quotas(cfg: SamplingParams) -> dict[str, int]:
    return {c: v for c, v in cfg.stage1_quota_rows.model_dump().items() if v is not None}


def load_pool(cfg: SamplingParams) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """(pool of queries, load report per source, reason per collection with no source).

    `source: local` reads the CoT tsv files and NIv2 task files under the data root; `source: hub` streams the
    submixes (per task at most min(cap, quota) random rows are kept). `extra_query_files` are added in both cases."""
    frames, reports, unavailable = [], [], {}
    if cfg.source == "local":
        for name, loader, collection in (("flan_cot", load_cot_dir, "cot"), ("niv2", load_niv2_dir, "niv2")):
            df, rep = loader(resolve_dataset(name, cfg.data_dir, cfg.offline).path)
            frames.append(df)
            reports.append(rep)
        for c in ("t0", "flan2021"):
            unavailable[c] = "no local copy (the offline data holds FLAN-v2 CoT and an NIv2 sample only)"
    else:
        for c, quota in _quotas(cfg).items():
            hub_id = cfg.hub_submixes.get(c)
            if not hub_id:
                unavailable[c] = "no hub submix configured"
                continue
            local = REPO_ROOT / hub_id          # a folder in the hub's layout (the rehearsal's fixtures)
            hub_id = str(local) if local.is_dir() else hub_id
            rep = LoadReport(source=hub_id, collection=c)
            cap = getattr(cfg.max_rows_per_task, c)
            frames.append(load_hub_collection(c, hub_id, quota=max(1, round(quota * cfg.scale)),
                                              max_rows_per_task=cap, seed=cfg.seed, revision=cfg.hub_revision,
                                              report=rep))
            reports.append(rep)
    root = resolve_data_root(cfg.data_dir)
    for name in cfg.extra_query_files:
        path = Path(name) if Path(name).is_absolute() or root is None else root / name
        df, rep = load_schema_file(path)
        frames.append(df)
        reports.append(rep)
    pool = pd.concat(frames, ignore_index=True)
    dup = pool["id"].duplicated()
    if dup.any():
        raise ValueError(f"query pool: {int(dup.sum())} duplicate ids, e.g. {pool['id'][dup].iloc[0]!r}")
    return pool, pd.DataFrame([r.as_row() for r in reports]), unavailable


def sample_queries(pool: pd.DataFrame, cfg: SamplingParams, unavailable: dict[str, str] | None = None
                   ) -> SampleResult:
    """Stage 1 and 2 with a system message per query; stage 2 rows keep the message they have in stage 1."""
    result = sample_stages(pool, _quotas(cfg), scale=cfg.scale, stage2_rows=cfg.stage2_rows,
                           max_rows_per_task=cfg.max_rows_per_task.model_dump(), seed=cfg.seed,
                           unavailable=unavailable)
    s1 = result.stage1.copy()
    s1["system_message_id"] = assign_system_messages(s1["collection"], s1["is_multiple_choice"], cfg.seed,
                                                     cfg.system_message_weights)
    s1["system_message"] = s1["system_message_id"].map(SYSTEM_MESSAGES)
    msg = s1.set_index("id")["system_message_id"]
    s2 = result.stage2.copy()
    s2["system_message_id"] = s2["id"].map(msg).astype(np.int64)
    s2["system_message"] = s2["system_message_id"].map(SYSTEM_MESSAGES)
    columns = list(QUERY_TABLE_COLUMNS)
    return SampleResult(s1[columns], s2[columns], result.report, result.excluded)


def data_label(cfg: SamplingParams) -> str:
    """Which FLAN-v2 data the queries come from, for provenance lines."""
    if cfg.source == "local":
        return "FLAN-v2 CoT (7 sources) + NIv2 40-task sample, local files"
    return "FLAN-v2 submixes from the hub: " + ", ".join(cfg.hub_submixes.values())


def _task_list_path(cfg: SamplingParams) -> Path | None:
    try:
        return resolve_dataset("flan", cfg.data_dir, cfg.offline).path / "flan_collection_info.csv"
    except FileNotFoundError:
        return None


def collections_table(result: SampleResult, cfg: SamplingParams) -> pd.DataFrame:
    """Per collection: the paper's Table 3 (algorithm, original size, sampled), FLAN-v2's task count (from its task
    list under the data root; 0 when the list is not available), and what we have and sampled."""
    block = paper_block("flan_sampling")
    paper = {row["collection"]: row for row in block["table"]}
    path = _task_list_path(cfg)
    tasks = load_task_list(path).groupby("collection").size() if path and path.exists() else pd.Series(dtype=int)
    rows = []
    for rec in result.report.itertuples(index=False):
        p = paper.get(_PAPER_NAMES[rec.collection], {})
        rows.append({"collection": rec.collection,
                     "paper: algorithm": format_paper_value(p.get("sampling_algorithm"), block["status"]),
                     "paper: original size": format_paper_value(p.get("original_size"), block["status"]),
                     "paper: sampled (FLAN-5M)": format_paper_value(p.get("sampled"), block["status"], digits=0),
                     "FLAN-v2 tasks listed": int(tasks.get(rec.collection, 0)),
                     "tasks here": rec.tasks_available, "rows here": rec.rows_available,
                     "quota (scaled)": rec.quota_stage1, "stage 1": rec.stage1, "stage 2": rec.stage2,
                     "status": rec.status})
    return pd.DataFrame(rows)


def plot_system_message_frequencies(stage: pd.DataFrame, title: str):
    """The paper-style figure: relative frequency of each system message (1..16) within each collection."""
    import matplotlib.pyplot as plt

    from ..figure_style import apply, color_for

    apply()
    present = [c for c in COLLECTIONS if (stage["collection"] == c).any()]
    fig, axes = plt.subplots(len(present), 1, figsize=(8, 1.9 * max(1, len(present)) + 0.6), sharex=True,
                             squeeze=False)
    ids = np.arange(1, 17)
    for ax, c in zip(axes[:, 0], present):
        counts = stage.loc[stage["collection"] == c, "system_message_id"].value_counts()
        freq = np.array([counts.get(i, 0) for i in ids]) / max(1, counts.sum())
        ax.bar(ids, freq, color=color_for(f"{c} queries"))
        ax.set_ylabel(f"{c}\n(n={int(counts.sum())})")
        ax.set_ylim(0, max(0.05, freq.max() * 1.15))
    axes[-1, 0].set_xticks(ids)
    axes[-1, 0].set_xlabel("system message id (paper Table 2)")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))      # room at the bottom for run.save_fig's provenance line
    return fig


def check_contamination(stage1: pd.DataFrame, cfg: SamplingParams) -> ContaminationReport:
    """Stage 1's queries against the evaluation sets of `contamination_eval_sets` (n-gram overlap, see
    `contamination`); stage 2 is a subset of stage 1, so this covers both."""
    index = build_index(load_eval_texts(cfg.contamination_eval_sets, cfg.data_dir, cfg.offline),
                        n=cfg.contamination_ngram)
    return scan_queries(index, stage1["id"], stage1["inputs"], max_examples=cfg.contamination_examples)


def write_queries(run, stage1: pd.DataFrame, stage2: pd.DataFrame) -> list[Path]:
    """`queries_stage1.parquet` and `queries_stage2.parquet` for notebook 02, checked against the contract."""
    paths = []
    for stage, df in (("stage1", stage1), ("stage2", stage2)):
        path = run.path(queries_file(stage))
        check_table(df, path, QUERY_TABLE_COLUMNS)
        df.to_parquet(path, index=False)
        paths.append(path)
    return paths


def summary_metrics(pool: pd.DataFrame, load_report: pd.DataFrame, result: SampleResult, stage1: pd.DataFrame,
                    stage2: pd.DataFrame, contamination: ContaminationReport, cfg: SamplingParams
                    ) -> tuple[dict, dict[str, str]]:
    """(metrics, provenance) of notebook 01: pool size, rows per stage and collection against the quota, and the
    contamination check per evaluation set. `stage1`/`stage2` are the tables written (after any drop)."""
    metrics = {"pool/rows": len(pool), "pool/malformed": int(load_report["malformed"].sum()),
               "stage1/rows": len(stage1), "stage2/rows": len(stage2)}
    for rec in result.report.itertuples():
        metrics.update({f"stage1/{rec.collection}/rows": int((stage1["collection"] == rec.collection).sum()),
                        f"stage2/{rec.collection}/rows": int((stage2["collection"] == rec.collection).sum()),
                        f"stage1/{rec.collection}/quota": rec.quota_stage1,
                        f"stage1/{rec.collection}/shortfall": rec.shortfall})
    for rec in contamination.summary.itertuples():
        metrics.update({f"contamination/{rec.eval_set}/items_with_overlap": rec.items_with_overlap,
                        f"contamination/{rec.eval_set}/items": rec.items})
    metrics["contamination/overlapping_queries"] = len(contamination.overlapping_query_ids)
    from ..provenance import Provenance, data_source

    return metrics, Provenance({"data": data_label(cfg), "system_messages": SYSTEM_MESSAGES_PROVENANCE},
                               sources=[data_source(data_label(cfg))])     # sampling only: no model
