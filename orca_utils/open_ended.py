"""Open-ended prompt sets of the Orca paper's section 4 (Vicuna, Awesome ChatGPT prompts, WizardLM), one table each.

Every loader returns the same columns: `id` (str, unique within the set), `set` (the set's name), `category`
(Vicuna's category, WizardLM's skill, Awesome's "act"), `prompt` (the single-turn user message).

| set | local file (under the data root) | hub layout | rows here | rows in the paper |
|---|---|---|---|---|
| `vicuna_bench` | `vicuna_bench/question.jsonl` (FastChat) | none | 80 | 80 |
| `awesome_prompts` | `awesome_prompts/prompts.csv` (act, prompt) | `fka/awesome-chatgpt-prompts` (same) | 152 | 164 |
| `wizardlm` | `wizardlm/WizardLM_testset.jsonl` | none | 218 | 218 |

The offline Awesome ChatGPT prompts snapshot (2023-02-27) holds 152 prompts; the paper used a later snapshot with
164, which is not available offline: our Awesome numbers are on 152 prompts (12 fewer than the paper's).
The hub copy of Awesome prompts is the live list (far more than 164 today), so its count differs again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .data import resolve_dataset, seeded_subset
from .judge import VICUNA_V1, build_judge_messages, load_fastchat_templates   # re-exported for notebook 07

__all__ = ["PROMPT_SETS", "PAPER_SET_SIZES", "PAPER_SET_NAMES", "load_prompt_set", "load_prompt_sets",
           "select_subset", "CandidateAnswers", "candidate_answers", "judge_candidate", "paper_relative_scores",
           "plot_relative_scores", "provenance_line", "answers_table", "summary_metrics", "summary_lines",
           "VICUNA_V1", "build_judge_messages", "load_fastchat_templates"]

PROMPT_SETS = ("vicuna_bench", "awesome_prompts", "wizardlm")
PAPER_SET_SIZES = {"vicuna_bench": 80, "awesome_prompts": 164, "wizardlm": 218}
# How the paper's table names each set (rows of `orca_utils.reference` block `open_ended`).
PAPER_SET_NAMES = {"vicuna_bench": "Vicuna Prompts", "awesome_prompts": "Awesome Prompts",
                   "wizardlm": "WizardLM Prompts"}
COLUMNS = ["id", "set", "category", "prompt"]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
    return rows


def _find(root: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of `names` under `root` (the local layout, then a hub snapshot's), or a clear error."""
    for name in names:
        for candidate in [root / name, *sorted(root.rglob(name))]:
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{what}: none of {list(names)} found under {root}")


def _require(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; has {sorted(row)}")


def _load_vicuna(root: Path) -> pd.DataFrame:
    path = _find(root, ("question.jsonl",), "vicuna_bench")
    rows = []
    for i, row in enumerate(_read_jsonl(path), 1):
        _require(row, ("question_id", "category", "turns"), f"{path}: row {i}")
        if not row["turns"] or not str(row["turns"][0]).strip():
            raise ValueError(f"{path}: row {i}: empty 'turns'")
        rows.append({"id": f"vicuna-{row['question_id']}", "category": row["category"], "prompt": row["turns"][0]})
    return pd.DataFrame(rows)


def _load_awesome(root: Path) -> pd.DataFrame:
    path = _find(root, ("prompts.csv",), "awesome_prompts")
    df = pd.read_csv(path, keep_default_na=False)
    if not {"act", "prompt"} <= set(df.columns):
        raise ValueError(f"{path}: expected columns 'act' and 'prompt', got {list(df.columns)}")
    df = df[df["prompt"].str.strip() != ""].reset_index(drop=True)
    return pd.DataFrame({"id": [f"awesome-{i + 1}" for i in range(len(df))], "category": df["act"],
                         "prompt": df["prompt"]})


def _load_wizardlm(root: Path) -> pd.DataFrame:
    path = _find(root, ("WizardLM_testset.jsonl",), "wizardlm")
    rows = []
    for i, row in enumerate(_read_jsonl(path), 1):
        _require(row, ("idx", "Skill", "Instruction"), f"{path}: row {i}")
        rows.append({"id": f"wizardlm-{row['idx']}", "category": row["Skill"], "prompt": row["Instruction"]})
    return pd.DataFrame(rows)


_LOADERS = {"vicuna_bench": _load_vicuna, "awesome_prompts": _load_awesome, "wizardlm": _load_wizardlm}


def load_prompt_set(name: str, data_dir: str | None = None, offline: bool = False) -> pd.DataFrame:
    """One prompt set as a DataFrame with columns id, set, category, prompt (in the file's order)."""
    if name not in _LOADERS:
        raise ValueError(f"prompt set {name!r}: expected one of {list(PROMPT_SETS)}")
    location = resolve_dataset(name, data_dir, offline)
    df = _LOADERS[name](Path(location.path))
    df.insert(1, "set", name)
    if df["id"].duplicated().any():
        raise ValueError(f"{name} ({location.path}): duplicate ids {df.loc[df['id'].duplicated(), 'id'].tolist()[:5]}")
    df.attrs["origin"] = location.origin
    return df[COLUMNS]


def select_subset(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A fixed, seeded subset of `n` rows (all rows when n is None or >= len), kept in the file's order, index reset
    (`orca_utils.data.seeded_subset`)."""
    return seeded_subset(df, n, seed).reset_index(drop=True)


def load_prompt_sets(names: list[str] | tuple[str, ...], n_per_set: int | None, seed: int,
                     data_dir: str | None = None, offline: bool = False,
                     max_prompt_chars: int | None = None) -> pd.DataFrame:
    """The chosen sets, each cut to a fixed seeded subset, stacked into one table.

    `max_prompt_chars` (a smoke-profile economy) draws each subset from the prompts at most that long only.
    """
    frames = []
    for name in names:
        df = load_prompt_set(name, data_dir, offline)
        if max_prompt_chars is not None:
            df = df[df["prompt"].str.len() <= max_prompt_chars]
            if df.empty:
                raise ValueError(f"{name}: no prompt is at most {max_prompt_chars} characters long")
        frames.append(select_subset(df, n_per_set, seed))
    return pd.concat(frames, ignore_index=True)


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


def plot_relative_scores(summary: pd.DataFrame, paper: pd.DataFrame, candidate: str | None = None,
                         paper_reference: str = "ChatGPT"):
    """The paper's way (its Figures 3-4): per prompt set, horizontal bars of each model's score relative to a
    reference (%), ours beside the paper's. Ours: mean of both orders, error bar spanning the two orders (the
    position bias); the paper's Orca-13B and Vicuna-13B relative to `paper_reference` (hatched, recalled values
    marked unverified). A missing value is written "n/a", never drawn as a zero bar. Colours from
    `figure_style.color_for`: `candidate` (the label of the model judged, e.g. notebook 04's student) gives ours."""
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
    return fig


def judge_against_references(prompts: pd.DataFrame, candidates: pd.DataFrame, references: list, judge, endpoint,
                             cache_path, max_cost_usd: float | None = None, retries: int = 1
                             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """For each reference model: its answers (teacher client, cached), then the judge in both orders.

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
    local OpenAI-compatible server for the duration (a model the candidate already loaded is reused)."""
    from .judge import serve_models

    with serve_models([*cfg.references, cfg.judge], cfg.endpoint, cfg.student_model, cfg.device,
                      candidate.loaded) as endpoint:
        return judge_against_references(prompts, candidate.answers, cfg.references, cfg.judge, endpoint, cache_path,
                                        cfg.max_cost_usd, cfg.judge_retries)


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
    return metrics, {"candidate": candidate_label, "judge": judge_label(cfg),
                     "references": "; ".join(r.label for r in cfg.references),
                     "judge_template": VICUNA_V1.name, "data": ", ".join(full_sizes)}


def summary_lines(summary: pd.DataFrame, candidate_label: str) -> list[str]:
    """One line per reference over all sets: the relative score (mean of both orders), flip rate, unparseable."""
    overall = summary[summary["set"] == "all"] if len(summary) else summary
    return [f"{candidate_label} vs {row['reference']}: {row['relative_mean_pct']:.1f}% (mean of orders "
            f"{row['relative_candidate_first_pct']:.1f} / {row['relative_reference_first_pct']:.1f}), flip rate "
            f"{row['flip_rate']:.2f}, {row['n_unparseable']} unparseable of {2 * row['n_prompts']} verdicts"
            for row in overall.to_dict("records")]
