"""`run_funnel`: one stage's teacher responses through the filters, with what each removed and why.

    result = run_funnel(responses, queries, params.funnel, "stage1", token_count=count_tokens)
    result.kept      # the responses kept (02's response columns, input order): the training rows
    result.rejects   # one row per request not kept: id, stage, collection, task, filter, reason, detail,
                     # duplicate_of (the kept id a duplicate repeats)
    result.counts    # tidy: stage, collection, step, rows; steps "requests", "answered", "after_<filter>"
    result.labels    # the label check of every row that reached it: outcome, kind, gold, answer, method

`responses` is 02's `responses_stage{1,2}.parquet` (`RESPONSE_TABLE_COLUMNS`), `queries` 01's queries of the same
stage (`targets`, `rationale`, `is_multiple_choice` per id). Every request is either kept or in `rejects` exactly
once: those not answered (status outside `answered_statuses`) under the filter "answered", with their status as the
reason. Counts never grow along the funnel; a filter that is off has no step. `funnel_figure(counts)` draws it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..contracts import check_table
from .checks import label_check, refusal_reason
from .dedup import find_duplicates
from .params import FILTERS, FunnelParams

__all__ = ["REJECT_COLUMNS", "COUNT_COLUMNS", "LABEL_COLUMNS", "RESPONSE_COLUMNS_READ", "QUERY_COLUMNS_READ",
           "FunnelResult", "run_funnel", "funnel_figure"]

REJECT_COLUMNS = ("id", "stage", "collection", "task", "filter", "reason", "detail", "duplicate_of")
COUNT_COLUMNS = ("stage", "collection", "step", "rows")
LABEL_COLUMNS = ("id", "stage", "collection", "task", "outcome", "kind", "gold", "answer", "method")
RESPONSE_COLUMNS_READ = ("id", "system", "user", "response", "collection", "task", "status", "finish_reason")
QUERY_COLUMNS_READ = ("id", "targets", "rationale", "is_multiple_choice")


@dataclass
class FunnelResult:
    """What `run_funnel` gives (module docstring)."""

    kept: object
    rejects: object
    counts: object
    labels: object


def _text(value) -> str:
    """The cell as text; None, NaN and pd.NA read as ""."""
    try:
        missing = value is None or bool(value != value)
    except TypeError:                                   # pd.NA has no truth value
        missing = True
    return "" if missing else str(value)


def _token_counts(df, token_count, measure: str) -> list[int]:
    if token_count is None:
        raise ValueError("funnel.too_long is on: pass run_funnel(token_count=...) (a callable str -> int, or the "
                         "name of a column of precomputed counts), or set funnel.too_long.enabled: false")
    if isinstance(token_count, str):
        check_table(df, f"responses (token_count column {token_count!r})", [token_count])
        return [int(n) for n in df[token_count]]
    if not callable(token_count):
        raise ValueError(f"run_funnel: token_count must be a callable or a column name, got "
                         f"{type(token_count).__name__}")
    if measure == "response":
        return [token_count(_text(r)) for r in df["response"]]
    return [sum(token_count(_text(v)) for v in (s, u, r) if _text(v))
            for s, u, r in zip(df["system"], df["user"], df["response"])]


def _apply(name: str, df, rows: list[int], params: FunnelParams, queries, token_count, labels: list) -> dict:
    """{position: (reason, detail, duplicate_of)} of the rows (positions in `df`) that filter `name` removes."""
    sub = df.iloc[rows]
    out: dict[int, tuple] = {}
    if name == "refusal":
        p = params.refusal
        for pos, resp in zip(rows, sub["response"]):
            hit = refusal_reason(_text(resp), p.head_chars, p.extra_patterns)
            if hit:
                out[pos] = (hit[0], hit[1], None)
    elif name == "truncated":
        for pos, reason in zip(rows, sub["finish_reason"]):
            if _text(reason) == "length":
                out[pos] = ("finish_reason_length", "finish_reason=length: cut at the teacher's max_tokens", None)
    elif name == "too_long":
        p = params.too_long
        for pos, n in zip(rows, _token_counts(sub, token_count, p.measure)):
            if n > p.max_len_tokens:
                out[pos] = ("over_max_len", f"{n} tokens > max_len_tokens {p.max_len_tokens} ({p.measure})", None)
    elif name in ("duplicate_query", "duplicate_response"):
        column = "user" if name == "duplicate_query" else "response"
        found = find_duplicates([_text(t) for t in sub[column]], [_text(t) for t in sub["task"]],
                                getattr(params, name))
        for dup in found:
            of = str(sub["id"].iloc[dup.of])
            detail = f"{column} repeats {of}" + ("" if dup.reason == "exact_duplicate" else
                                                 f" (Jaccard {dup.jaccard:.2f})")
            out[rows[dup.position]] = (dup.reason, detail, of)
    elif name == "label_agreement":
        p = params.label_agreement
        for pos, row in zip(rows, sub.itertuples(index=False)):
            q = queries.get(str(row.id))
            check = label_check(_text(row.response), _text(row.user), _text(q["targets"]), _text(q["rationale"]),
                                _text(row.collection), bool(q["is_multiple_choice"]) if _text(q["is_multiple_choice"])
                                else False, p.max_answer_words) \
                if q is not None else {"outcome": "not_comparable", "kind": "", "gold": None, "answer": None,
                                       "method": "no query row for this id"}
            labels.append({"id": str(row.id), "collection": _text(row.collection), "task": _text(row.task),
                           **check})
            if p.drop_disagreeing and check["outcome"] == "label_disagrees":
                out[pos] = ("label_disagrees", f"answer {check['answer']!r} vs target {check['gold']!r} "
                                               f"({check['kind']})", None)
    else:
        raise ValueError(f"funnel filter {name!r}: expected one of {FILTERS}")
    return out


def run_funnel(responses, queries=None, params: FunnelParams | None = None, stage: str = "stage1",
               token_count: Callable[[str], int] | str | None = None) -> FunnelResult:
    """One stage's responses through the funnel (module docstring). `token_count`: a callable counting the tokens
    of a text (the LLaMA tokenizer's) or the name of a column of `responses` holding each row's count; needed only
    when `too_long` is on. `queries`: needed only when `label_agreement` is on."""
    import pandas as pd

    params = params or FunnelParams()
    check_table(responses, f"responses ({stage})", RESPONSE_COLUMNS_READ, "02_augmentation")
    df = responses.reset_index(drop=True)
    ids = df["id"].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"responses ({stage}): duplicated id {ids[ids.duplicated()].iloc[0]!r}")
    lookup = {}
    if params.label_agreement.enabled:
        if queries is None:
            raise ValueError("funnel.label_agreement is on: pass run_funnel(queries=...) (01's queries of the stage), "
                             "or set funnel.label_agreement.enabled: false")
        check_table(queries, f"queries ({stage})", QUERY_COLUMNS_READ, "01_sampling")
        lookup = {str(i): {"targets": t, "rationale": r, "is_multiple_choice": m} for i, t, r, m in
                  zip(queries["id"], queries["targets"], queries["rationale"], queries["is_multiple_choice"])}

    alive = df["status"].astype(str).isin(params.answered_statuses).to_numpy().copy()
    rejects = [{"id": ids[i], "filter": "answered", "reason": _text(df["status"].iloc[i]),
                "detail": _text(df["error"].iloc[i]) if "error" in df else "", "duplicate_of": None}
               for i in range(len(df)) if not alive[i]]
    steps = [("requests", [True] * len(df)), ("answered", alive.copy())]
    labels: list[dict] = []
    for name in FILTERS:
        if not getattr(params, name).enabled:
            continue
        removed = _apply(name, df, [i for i in range(len(df)) if alive[i]], params, lookup, token_count, labels)
        for pos, (reason, detail, of) in sorted(removed.items()):
            alive[pos] = False
            rejects.append({"id": ids[pos], "filter": name, "reason": reason, "detail": detail, "duplicate_of": of})
        steps.append((f"after_{name}", alive.copy()))

    where = {i: n for n, i in enumerate(ids)}
    for rec in rejects:
        pos = where[rec["id"]]
        rec.update(stage=stage, collection=_text(df["collection"].iloc[pos]), task=_text(df["task"].iloc[pos]))
    collections = list(dict.fromkeys(_text(c) for c in df["collection"]))
    coll = df["collection"].map(_text)
    counts = pd.DataFrame([{"stage": stage, "collection": c, "step": step, "rows": int((coll[mask] == c).sum())}
                           for step, mask in steps for c in collections], columns=list(COUNT_COLUMNS))
    return FunnelResult(kept=df[alive].reset_index(drop=True),
                        rejects=pd.DataFrame(rejects, columns=list(REJECT_COLUMNS)),
                        counts=counts,
                        labels=pd.DataFrame([{"stage": stage, **rec} for rec in labels], columns=list(LABEL_COLUMNS)))


def funnel_figure(counts, title: str = "Teacher responses through the data funnel"):
    """Horizontal bars, one panel per stage: the rows left at each step (top: requests), stacked by collection,
    each labelled with its count and its share of the requests."""
    import matplotlib.pyplot as plt

    from .. import figure_style

    check_table(counts, "funnel counts", COUNT_COLUMNS)
    figure_style.apply()
    stages = list(dict.fromkeys(counts["stage"]))
    collections = list(dict.fromkeys(counts["collection"]))
    n_steps = max((counts.loc[counts["stage"] == s, "step"].nunique() for s in stages), default=1)
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(5.2 * max(1, len(stages)), 1.2 + 0.38 * n_steps),
                             squeeze=False)
    for ax, stage in zip(axes[0], stages):
        table = counts[counts["stage"] == stage].pivot_table(index="step", columns="collection", values="rows",
                                                             aggfunc="sum", sort=False).fillna(0)
        steps = list(dict.fromkeys(counts.loc[counts["stage"] == stage, "step"]))
        table = table.reindex(index=steps, columns=[c for c in collections if c in table.columns], fill_value=0)
        y = list(range(len(steps)))[::-1]                   # requests on top
        left = [0.0] * len(steps)
        for c in table.columns:
            ax.barh(y, table[c], left=left, height=0.7, color=figure_style.color_for(c), label=c, linewidth=0)
            left = [a + b for a, b in zip(left, table[c])]
        total, first = table.sum(axis=1), float(table.sum(axis=1).iloc[0]) or 1.0
        for yy, value in zip(y, total):
            ax.text(value, yy, f" {int(value):,} ({value / first:.1%})", va="center", fontsize=7)
        ax.set_yticks(y, [s.replace("after_", "after ").replace("_", " ") for s in steps])
        ax.set_xlim(0, first * 1.3)
        ax.set_xlabel("rows")
        ax.set_title(str(stage))
    handles, names = axes[0][0].get_legend_handles_labels()
    bottom = 0.0
    if names:                                           # below the panels, clear of the bar labels
        fig.legend(handles, names, title="collection", loc="lower center", ncol=min(len(names), 6), fontsize=7,
                   title_fontsize=7)
        bottom = 0.16 if n_steps < 6 else 0.1
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig
