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

__all__ = ["STAGES", "teacher_of", "load_queries", "with_strategies", "strategy_table", "teacher_table",
           "token_counter", "build_requests",
           "estimate_costs", "teacher_endpoints", "run_stage", "run_stages", "responses_frame", "apply_funnel",
           "funnel_tables", "funnel_figure", "train_frame",
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


def with_strategies(cfg: AugmentationParams, queries: dict) -> dict:
    """{stage: queries with `strategy`, `strategy_reason`, `teacher_system_message` (what the teacher is sent) and
    `system_message` (what the student trains with)}: both 01's message without `prompt_erasure` (Orca 1); with it
    (Orca 2), the strategy message of the task's FLAN-v2 category and the generic message (orca_utils.strategies;
    the categories come from FLAN-v2's task list under the data root, else every task falls back by collection)."""
    import pandas as pd

    from .data import resolve_dataset
    from .strategies import strategy_frame, task_categories

    erasure = cfg.prompt_erasure
    categories = {}
    if erasure.enabled:
        try:
            task_list = resolve_dataset("flan", cfg.data_dir, cfg.offline).path / "flan_collection_info.csv"
        except FileNotFoundError:
            task_list = None
        categories = task_categories(task_list if task_list is not None and task_list.exists() else None)
    out = {}
    for stage, df in queries.items():
        picked = strategy_frame(df, erasure.enabled, categories, erasure.category_strategy, erasure.generic_message)
        out[stage] = pd.concat([df.drop(columns=["system_message"]).reset_index(drop=True), picked], axis=1)
    return out


def strategy_table(queries: dict):
    """Queries per strategy (rows) and stage (columns); empty without prompt erasure."""
    import pandas as pd

    return pd.concat({s: df.loc[df["strategy"] != "", "strategy"].value_counts() for s, df in queries.items()},
                     axis=1).fillna(0).astype(int)


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
    """One chat request per query: the teacher's system message (omitted when empty, message 1) and the zero-shot
    query. `queries` carry `teacher_system_message` (`with_strategies`); 01's own tables, `system_message`."""
    column = "teacher_system_message" if "teacher_system_message" in queries.columns else "system_message"
    requests = []
    for row in queries.itertuples(index=False):
        system = getattr(row, column)
        messages = ([{"role": "system", "content": system}] if system else []) + \
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
                                teacher_of(cfg, s).expected_completion_tokens, counter_label, endpoint=cfg.endpoint)
               for s in STAGES}
    rows = [{"stage": s, "teacher": teacher_of(cfg, s).label, "requests": e.n_requests, "cached": e.n_cached,
             "same_prompt": e.n_same_prompt,
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
        "teacher_system_message": q.get("teacher_system_message", q["system_message"]).values,
        "system_message": q["system_message"].values, "strategy": q.get("strategy", pd.Series("", q.index)).values,
        "response": res.loc[q.index, "text"].values, "teacher": teacher.label, "teacher_model": teacher.model,
        "collection": q["collection"].values, "task": q["task"].values,
        "system_message_id": q["system_message_id"].astype(int).values, "status": res.loc[q.index, "status"].values,
        "finish_reason": res.loc[q.index, "finish_reason"].values})
    for col in ("prompt_tokens", "completion_tokens", "error", "attempts", "from_cache"):
        df[col] = res.loc[q.index, col].values
    return df[list(RESPONSE_TABLE_COLUMNS)].reset_index(drop=True)


def apply_funnel(cfg: AugmentationParams, responses: dict, queries: dict, count_tokens) -> dict:
    """{stage: `orca_utils.funnel.run_funnel` result}: every response through the data funnel (refusals, truncated,
    over-long, duplicate queries and responses, label agreement; `funnel:` in params), with what each filter
    removed and why. Lengths for `too_long` are counted with `count_tokens` (the LLaMA tokenizer by default)."""
    from .funnel.core import run_funnel

    return {s: run_funnel(responses[s], queries[s], cfg.funnel, s, token_count=count_tokens) for s in STAGES}


def funnel_tables(funnels: dict):
    """(tab_data_funnel: rows per stage, collection and step, requests -> answered -> after each filter, with the
    share of the requests kept; the rejects of both stages with filter, reason and detail; the label check's
    outcomes per stage)."""
    import pandas as pd

    counts = pd.concat([f.counts for f in funnels.values()], ignore_index=True)
    table = counts.pivot_table(index=["stage", "step"], columns="collection", values="rows", aggfunc="sum",
                               sort=False).fillna(0).astype(int)
    table["all"] = table.sum(axis=1)
    requests = table.xs("requests", level="step")["all"]
    table["kept % of requests"] = [round(100.0 * v / requests[s], 1) if requests[s] else 0.0
                                   for (s, _), v in zip(table.index, table["all"])]
    rejects = pd.concat([f.rejects for f in funnels.values()], ignore_index=True)
    labels = pd.concat([f.labels for f in funnels.values()], ignore_index=True)
    outcomes = labels.groupby(["stage", "outcome"]).size().unstack(fill_value=0) if len(labels) else pd.DataFrame()
    return table.reset_index(), rejects, outcomes


def funnel_figure(funnels: dict):
    """The funnel's bars, one panel per stage (`orca_utils.funnel.core.funnel_figure`), titled with the teachers."""
    import pandas as pd

    from .funnel.core import funnel_figure as draw

    teachers = ", ".join(f"{s}: {f.kept['teacher'].iloc[0]}" for s, f in funnels.items() if len(f.kept))
    return draw(pd.concat([f.counts for f in funnels.values()], ignore_index=True),
                title=f"Teacher responses through the data funnel ({teachers or 'no rows kept'})")


def train_frame(responses):
    """Only `ok` responses go to training (pass the funnel's kept rows to train on what it kept)."""
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
                    estimates: dict[str, CostEstimate], count_tokens,
                    funnels: dict | None = None) -> tuple[dict, dict[str, str]]:
    """(metrics, provenance) of notebook 02: per stage, requests, training rows, sent / cached, batches, spend
    against the estimate, mean response length (tokens of `count_tokens`), the count of each status and, with the
    funnel, the rows left after each of its steps, the rejects per filter and the label check's outcomes."""
    metrics = {}
    for s, funnel in (funnels or {}).items():
        steps = funnel.counts.groupby("step", sort=False)["rows"].sum()
        metrics.update({f"{s}/funnel/{step}": int(n) for step, n in steps.items()})
        metrics.update({f"{s}/rejected/{k}": int(n) for k, n in funnel.rejects["filter"].value_counts().items()})
        metrics.update({f"{s}/label_check/{k}": int(n) for k, n in funnel.labels["outcome"].value_counts().items()})
    for s in STAGES:
        counts = runs[s].status_counts()
        metrics.update({f"{s}/requests": len(responses[s]), f"{s}/train_rows": len(train[s]),
                        f"{s}/sent": runs[s].stats["sent"], f"{s}/cached": runs[s].stats["cached"],
                        f"{s}/cached_same_prompt": runs[s].stats.get("cached_same_prompt", 0),
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
