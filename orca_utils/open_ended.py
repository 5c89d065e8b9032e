"""Notebook 07's driver: the open-ended prompt sets of the Orca paper's section 4 (Vicuna, Awesome ChatGPT prompts,
WizardLM) answered by the candidate and the references, judged pairwise, and set beside the paper's relative scores.

The prompt-set loaders live in `orca_utils.evaluation.prompt_sets` (01's contamination check reads them too) and
the judging in `orca_utils.judge`; the names the notebook calls are re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .evaluation.prompt_sets import (PAPER_SET_NAMES, PAPER_SET_SIZES, PROMPT_SETS, load_prompt_set,  # re-exported
                                     load_prompt_sets, select_subset)
from .judge import VICUNA_V1, build_judge_messages, load_fastchat_templates   # re-exported for notebook 07

__all__ = ["PROMPT_SETS", "PAPER_SET_SIZES", "PAPER_SET_NAMES", "load_prompt_set", "load_prompt_sets",
           "select_subset", "CandidateAnswers", "candidate_answers", "judge_candidate", "paper_relative_scores",
           "plot_relative_scores", "provenance_line", "answers_table", "summary_metrics", "summary_lines",
           "VICUNA_V1", "build_judge_messages", "load_fastchat_templates"]

# ---------------------------------------------------------------- answers, pairs, paper numbers, figure

def pick_candidate(run, cfg) -> tuple[str, str]:
    """The candidate model: 04's student when `cfg.candidate == "student"` and it exists, else the untuned one."""
    from .contracts import tuned_student

    student = tuned_student(run) if cfg.candidate == "student" else None
    return student or (cfg.base_model_label, cfg.student_model)


@dataclass
class CandidateAnswers:
    label: str                  # who answered (04's student, or the untuned student)
    spec: str                   # its model spec
    answers: pd.DataFrame       # id, answer, finish_reason, n_tokens
    engine: str                 # "in process (HF generate)" or "served by <engine>"
    loaded: dict                # {spec: HFBackend} still in memory, for `judge.serve_models` to reuse; {} if served


def candidate_answers(prompts: pd.DataFrame, run, cfg) -> CandidateAnswers:
    """The candidate's greedy answers, generated in this process (`serve: none`) or through an OpenAI-compatible
    server started for the purpose (`serve: transformers | vllm`); the prompt format is the model's own either way."""
    from .backends.resident import generation_backend

    label, spec = pick_candidate(run, cfg)
    with generation_backend(spec, cfg.serve, label=label, device=cfg.device, dtype=cfg.dtype,
                            batch_size=cfg.candidate_batch_size) as backend:
        answers = generate_answers(prompts, backend, cfg.candidate_max_new_tokens)
    served = cfg.serve != "none"
    return CandidateAnswers(label, spec, answers, f"served by {cfg.serve}" if served else "in process (HF generate)",
                            {} if served else {spec: backend})


def generate_answers(prompts: pd.DataFrame, backend, max_new_tokens: int) -> pd.DataFrame:
    """Greedy answers of a local model (an `HFBackend`) to each prompt: id, answer, finish_reason, n_tokens."""
    done = backend.generate_completions(list(prompts["prompt"]), max_new_tokens)
    return pd.DataFrame({"id": prompts["id"].values, "answer": [c.text for c in done],
                         "finish_reason": [c.finish_reason for c in done],
                         "n_tokens": [c.completion_tokens for c in done]})


def answer_with_chat(prompts: pd.DataFrame, chat) -> pd.DataFrame:
    """Answers through a ChatFn (the teacher client): id, answer, status; failed requests keep their status."""
    replies = chat([[{"role": "user", "content": p}] for p in prompts["prompt"]])
    return pd.DataFrame({"id": prompts["id"].values, "answer": [t or "" for t, _ in replies],
                         "status": [s for _, s in replies]})


def build_pairs(prompts: pd.DataFrame, candidates: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Rows to judge: id, set, prompt, candidate, reference; prompts whose reference failed are dropped (counted
    in `attrs["n_dropped"]`), an empty candidate stays (it deserves its low score)."""
    df = prompts.merge(candidates[["id", "answer"]].rename(columns={"answer": "candidate"}), on="id") \
        .merge(references[["id", "answer", "status"]].rename(columns={"answer": "reference"}), on="id")
    ok = (df["status"] == "ok") & (df["reference"].str.strip() != "")
    out = df[ok].drop(columns="status").reset_index(drop=True)
    out.attrs["n_dropped"] = int((~ok).sum())
    return out


def paper_relative_scores() -> pd.DataFrame:
    """The paper's relative scores (block `open_ended`, rows recalled: shown as unverified) per set and reference."""
    from .reference import format_paper_value, paper_block

    block = paper_block("open_ended")
    recalled = block.get("table_recalled") or {}
    status = recalled.get("status", "missing")
    rows = []
    for name, paper_name in [*PAPER_SET_NAMES.items(), ("all", "Average")]:
        for ref in ("ChatGPT", "GPT-4"):
            hit = next((r for r in recalled.get("rows", []) if r["dataset"] == paper_name and r["reference"] == ref),
                       None)
            for model in ("Orca-13B", "Vicuna-13B"):
                value = hit.get(model) if hit else None
                rows.append({"set": name, "paper_reference": ref, "paper_model": model, "value": value,
                             "shown": format_paper_value(value, status if value is not None else None)})
    return pd.DataFrame(rows)


def _no_relative_score_reason(summary: pd.DataFrame) -> str:
    """Why no relative score was computed, from the judged counts of each reference's `all` row (every set)."""
    rows = summary[summary["set"] == "all"] if (summary["set"] == "all").any() else summary
    if rows.empty:
        return "nothing was judged"
    if "n_parsed_candidate_first" not in rows:
        return "no relative score was computed (no verdict counts)"
    reasons = []
    for _, row in rows.iterrows():
        def count(key: str, row=row) -> int:
            value = pd.to_numeric(row.get(key), errors="coerce")
            return 0 if pd.isna(value) else int(value)

        verdicts = 2 * count("n_prompts")                                   # each prompt judged in both orders
        unread, failed = count("n_unparseable"), count("n_errors")
        if not verdicts:
            failed_refs = count("n_reference_failed")
            reasons.append(f"the reference gave no answer to judge ({failed_refs} failed)" if failed_refs else
                           "no prompt was judged")
        elif count("n_parsed_candidate_first") and count("n_parsed_reference_first"):
            reasons.append("the judge gave the reference 0 points in one order: no ratio")
        elif unread or failed:
            reasons.append(" and ".join([*([f"the judge's replies could not be read ({unread} of {verdicts} "
                                            f"unparseable)"] if unread else []),
                                         *([f"the judge calls failed ({failed} of {verdicts})"] if failed else [])]))
        else:
            reasons.append("no verdict was parsed in one of the two orders")
    return "; ".join(dict.fromkeys(reasons))


def plot_relative_scores(summary: pd.DataFrame, paper: pd.DataFrame, candidate: str | None = None,
                         paper_reference: str = "ChatGPT"):
    """The paper's way (its Figures 3-4): per prompt set, horizontal bars of each model's score relative to a
    reference (%), ours beside the paper's. Ours: mean of both orders, error bar spanning the two orders (the
    position bias); the paper's Orca-13B and Vicuna-13B relative to `paper_reference` (hatched, recalled values
    marked unverified). A missing value is written "n/a", never drawn as a zero bar. Colours from
    `figure_style.color_for`: `candidate` (the label of the model judged, e.g. notebook 04's student) gives ours.
    With no score of ours at all, the figure says why above the plot (`figure_style.note_missing_ours`)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from . import figure_style

    figure_style.apply()
    sets = [s for s in [*PAPER_SET_NAMES, "all"] if s in set(summary["set"])] + \
        [s for s in summary["set"].drop_duplicates() if s not in PAPER_SET_NAMES and s != "all"]
    if not sets:
        sets = [*PAPER_SET_NAMES, "all"]
    ours_color = figure_style.color_for(candidate) if candidate else figure_style.color_for("ours (candidate)")
    series = []                                   # (label, values, low, high, colour, hatch)
    for ref in summary["reference"].drop_duplicates():
        part = summary[summary["reference"] == ref].set_index("set").reindex(sets)
        orders = part[["relative_candidate_first_pct", "relative_reference_first_pct"]].astype(float)
        series.append((f"ours vs {ref}" + (f": {candidate}" if candidate else ""),
                       part["relative_mean_pct"].astype(float).tolist(), orders.min(axis=1).tolist(),
                       orders.max(axis=1).tolist(), ours_color, None))
    for model in ("Orca-13B", "Vicuna-13B"):
        part = paper[(paper["paper_reference"] == paper_reference) & (paper["paper_model"] == model)]
        values = part.set_index("set").reindex(sets)["value"].astype(float)
        unverified = part["shown"].astype(str).str.contains("unverified").any()
        series.append((f"paper: {model} vs {paper_reference}" + (" (unverified)" if unverified else ""),
                       values.tolist(), [np.nan] * len(sets), [np.nan] * len(sets),
                       figure_style.color_for(model), figure_style.PAPER_HATCH))
    height = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.35 * len(sets) * len(series) + 1)))
    handles = []
    for k, (label, values, lo, hi, color, hatch) in enumerate(series):
        y = [len(sets) - 1 - i + 0.4 - height / 2 - k * height for i in range(len(sets))]   # first set on top
        handles.append(figure_style.hbars(ax, y, values, lo, hi, height, label, color, hatch=hatch))
    names = {**PAPER_SET_NAMES, "all": "Average (all sets)"}
    ax.set_yticks([len(sets) - 1 - i for i in range(len(sets))], [names.get(s, s) for s in sets])
    ax.set_ylim(-0.6, len(sets) - 0.4)
    ax.axvline(100, color="0.4", lw=0.8, ls="--")
    top = np.nanmax([v for _label, values, _lo, hi, _c, _h in series for v in [*values, *hi]] + [100.0])
    ax.set_xlim(0, max(110.0, 10 * np.ceil(top / 10) + 5))
    ax.set_xlabel("score relative to the reference (%): candidate total / reference total\n"
                  "ours: mean of both orders, error bar: the two orders; n/a: missing")
    ax.set_title(f"Open-ended generation relative to the reference (paper: {paper_reference}, GPT-4 as judge)")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)
    fig.tight_layout()
    ours = [v for label, values, *_rest in series if label.startswith("ours") for v in values]
    if all(v != v for v in ours):                                     # NaN: no score of ours (or none at all)
        figure_style.note_missing_ours(fig, ours, _no_relative_score_reason(summary))
    return fig


def judge_against_references(prompts: pd.DataFrame, candidates: pd.DataFrame, references: list, judge, endpoint,
                             cache_path, max_cost_usd: float | None = None, retries: int = 1
                             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """For each reference model: its answers (teacher client, cached), then the judge in both orders.

    `endpoint`: the `ModelEndpoints` of `judge.serve_models` (each model asked where it lives: a stand-in at the
    local server, a real-endpoint model at its endpoint), or one `TeacherEndpointParams` for every model.
    Returns (reference answers, verdicts, per-set summary), each with a `reference` column (the model's label).
    With `judge` None, only the answers are produced (verdicts and summary are empty).
    """
    from .judge import aggregate_verdicts, judge_pairs, teacher_chat_fn

    answers, verdicts, summaries = [], [], []
    for ref in references:
        chat = teacher_chat_fn(ref, endpoint, cache_path, max_cost_usd, desc=f"reference {ref.model}")
        refs = answer_with_chat(prompts, chat).assign(reference=ref.label)
        answers.append(refs)
        if judge is None:
            continue
        pairs = build_pairs(prompts, candidates, refs)
        judge_chat = teacher_chat_fn(judge, endpoint, cache_path, max_cost_usd, desc=f"judge vs {ref.model}")
        v = judge_pairs(pairs, judge_chat, retries=retries).assign(reference=ref.label)
        s = aggregate_verdicts(v, pairs)
        s.insert(0, "reference", ref.label)
        s["n_reference_failed"] = pairs.attrs["n_dropped"]
        verdicts.append(v)
        summaries.append(s)
    cat = lambda xs: pd.concat(xs, ignore_index=True) if xs else pd.DataFrame()  # noqa: E731
    return cat(answers), cat(verdicts), cat(summaries)


def judge_candidate(prompts: pd.DataFrame, candidate: CandidateAnswers, cfg, cache_path
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`judge_against_references` for the notebook's candidate, with stand-in references and judge served by the
    local OpenAI-compatible server for the duration (a model the candidate already loaded is reused) and
    real-endpoint ones asked at their endpoint: any mix of both kinds."""
    from .judge import serve_models

    with serve_models([*cfg.references, cfg.judge], cfg.endpoint, cfg.student_model, cfg.device,
                      candidate.loaded) as endpoints:
        return judge_against_references(prompts, candidate.answers, cfg.references, cfg.judge, endpoints,
                                        cache_path, cfg.max_cost_usd, cfg.judge_retries)


def judge_label(cfg) -> str:
    return cfg.judge.label if cfg.judge else "no judge"


def provenance_line(cfg, candidate_label: str, full_sizes: dict, n_prompts: int) -> str:
    """The line under notebook 07's tables and figure: candidate, references, judge and template, data."""
    from .judge import VICUNA_V1

    return (f"candidate: {candidate_label}; references: {', '.join(r.label for r in cfg.references)}; "
            f"judge: {judge_label(cfg)} ({VICUNA_V1.name}); data: {', '.join(full_sizes)} "
            f"({n_prompts} prompts, seed {cfg.seed})")


def answers_table(candidates: pd.DataFrame, references: pd.DataFrame, candidate_label: str) -> pd.DataFrame:
    """Every answer, candidate's and references': id, role, model, status (the candidate's finish reason), answer."""
    answers = pd.concat([candidates.assign(role="candidate", model=candidate_label,
                                           status=candidates["finish_reason"]),
                         references.rename(columns={"reference": "model"}).assign(role="reference")],
                        ignore_index=True)
    return answers[["id", "role", "model", "status", "answer"]]


def relative_score_metrics(summary: pd.DataFrame, references: list) -> dict:
    """Slash-path metrics `open_ended/<reference model>/<set>/<figure>`; NaN becomes None (valid JSON)."""
    import math

    names = {r.label: r.model for r in references}
    keep = ["relative_candidate_first_pct", "relative_reference_first_pct", "relative_mean_pct", "flip_rate",
            "first_position_win_rate", "n_prompts", "n_paired", "n_unparseable", "n_errors", "n_retried",
            "candidate_len_words", "reference_len_words"]
    out = {}
    for row in summary.to_dict("records"):
        for k in keep:
            v = row[k]
            out[f"open_ended/{names.get(row['reference'], row['reference'])}/{row['set']}/{k}"] = \
                None if isinstance(v, float) and math.isnan(v) else v
    return out


def summary_metrics(prompts: pd.DataFrame, verdicts: pd.DataFrame, summary: pd.DataFrame, cfg,
                    candidate_label: str, full_sizes: dict) -> tuple[dict, dict[str, str]]:
    """(metrics, provenance) of notebook 07: prompts, whether a judge ran, the relative scores per reference and
    set (`relative_score_metrics`) and the share of verdicts left unparseable after the retry."""
    from .judge import VICUNA_V1

    metrics = {"open_ended/n_prompts": len(prompts), "open_ended/judged": cfg.judge is not None}
    if len(summary):
        metrics.update(relative_score_metrics(summary, cfg.references))
        metrics["open_ended/unparseable_share"] = float((verdicts["status"] == "unparseable").mean())
    from .provenance import Provenance, data_source, student_source, teacher_source

    sources = [student_source("candidate", candidate_label, cfg.student_model),   # untuned, or tuned from it
               *(teacher_source("reference", r) for r in cfg.references),
               *([teacher_source("judge", cfg.judge)] if cfg.judge is not None else []),
               *(data_source(name) for name in full_sizes)]
    return metrics, Provenance({"candidate": candidate_label, "judge": judge_label(cfg),
                                "references": "; ".join(r.label for r in cfg.references),
                                "judge_template": VICUNA_V1.name, "data": ", ".join(full_sizes)}, sources=sources)


def summary_lines(summary: pd.DataFrame, candidate_label: str) -> list[str]:
    """One line per reference over all sets: the relative score (mean of both orders), flip rate, unparseable."""
    overall = summary[summary["set"] == "all"] if len(summary) else summary
    return [f"{candidate_label} vs {row['reference']}: {row['relative_mean_pct']:.1f}% (mean of orders "
            f"{row['relative_candidate_first_pct']:.1f} / {row['relative_reference_first_pct']:.1f}), flip rate "
            f"{row['flip_rate']:.2f}, {row['n_unparseable']} unparseable of {2 * row['n_prompts']} verdicts"
            for row in overall.to_dict("records")]
