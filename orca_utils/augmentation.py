"""Notebook 02's steps (paper §3.1.2-3.1.3): 01's queries -> teacher requests -> responses -> training sets.

The notebook calls, in order: `load_queries` (01's `queries_stage{1,2}.parquet`, capped by `max_queries`),
`teacher_table`, `build_requests` (system message + zero-shot query, explicit max_tokens/stop/temperature),
`estimate_costs`, `teacher_endpoints` (starts the local OpenAI-compatible server for offline teachers; a real teacher
keeps its endpoint), `run_stages` (the cached, rate-limited client of `orca_utils.teacher`), `responses_frame` /
`train_frame` (the contract columns of `orca_utils.contracts`) and `write_tables` (the files 03 and 04 read),
`status_table`, `plot_length_distributions` and `summary_metrics`.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

from .contracts import (QUERY_TABLE_COLUMNS, RESPONSE_TABLE_COLUMNS, STAGES, TRAIN_TABLE_COLUMNS, queries_file,
                        read_table, responses_file, train_file)
from .schemas import AugmentationParams, TeacherEndpointParams, TeacherModelParams
from .teacher import ChatRequest, ChatRun, CostEstimate, Prices, complete_chats, estimate_cost

__all__ = ["STAGES", "teacher_of", "load_queries", "teacher_table", "token_counter", "build_requests",
           "estimate_costs", "teacher_endpoints", "run_stage", "run_stages", "responses_frame", "train_frame",
           "write_tables", "status_table", "provenance", "plot_length_distributions", "summary_metrics"]


def teacher_of(cfg: AugmentationParams, stage: str) -> TeacherModelParams:
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {STAGES}")
    return getattr(cfg, stage)


def load_queries(upstream_dir: Path, cfg: AugmentationParams) -> dict:
    """{stage: 01's queries for that stage}, checked against the contract and cut to the stage's `max_queries`."""
    out = {}
    for stage in STAGES:
        df = read_table(upstream_dir, queries_file(stage), QUERY_TABLE_COLUMNS, "01_sampling")
        if df["id"].duplicated().any():
            raise ValueError(f"{Path(upstream_dir) / queries_file(stage)}: duplicated ids, e.g. "
                             f"{df.loc[df['id'].duplicated(), 'id'].iloc[0]!r}")
        cap = teacher_of(cfg, stage).max_queries
        out[stage] = (df.head(cap) if cap else df).reset_index(drop=True)
    return out


def teacher_table(cfg: AugmentationParams, queries: dict):
    """One row per stage: which teacher answers it (label, model), how many queries, max_tokens, batch mode."""
    import pandas as pd

    return pd.DataFrame([{"stage": s, "teacher": teacher_of(cfg, s).label, "model": teacher_of(cfg, s).model,
                          "queries": len(queries[s]), "max_tokens": teacher_of(cfg, s).max_tokens,
                          "batch_mode": cfg.endpoint.batch_mode} for s in STAGES])


def token_counter(cfg: AugmentationParams) -> tuple[Callable[[str], int], str]:
    """(count_tokens, label) with the tokenizer of `token_counter` (default: the LLaMA tokenizer)."""
    from .models import load_tokenizer

    spec = cfg.token_counter or cfg.llama_tokenizer
    tok = load_tokenizer(spec)
    return (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])), f"tokenizer {spec}"


def build_requests(queries, teacher: TeacherModelParams) -> list[ChatRequest]:
    """One chat request per query: its system message (omitted when empty, message 1) and the zero-shot query."""
    requests = []
    for row in queries.itertuples(index=False):
        messages = ([{"role": "system", "content": row.system_message}] if row.system_message else []) + \
                   [{"role": "user", "content": row.inputs}]
        requests.append(ChatRequest(str(row.id), teacher.model, messages, teacher.max_tokens, teacher.temperature,
                                    list(teacher.stop) or None, teacher.dialect, teacher.reasoning_effort))
    return requests


def _prices(teacher: TeacherModelParams, endpoint: TeacherEndpointParams) -> Prices:
    return Prices(teacher.price_input_usd_per_1k, teacher.price_output_usd_per_1k,
                  endpoint.batch_price_factor if endpoint.batch_mode else 1.0)


def estimate_costs(cfg: AugmentationParams, requests: dict, count_tokens, counter_label: str,
                   cache_path: Path) -> tuple[object, dict[str, CostEstimate]]:
    """A table (one row per stage + total) and the estimates; raises CostLimitError above `max_cost_usd`."""
    import pandas as pd

    from .teacher import CostLimitError, ResponseCache

    with ResponseCache(cache_path) as cache:
        est = {s: estimate_cost(requests[s], _prices(teacher_of(cfg, s), cfg.endpoint), count_tokens, cache,
                                teacher_of(cfg, s).expected_completion_tokens, counter_label) for s in STAGES}
    rows = [{"stage": s, "teacher": teacher_of(cfg, s).label, "requests": e.n_requests, "cached": e.n_cached,
             "prompt_tokens": e.prompt_tokens, "expected_completion_tokens": e.completion_tokens,
             "estimate_usd": round(e.usd, 4), "worst_case_usd": round(e.usd_worst_case, 4)} for s, e in est.items()]
    table = pd.DataFrame(rows)
    total = float(table["estimate_usd"].sum())
    if total > cfg.max_cost_usd + 1e-12:
        raise CostLimitError(f"estimated cost ${total:,.2f} exceeds max_cost_usd=${cfg.max_cost_usd:,.2f} "
                             f"(per stage: {dict(zip(table['stage'], table['estimate_usd']))}); nothing was sent")
    return table, est


@contextlib.contextmanager
def teacher_endpoints(cfg: AugmentationParams, queries: dict, count_tokens=None) -> Iterator[dict]:
    """{stage: endpoint params}; offline teachers are served on 127.0.0.1 for the duration of the block."""
    import pandas as pd

    from .teacher import offline_backends, serve_offline

    stages = {s: teacher_of(cfg, s) for s in STAGES}
    offline = {s: t for s, t in stages.items() if t.offline_backend != "none"}
    own = {s: cfg.endpoint.model_copy(update={"base_url": t.base_url}) if t.base_url else cfg.endpoint
           for s, t in stages.items()}
    if not offline:
        yield own
        return
    lookup = pd.concat([queries[s] for s in STAGES], ignore_index=True)
    backends = offline_backends(offline, lookup, cfg.student_model,
                                device="cpu" if cfg.device == "auto" else cfg.device, count_tokens=count_tokens)
    batch = max(t.local_batch_size for t in offline.values())
    with serve_offline(backends, cfg.endpoint, max_batch_size=batch) as local:
        yield {s: local if s in offline else own[s] for s in STAGES}


def run_stage(cfg: AugmentationParams, stage: str, requests: list[ChatRequest], endpoint: TeacherEndpointParams,
              cache_path: Path, count_tokens=None, progress: bool = True, spent_usd: float = 0.0) -> ChatRun:
    """One stage through the teacher client; `spent_usd` (earlier stages) counts against `max_cost_usd`."""
    teacher = teacher_of(cfg, stage)
    return complete_chats(requests, endpoint, cache_path, prices=_prices(teacher, endpoint),
                          max_cost_usd=max(0.0, cfg.max_cost_usd - spent_usd), progress=progress,
                          desc=f"{stage}: {teacher.label}", count_tokens=count_tokens)


def run_stages(cfg: AugmentationParams, requests: dict, endpoints: dict, cache_path: Path, count_tokens=None,
               progress: bool = True) -> dict[str, ChatRun]:
    """Both stages in order under one `max_cost_usd` for the whole notebook; a stage that got no answer at all
    (every request an error: a configuration problem) stops the notebook with its most common error, instead of
    leaving 04 without data; a stage whose answers were all cut at max_tokens is reported."""
    runs, spent = {}, 0.0
    for stage in STAGES:
        run = run_stage(cfg, stage, requests[stage], endpoints[stage], cache_path, count_tokens, progress, spent)
        spent += run.stats.get("spent_usd", 0.0)
        run.stats["notebook_spent_usd"] = spent
        runs[stage] = run
        counts = run.status_counts()
        if requests[stage] and counts.get("ok", 0) + counts.get("truncated", 0) == 0:
            errors = [r.error for r in run.results if r.error]
            common = max(set(errors), key=errors.count) if errors else "no error recorded"
            raise RuntimeError(f"02_augmentation.{stage}: no answer from {teacher_of(cfg, stage).model!r} "
                               f"({counts}); most common error: {common}")
        if requests[stage] and counts.get("ok", 0) == 0:
            print(f"warning: 02_augmentation.{stage}: every answer was cut at max_tokens: no training row for this "
                  f"stage (raise {stage}.max_tokens)")
    return runs


def responses_frame(queries, run: ChatRun, teacher: TeacherModelParams):
    """Every request with its status (the contract columns + token counts, error, attempts)."""
    import pandas as pd

    res = run.to_frame().set_index("id")
    q = queries.set_index(queries["id"].astype(str))
    df = pd.DataFrame({
        "id": q.index, "system": q["system_message"].values, "user": q["inputs"].values,
        "response": res.loc[q.index, "text"].values, "teacher": teacher.label, "teacher_model": teacher.model,
        "collection": q["collection"].values, "task": q["task"].values,
        "system_message_id": q["system_message_id"].astype(int).values, "status": res.loc[q.index, "status"].values,
        "finish_reason": res.loc[q.index, "finish_reason"].values})
    for col in ("prompt_tokens", "completion_tokens", "error", "attempts", "from_cache"):
        df[col] = res.loc[q.index, col].values
    return df[list(RESPONSE_TABLE_COLUMNS)].reset_index(drop=True)


def train_frame(responses):
    """Only `ok` responses go to training."""
    return responses.loc[responses["status"] == "ok", list(TRAIN_TABLE_COLUMNS)].reset_index(drop=True)


def write_tables(run, responses: dict, train: dict) -> None:
    """`responses_stage{1,2}.parquet` (every request) and `train_stage{1,2}.parquet` (what 03 and 04 read; 04
    streams it by row group)."""
    for s in STAGES:
        responses[s].to_parquet(run.path(responses_file(s)), index=False, row_group_size=10_000)
        train[s].to_parquet(run.path(train_file(s)), index=False, row_group_size=10_000)


def status_table(responses: dict):
    """Requests per status (rows) and stage (columns)."""
    import pandas as pd

    return pd.concat({s: responses[s]["status"].value_counts() for s in STAGES}, axis=1).fillna(0).astype(int)


def provenance(cfg: AugmentationParams) -> str:
    """Which teacher (label [model]) answered each stage, for the line under tables and figures."""
    return "; ".join(f"{s}: {teacher_of(cfg, s).label} [{teacher_of(cfg, s).model}]" for s in STAGES)


# What the Batch API did per stage (orca_utils.teacher.batch): refusals it waited out, expiries, the most batches in
# flight, and the hidden reasoning tokens paid for (answers the reasoning left empty are counted under status/empty).
BATCH_STATS = ("batches_refused", "batches_expired", "requeued_unprocessed", "max_in_flight", "reasoning_tokens")


def summary_metrics(cfg: AugmentationParams, runs: dict[str, ChatRun], responses: dict, train: dict,
                    estimates: dict[str, CostEstimate], count_tokens) -> tuple[dict, dict[str, str]]:
    """(metrics, provenance) of notebook 02: per stage, requests, training rows, sent / cached, batches, spend
    against the estimate, mean response length (tokens of `count_tokens`) and the count of each status."""
    metrics = {}
    for s in STAGES:
        counts = runs[s].status_counts()
        metrics.update({f"{s}/requests": len(responses[s]), f"{s}/train_rows": len(train[s]),
                        f"{s}/sent": runs[s].stats["sent"], f"{s}/cached": runs[s].stats["cached"],
                        f"{s}/batches": runs[s].stats.get("batches", 0),
                        **{f"{s}/{k}": runs[s].stats.get(k, 0) for k in BATCH_STATS},
                        f"{s}/spent_usd": round(runs[s].stats["spent_usd"], 6),
                        f"{s}/estimate_usd": round(estimates[s].usd, 6),
                        f"{s}/mean_response_tokens": float(train[s]["response"].map(count_tokens).mean())
                        if len(train[s]) else 0.0,
                        **{f"{s}/status/{k}": v for k, v in counts.items()}})
    from .provenance import Provenance, teacher_source

    return metrics, Provenance({s: f"{teacher_of(cfg, s).label} [{teacher_of(cfg, s).model}]" for s in STAGES},
                               sources=[teacher_source(f"teacher ({s})", teacher_of(cfg, s)) for s in STAGES])


def plot_length_distributions(responses: dict, count_tokens):
    """Box plots of response length (tokens) per system message id, one panel per teacher (paper §3.1.3)."""
    import matplotlib.pyplot as plt

    from . import figure_style

    figure_style.apply()
    fig, axes = plt.subplots(1, len(responses), figsize=(5.5 * len(responses), 3.6), squeeze=False, sharey=True)
    for ax, (stage, df) in zip(axes[0], responses.items()):
        ok = df[df["status"].isin(["ok", "truncated"])]
        ids = sorted(ok["system_message_id"].unique())
        data = [[count_tokens(t) for t in ok.loc[ok["system_message_id"] == i, "response"]] for i in ids]
        teacher = str(df["teacher"].iloc[0]) if len(df) else "?"
        color = figure_style.color_for(teacher, role=figure_style.role_of(str(stage)))
        if data:
            ax.boxplot(data, tick_labels=[str(i) for i in ids], showfliers=False, patch_artist=True,
                       boxprops={"facecolor": color, "alpha": 0.8}, medianprops={"color": "black"})
        ax.set_title(f"{stage}: {teacher}", fontsize=9)
        ax.set_xlabel("system message id")
    axes[0][0].set_ylabel("response length (tokens)")
    fig.suptitle("Teacher response length per system message", fontsize=10)
    fig.tight_layout()
    return fig
