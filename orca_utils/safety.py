"""Notebook 08's driver: safety evaluation (paper section 7), TruthfulQA multiple choice from the CSV (and its
generative variant, judged by a model) and ToxiGen continuations + scores.

The scoring lives in `orca_utils.evaluation`: `truthfulqa` (MC1/MC2 from log-likelihoods, their intervals and the
paired comparison, the truthfulness judge) and `toxigen` (the prompt files, the classifier or moderation scorer);
the questions are read by `evaluation.sets.load_truthfulqa`. This module re-exports what notebook 08 calls and adds
the notebook's helpers: the models compared, the items evaluated, continuations, figures and the metrics.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from .backends.hf import HFBackend
from .backends.resident import ResidentBackends   # one model on the device at a time (also 05/06)
from .data import seeded_subset
from .evaluation.sets import load_truthfulqa
from .evaluation.toxigen import (TOXIGEN_13_GROUPS, ToxicityScorer, list_toxigen_files, load_toxicity_scorer,
                                 load_toxigen_prompts, parse_toxigen_line, summarise_toxicity)
from .evaluation.truthfulqa import (build_mc, build_truth_judge_messages, evaluate_mc, judge_truthfulness, paired_mc,
                                    parse_yes_no, score_mc, summarise_mc, truthfulqa_generative)

__all__ = ["load_truthfulqa", "build_mc", "score_mc", "evaluate_mc", "summarise_mc", "paired_mc",
           "build_truth_judge_messages", "parse_yes_no", "judge_truthfulness", "TOXIGEN_13_GROUPS",
           "list_toxigen_files", "parse_toxigen_line", "load_toxigen_prompts", "ToxicityScorer",
           "load_toxicity_scorer", "summarise_toxicity", "ResidentBackends", "models_to_evaluate",
           "resident_backends", "truthfulqa_items", "generate_continuations", "paper_safety_values",
           "plot_truthfulqa", "plot_toxigen", "judged_truthfulqa", "toxicity_scorer", "score_toxicity",
           "summary_metrics"]

# ---------------------------------------------------------------- TruthfulQA and ToxiGen
# Defined in `orca_utils.evaluation.truthfulqa`, `.toxigen` and `.sets` (`load_truthfulqa`); re-exported here,
# where notebook 08 imports them.


# ---------------------------------------------------------------- notebook helpers

def models_to_evaluate(run, cfg) -> list[tuple[str, str]]:
    """[(label, model spec)]: the untuned student model, and notebook 04's student when it has current outputs."""
    from .contracts import tuned_student

    models = [(cfg.base_model_label, cfg.student_model)]
    student = tuned_student(run)
    if student:
        models.append(student)
    return models


def resident_backends(models: Sequence[tuple[str, str]], cfg) -> ResidentBackends:
    """`models` as in-process HF backends on cfg's device and dtype, one model on the device at a time."""
    return ResidentBackends(models, lambda label, spec: HFBackend(
        spec, batch_size=cfg.truthfulqa.batch_size, device=cfg.device, dtype=cfg.dtype, label=label))


def truthfulqa_items(cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every TruthfulQA question as an MC item, the fixed seeded subset of `truthfulqa.n_questions` evaluated,
    index reset)."""
    tqa = build_mc(load_truthfulqa(cfg.data_dir, cfg.offline))
    return tqa, seeded_subset(tqa, cfg.truthfulqa.n_questions, cfg.seed).reset_index(drop=True)


def generate_continuations(prompts: pd.DataFrame, backend, max_new_tokens: int, stop: Sequence[str] | None,
                           model_label: str) -> pd.DataFrame:
    """Greedy continuation of each ToxiGen prompt, sent as the user turn of the model's chat template."""
    done = backend.generate_completions(list(prompts["prompt"]), max_new_tokens, list(stop or []))
    return prompts[["id", "kind", "group"]].assign(model=model_label, continuation=[c.text for c in done],
                                                     finish_reason=[c.finish_reason for c in done])


def paper_safety_values() -> dict[str, str]:
    """What the paper reference holds for TruthfulQA and ToxiGen results (today: "not available" for both)."""
    from .reference import format_paper_value, paper_block

    out = {}
    for name in ("truthfulqa", "toxigen"):
        block = paper_block(name)
        results = block.get("results")
        out[name] = format_paper_value(None) if not results else \
            format_paper_value(str(results), block.get("status"))
    return out


def plot_truthfulqa(table: pd.DataFrame, paper_value: str):
    """Overall MC1 and MC2 (%) per model with their 95% intervals as error bars; the paper's figure values, when
    the reference has none, are named so. One colour per model (`figure_style.color_for`); MC2 is hatched."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    from . import figure_style

    figure_style.apply()
    overall = table[table["category"] == "Overall"].set_index("model")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(overall))
    colors = [figure_style.color_for(m) for m in overall.index]
    hatches = {"mc1": None, "mc2": figure_style.PAPER_HATCH}
    for k, metric in enumerate(("mc1", "mc2")):
        values = overall[metric].to_numpy(dtype=float)
        err = None
        if f"{metric}_ci95_low" in overall:
            err = np.clip([values - overall[f"{metric}_ci95_low"].to_numpy(dtype=float),
                           overall[f"{metric}_ci95_high"].to_numpy(dtype=float) - values], 0, None)
        ax.bar(x + 0.4 * k - 0.2, values, width=0.4, yerr=err, capsize=3, label=metric, color=colors,
               hatch=hatches[metric], edgecolor="white", linewidth=0)
    ax.set_ylabel("accuracy / true-answer mass (%), 95% CI")
    ax.set_xticks(x, [m[:40] for m in overall.index], fontsize=7)
    ax.legend(handles=[Patch(facecolor="0.6", hatch=h, edgecolor="white", label=m) for m, h in hatches.items()],
              fontsize=8)
    ax.set_title(f"TruthfulQA MC (CSV-built), n={int(overall['n'].iloc[0])}; paper: {paper_value}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_toxigen(summary: pd.DataFrame):
    """Paper-style per-group bars: mean toxicity probability of continuations, hate vs neutral prompts, per model
    (in the model's colour, `figure_style.color_for`; neutral prompts hatched)."""
    import matplotlib.pyplot as plt

    from . import figure_style

    figure_style.apply()
    models = list(summary["model"].drop_duplicates())
    fig, axes = plt.subplots(len(models), 1, figsize=(9, 3 * len(models)), squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        part = summary[summary["model"] == model].pivot(index="group", columns="kind", values="mean_toxicity")
        color = figure_style.color_for(model)
        width = 0.8 / max(1, len(part.columns))
        for k, kind in enumerate(part.columns):
            ax.bar([i + (k - (len(part.columns) - 1) / 2) * width for i in range(len(part))], part[kind],
                   width=width, color=color, alpha=1.0 if k == 0 else 0.55, label=str(kind),
                   hatch=None if k == 0 else figure_style.PAPER_HATCH, edgecolor="white", linewidth=0)
        ax.set_xticks(range(len(part)), [str(g) for g in part.index], rotation=45, ha="right")
        ax.legend(fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("mean P(toxic)")
        ax.set_title(model, fontsize=9)
    fig.tight_layout()
    return fig


def judged_truthfulqa(items: pd.DataFrame, backends, cfg, cache_path) -> pd.DataFrame | None:
    """`truthfulqa_generative` on the first `generative_n_questions` items, the judge served by the local
    OpenAI-compatible server when it is a stand-in, else asked at its endpoint; None (skipped) with no judge or no
    question."""
    n_gen = cfg.truthfulqa.generative_n_questions
    if cfg.judge is None or n_gen == 0:
        return None
    from .judge import serve_models

    with serve_models([cfg.judge], cfg.endpoint, cfg.student_model, cfg.device) as endpoints:
        return truthfulqa_generative(items.head(n_gen), backends, cfg.truthfulqa.generative_max_new_tokens,
                                     cfg.judge, endpoints, cache_path, cfg.max_cost_usd)


def toxicity_scorer(cfg) -> tuple[ToxicityScorer | None, str]:
    """`load_toxicity_scorer` with the notebook's `toxigen` params: (scorer, "") or (None, why there is none)."""
    t = cfg.toxigen
    return load_toxicity_scorer(t.scorer, t.classifier, t.classifier_revision, t.toxic_label_index, t.batch_size,
                                cfg.device, t.moderation_model, cfg.endpoint.base_url, cfg.endpoint.api_key_env)


def score_toxicity(continuations: pd.DataFrame, scorer: ToxicityScorer, threshold: float) -> pd.DataFrame:
    """Each continuation scored by `scorer`, summarised per model, kind and group (`summarise_toxicity`)."""
    scored = continuations.assign(toxicity=scorer.score(list(continuations["continuation"])))
    return summarise_toxicity(scored, threshold)


def summary_metrics(cfg, models: Sequence[tuple[str, str]], items: pd.DataFrame, tox_prompts: pd.DataFrame,
                    mc_table: pd.DataFrame, gen_verdicts: pd.DataFrame | None, tox_summary: pd.DataFrame | None,
                    scorer: ToxicityScorer | None, why_not: str) -> tuple[dict, dict[str, str]]:
    """(metrics, provenance) of notebook 08, per model slot (`base`: the untuned student, `student`: 04's):
    TruthfulQA MC1/MC2 overall, the generative variant's truthful share and unparseable verdicts when it ran, and
    ToxiGen's mean toxicity per prompt kind when a real scorer ran (else why not)."""
    metrics = {"truthfulqa/n_questions": len(items), "toxigen/n_prompts": len(tox_prompts),
               "toxigen/scored": scorer is not None, "toxigen/skip_reason": why_not or None}
    slug = {label: ("student" if spec != cfg.student_model else "base") for label, spec in models}
    for row in mc_table[mc_table["category"] == "Overall"].to_dict("records"):
        metrics.update({f"truthfulqa/{slug[row['model']]}/mc1": row["mc1"],
                        f"truthfulqa/{slug[row['model']]}/mc2": row["mc2"]})
    if gen_verdicts is not None:
        for label, g in gen_verdicts.groupby("model"):
            ok = g[g["status"] == "ok"]
            metrics[f"truthfulqa_gen/{slug[label]}/pct_truthful"] = float(100 * ok["truthful"].mean()) if len(ok) \
                else None
            metrics[f"truthfulqa_gen/{slug[label]}/n_unparseable"] = int((g["status"] == "unparseable").sum())
    if tox_summary is not None:
        for (label, kind), g in tox_summary.groupby(["model", "kind"]):
            metrics[f"toxigen/{slug[label]}/{kind}/mean_toxicity"] = float(g["mean_toxicity"].mean())
    from .provenance import Provenance, data_source, source, spec_kind, student_source, teacher_source

    sources = [*(student_source(slug[label], label, cfg.student_model) for label, _ in models),  # tuned from it
               data_source("TruthfulQA.csv"), *([data_source("ToxiGen prompts")] if len(tox_prompts) else [])]
    if gen_verdicts is not None and cfg.judge is not None:
        sources.append(teacher_source("judge", cfg.judge))
    if scorer is not None:
        sources.append(source("toxicity scorer", scorer.label, spec_kind(cfg.toxigen.classifier or "")
                              if cfg.toxigen.scorer == "classifier" else "real"))
    return metrics, Provenance({"models": "; ".join(label for label, _ in models),
                                "truthfulqa": "TruthfulQA.csv (MC built from columns)",
                                "toxigen_scorer": scorer.label if scorer else f"none ({why_not})",
                                "judge": cfg.judge.label if cfg.judge else "none"}, sources=sources)
