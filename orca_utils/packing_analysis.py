"""Notebook 03's analysis: which samples to measure, their token lengths, packing grids and paper-style figures.

The samples are 02's training files (`train_stage1/2.parquet`, columns `contracts.SAMPLE_COLUMNS`) when 02 has run;
otherwise an offline stand-in
built from the data root: FLAN-v2 CoT rows with their human-written rationale (+ "So the answer is ...") as the
response, and NIv2 instances with their reference output as the response, each paired with one of the paper's 16
system messages as 01 would. The stand-in is labelled as such (`SampleSource.teacher`), never as a GPT model.
Lengths come from `orca_utils.tokens` (the one serialization training uses) and packings from `orca_utils.packing`;
`summary_metrics` gives the notebook's metrics and provenance, `summary_line` its closing sentence.

One tokenization for 03 and 04 (`measure_tokenizers`): under the tokenizer 04 trains with (the student's, which
`tokens.tokenizer_fingerprint` recognises whatever spec loaded it: in the paper profile the LLaMA tokenizer IS the
student's), 02's tables are read from the token store (`orca_utils.train_data.token_store`, under
`train.token_store_dirs`), built here when 04 has not built it yet, opened when it has: the lengths 03 reports are
the token counts 04 packs, and 04's prepare step finds the store by its fingerprint and tokenizes nothing.
`tab_token_store` names each store (stage, tokenizer, fingerprint, rows, tokens). Other tokenizers (the LLaMA one
beside a non-LLaMA student) are measured in memory (`measure_lengths`): nothing is trained on them. The stores hold
whole samples; truncation at a max_len is `tokens.apply_overflow`, in 03's grid as in 04's training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .contracts import SAMPLE_COLUMNS, read_table, train_file
from .packing import pack_best_fit, pack_paper
from .tokens import apply_overflow, tokenize_frame

__all__ = ["SampleSource", "epoch_estimate", "length_summary", "length_tables", "load_samples", "measure_lengths",
           "measure_store_lengths", "measure_tokenizers", "token_store_root", "packing_grid",
           "plot_length_distributions", "plot_packing", "summary_metrics", "summary_line"]

FALLBACK_TEACHER = "data teacher (FLAN-v2 CoT human rationales, NIv2 reference outputs; offline stand-in)"


@dataclass
class SampleSource:
    frame: pd.DataFrame        # columns: system, user, response, collection, system_message_id, stage (02: id too)
    origin: str                # "02_augmentation" | "offline FLAN-v2 data"
    teacher: str               # human label of who wrote the responses
    folder: Path | None = None  # 02's folder when the samples are its training tables (what 04 trains on)


def _offline_samples(cfg, rows: int | None) -> pd.DataFrame:
    from .data import resolve_dataset
    from .flan import load_cot_dir, load_niv2_dir
    from .system_messages import SYSTEM_MESSAGES, assign_system_messages

    cot, _ = load_cot_dir(resolve_dataset("flan_cot", cfg.data_dir, cfg.offline).path)
    niv2, _ = load_niv2_dir(resolve_dataset("niv2", cfg.data_dir, cfg.offline).path)
    cot = cot.assign(response=cot["rationale"].where(cot["rationale"] != "", "") + "\nSo the answer is "
                     + cot["targets"] + ".")
    niv2 = niv2.assign(response=niv2["targets"])
    pool = pd.concat([cot, niv2], ignore_index=True)
    if rows is not None and rows < len(pool):       # keep NIv2 (small) whole where possible, sample the rest
        share = min(len(niv2), rows // 4)
        pool = pd.concat([niv2.sample(share, random_state=cfg.seed),
                          cot.sample(rows - share, random_state=cfg.seed)], ignore_index=True)
    ids = assign_system_messages(pool["collection"], pool["is_multiple_choice"], seed=cfg.seed)
    return pd.DataFrame({"system": [SYSTEM_MESSAGES[i] for i in ids], "user": pool["inputs"],
                         "response": pool["response"].str.strip(), "collection": pool["collection"],
                         "system_message_id": ids, "stage": 1})


def load_samples(cfg, run, fallback_rows: int | None = None) -> SampleSource:
    """02's training rows (both stages, column `stage`) if 02 ran with the current params, else the stand-in.

    02's rows are those 04 trains on: its `ok` rows (`status`, where the table has one), with their `id`.
    """
    folder = run.upstream("02_augmentation", required=False)
    if folder and all((folder / train_file(k)).exists() for k in (1, 2)):
        frames = [_ok_rows(read_table(folder, train_file(k), (*SAMPLE_COLUMNS, "id"), "02_augmentation"))
                  .assign(stage=k) for k in (1, 2)]
        frame = pd.concat(frames, ignore_index=True)
        teacher = "; ".join(f"stage {k}: {', '.join(sorted(map(str, f['teacher'].unique())))}"
                            for k, f in zip((1, 2), frames) if len(f))
        if len(frame):
            return SampleSource(frame, "02_augmentation", teacher, folder)
    return SampleSource(_offline_samples(cfg, fallback_rows), "offline FLAN-v2 data", FALLBACK_TEACHER)


def _ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows 04 reads of a training table (`orca_utils.train_data.load_stage_arrow`: status == ok)."""
    return frame[frame["status"] == "ok"].reset_index(drop=True) if "status" in frame.columns else frame


def measure_lengths(frame: pd.DataFrame, tokenizer, max_len_tokens: int, overflow: str,
                    chunk_rows: int = 20_000) -> pd.DataFrame:
    """Per row: prompt and response tokens (response with its EOS), total, and its status at `max_len_tokens`.

    The serialization is training's (`orca_utils.tokens.tokenize_samples`), run `chunk_rows` rows at a time and
    keeping only the two length arrays, so memory grows with the number of rows, not of tokens (all of FLAN-5M's
    token ids would be hundreds of GB); a row's lengths do not depend on its chunk.
    """
    from tqdm.auto import tqdm

    n = len(frame)
    p_len = np.zeros(n, dtype=np.int64)
    r_len = np.zeros(n, dtype=np.int64)
    starts = range(0, n, chunk_rows)
    for lo in tqdm(starts, desc="token lengths", unit="chunk", disable=len(starts) < 2):
        part = tokenize_frame(tokenizer, frame.iloc[lo:lo + chunk_rows], max_len_tokens=max_len_tokens,
                              overflow=overflow, progress=False)
        p_len[lo:lo + len(part.prompt_tokens_all)] = part.prompt_tokens_all
        r_len[lo:lo + len(part.response_tokens_all)] = part.response_tokens_all
    return _lengths_frame(frame, p_len, r_len, max_len_tokens, overflow)


def _lengths_frame(frame: pd.DataFrame, p_len: np.ndarray, r_len: np.ndarray, max_len_tokens: int,
                   overflow: str) -> pd.DataFrame:
    status, _ = apply_overflow(p_len, r_len, max_len_tokens, overflow)
    out = frame[["collection", "system_message_id", "stage"]].reset_index(drop=True).copy()
    out["prompt_tokens"] = p_len
    out["response_tokens"] = r_len
    out["total_tokens"] = out["prompt_tokens"] + out["response_tokens"]
    out["status"] = status
    return out


def token_store_root(run) -> list[Path]:
    """Where 04 looks for its token stores, in order (`orca_utils.train.token_store_dirs`): `<run root>/token_store`
    (or under 04's `data_cache_dir` when the profile sets one), where a missing store is built; then those of the run
    folders this run reuses."""
    from .train import token_store_dirs

    return token_store_dirs(run)


def measure_store_lengths(source: SampleSource, tokenizer, max_len_tokens: int, overflow: str,
                          store_root: Path | list[Path], num_proc: int = 1) -> tuple[pd.DataFrame, list]:
    """`measure_lengths`' table for 02's rows, read from each stage's token store (opened, or built with the
    function 04's prepare step uses: `orca_utils.train_data.token_store`), and the stores (one per stage).

    The store is found by its fingerprint (the stage table, the tokenizer and prompt format), so these are the
    token counts 04 packs whenever it trains with this tokenizer; rows are matched by `id`.
    """
    from .train_data import token_store

    if source.folder is None or "id" not in source.frame.columns:
        raise ValueError(f"measure_store_lengths: the samples ({source.origin}) are not 02's training tables")
    frame = source.frame
    p_len = np.zeros(len(frame), dtype=np.int64)
    r_len = np.zeros(len(frame), dtype=np.int64)
    stores = []
    for stage in sorted(frame["stage"].unique()):
        store = token_store(source.folder, int(stage), tokenizer, store_root, num_proc)
        mask = (frame["stage"] == stage).to_numpy()
        at = pd.Index(store.column("id")).get_indexer(frame.loc[mask, "id"].astype(str))
        if (at < 0).any() or mask.sum() != len(store):
            missing = frame.loc[mask, "id"].to_numpy()[at < 0]
            raise ValueError(f"{train_file(int(stage))}: {mask.sum()} rows here, {len(store)} in the token store "
                             f"{store.folder}" + (f"; row id {missing[0]!r} is not in it" if len(missing) else ""))
        prompt, response = store.lengths()
        p_len[mask], r_len[mask] = prompt[at], response[at]
        stores.append(store)
    return _lengths_frame(frame, p_len, r_len, max_len_tokens, overflow), stores


def measure_tokenizers(source: SampleSource, tokenizers: dict, trained_with, max_len_tokens: int, overflow: str,
                       store_root: Path | list[Path] | None) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """({tokenizer name: lengths table}, the token stores read): under a tokenizer that tokenizes like
    `trained_with` (the student's, what 04 trains with; same `tokenizer_fingerprint`), 02's rows come from the
    token store 04 packs (`measure_store_lengths`); under others, and for the offline stand-in (04 never trains on
    it), they are measured in memory. `store_root` None: no store at all."""
    from .tokens import tokenizer_fingerprint

    student = tokenizer_fingerprint(trained_with)
    lengths, rows = {}, []
    for name, tok in tokenizers.items():
        if store_root is not None and source.folder is not None and tokenizer_fingerprint(tok) == student:
            lengths[name], stores = measure_store_lengths(source, tok, max_len_tokens, overflow, store_root)
            rows += [{"tokenizer": name, "stage": s.meta["stage"], "fingerprint": s.fingerprint, "rows": len(s),
                      "tokens": s.meta["tokens"], "prompt_format": s.meta["prompt_format"],
                      "tokenized": "here" if s.built else "before (reused)"}
                     for s in stores]
        else:
            lengths[name] = measure_lengths(source.frame, tok, max_len_tokens, overflow)
    columns = ["tokenizer", "stage", "fingerprint", "rows", "tokens", "prompt_format", "tokenized"]
    return lengths, pd.DataFrame(rows, columns=columns)


def length_summary(lengths: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """count / mean / median / p90 / p99 / max of prompt, response and total tokens (optionally per group)."""
    stats = {"mean": "mean", "median": "median", "p90": lambda x: x.quantile(0.9),
             "p99": lambda x: x.quantile(0.99), "max": "max"}
    groups = lengths.groupby(by) if by else [("all", lengths)]
    rows = []
    for key, part in groups:
        row = {by or "group": key, "samples": len(part)}
        for col in ("prompt_tokens", "response_tokens", "total_tokens"):
            for name, fn in stats.items():
                row[f"{col.split('_')[0]}_{name}"] = round(float(part[col].agg(fn)), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def length_tables(lengths_by_tokenizer: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """{table name: length summary}: per tokenizer, per collection and tokenizer, and per system message under the
    first tokenizer (the LLaMA one), each with a `tokenizer` column."""
    first = next(iter(lengths_by_tokenizer))
    return {"tab_lengths": pd.concat([length_summary(df).assign(tokenizer=name)
                                      for name, df in lengths_by_tokenizer.items()]),
            "tab_lengths_by_collection": pd.concat([length_summary(df, "collection").assign(tokenizer=name)
                                                    for name, df in lengths_by_tokenizer.items()]),
            "tab_lengths_by_system_message": length_summary(lengths_by_tokenizer[first], "system_message_id")
            .assign(tokenizer=first)}


def packing_grid(lengths_by_tokenizer: dict[str, pd.DataFrame], max_lens: list[int], overflow: str,
                 seed: int) -> pd.DataFrame:
    """Both packers at each max_len, per tokenizer. Overlong samples follow the tokenizer's truncation policy."""
    rows = []
    for name, lengths in lengths_by_tokenizer.items():
        for max_len in max_lens:
            status, kept = apply_overflow(lengths["prompt_tokens"], lengths["response_tokens"], max_len, overflow)
            kept = kept[status != "dropped"]
            for plan in (pack_paper(kept, max_len, seed=seed), pack_best_fit(kept, max_len)):
                rows.append({"tokenizer": name, "max_len": max_len, "method": plan.method,
                             "samples": plan.n_samples, "truncated": int((status == "truncated").sum()),
                             "dropped": int((status == "dropped").sum()), "sequences": plan.n_sequences,
                             "lower_bound": plan.lower_bound, "packing_factor": round(plan.packing_factor, 3),
                             "padding_fraction": round(plan.padding_fraction, 4)})
    return pd.DataFrame(rows)


def epoch_estimate(grid: pd.DataFrame, lengths_by_tokenizer: dict[str, pd.DataFrame], max_len: int,
                   sequences_per_step: int, epochs: float, overflow: str = "truncate_response") -> pd.DataFrame:
    """Per tokenizer and packing method at `max_len`: tokens computed, tokens with a loss, optimizer steps."""
    rows = []
    for _, g in grid[grid["max_len"] == max_len].iterrows():
        lengths = lengths_by_tokenizer[g["tokenizer"]]
        status, kept = apply_overflow(lengths["prompt_tokens"], lengths["response_tokens"], max_len, overflow)
        loss_tokens = int((kept - lengths["prompt_tokens"].to_numpy())[status != "dropped"].sum())
        steps = int(np.ceil(g["sequences"] / sequences_per_step))
        rows.append({"tokenizer": g["tokenizer"], "method": g["method"], "sequences": int(g["sequences"]),
                     "tokens_per_epoch (padded)": int(g["sequences"]) * max_len,
                     "loss_tokens_per_epoch": loss_tokens, "steps_per_epoch": steps,
                     f"steps_{epochs:g}_epochs": int(np.ceil(steps * epochs))})
    return pd.DataFrame(rows)


def summary_metrics(source: SampleSource, lengths: dict[str, pd.DataFrame], grid: pd.DataFrame,
                    estimate: pd.DataFrame, max_len: int, paper_factor: float | None,
                    stores: pd.DataFrame | None = None) -> tuple[dict, dict[str, str]]:
    """(metrics, provenance) of notebook 03: mean token lengths, both packers' packing factor and padding at
    `max_len` under the LLaMA tokenizer (the first of `lengths`), best-fit under the student's tokenizer (when
    measured), and the steps of one epoch. `stores` (`measure_tokenizers`' table): the provenance names the token
    stores the lengths were read from (the ones 04 packs), and the max_len analysed."""
    llama_name = next(iter(lengths))
    at = grid[grid["max_len"] == max_len]
    llama_at = {m: at[(at["tokenizer"] == llama_name) & at["method"].str.startswith(m)].iloc[0]
                for m in ("paper", "best")}
    llama = lengths[llama_name]
    metrics = {"samples/rows": len(source.frame), "samples/from_02": source.origin == "02_augmentation",
               "lengths/llama/prompt_mean": float(llama["prompt_tokens"].mean()),
               "lengths/llama/response_mean": float(llama["response_tokens"].mean()),
               "lengths/llama/total_mean": float(llama["total_tokens"].mean()),
               "packing/llama/max_len": max_len,
               "packing/llama/paper/packing_factor": float(llama_at["paper"]["packing_factor"]),
               "packing/llama/paper/padding_fraction": float(llama_at["paper"]["padding_fraction"]),
               "packing/llama/best_fit/packing_factor": float(llama_at["best"]["packing_factor"]),
               "packing/llama/best_fit/padding_fraction": float(llama_at["best"]["padding_fraction"]),
               "packing/llama/truncated": int(llama_at["best"]["truncated"]),
               "packing/llama/dropped": int(llama_at["best"]["dropped"]),
               "packing/paper_reference/packing_factor": paper_factor,
               "epoch/llama/best_fit/steps_per_epoch":
                   int(estimate[(estimate["tokenizer"] == llama_name)]["steps_per_epoch"].iloc[-1])}
    for name, df in list(lengths.items())[1:]:
        row = at[(at["tokenizer"] == name) & at["method"].str.startswith("best")].iloc[0]
        metrics |= {"lengths/student/total_mean": float(df["total_tokens"].mean()),
                    "packing/student/best_fit/packing_factor": float(row["packing_factor"]),
                    "packing/student/best_fit/padding_fraction": float(row["padding_fraction"])}
    from .provenance import Provenance, data_source

    fields = {"data": source.origin, "teacher": source.teacher, "tokenizers": ", ".join(lengths),
              "max_len": f"{max_len} tokens (grid: {', '.join(str(v) for v in sorted(grid['max_len'].unique()))})"}
    if stores is not None and len(stores):
        fields["token_store"] = "; ".join(f"stage {r.stage} {r.fingerprint} ({r.tokenizer}, {r.prompt_format})"
                                          for r in stores.itertuples())
    return metrics, Provenance(fields,
                               sources=[data_source(source.origin),              # token counts: no model
                                        *(data_source(name, "tokenizer") for name in lengths)])


def summary_line(metrics: dict, origin: str, paper_text: str) -> str:
    """One sentence: samples, and both packers at the paper's max_len under the LLaMA tokenizer beside the paper."""
    paper_pf, paper_pad = (metrics[f"packing/llama/paper/{k}"] for k in ("packing_factor", "padding_fraction"))
    best_pf, best_pad = (metrics[f"packing/llama/best_fit/{k}"] for k in ("packing_factor", "padding_fraction"))
    return (f"{metrics['samples/rows']:,} samples ({origin}); at max_len {metrics['packing/llama/max_len']} under the "
            f"LLaMA tokenizer: paper's method {paper_pf:.2f} samples/seq ({100 * paper_pad:.1f}% padding), best-fit "
            f"{best_pf:.2f} ({100 * best_pad:.2f}% padding); paper: {paper_text}")


def plot_length_distributions(lengths: pd.DataFrame, title: str):
    """Paper-style panels: prompt vs response histogram, totals by collection, totals by system message."""
    import matplotlib.pyplot as plt

    from . import figure_style

    figure_style.apply()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    top = max(int(lengths["total_tokens"].quantile(0.995)), 8)
    bins = np.linspace(0, top, 50)
    for col in ("prompt_tokens", "response_tokens"):
        colour = figure_style.color_for(col.split("_")[0])
        axes[0].hist(lengths[col].clip(upper=top), bins=bins, alpha=0.6, color=colour, label=col.split("_")[0])
    axes[0].set(xlabel="tokens", ylabel="samples", title="prompt (system + user) vs response")
    axes[0].legend()
    groups = sorted(lengths["collection"].unique())
    axes[1].boxplot([lengths.loc[lengths["collection"] == g, "total_tokens"] for g in groups],
                    tick_labels=groups, showfliers=False)
    axes[1].set(ylabel="tokens per sample", title="by collection")
    ids = sorted(lengths["system_message_id"].unique())
    axes[2].boxplot([lengths.loc[lengths["system_message_id"] == i, "response_tokens"] for i in ids],
                    tick_labels=[str(i) for i in ids], showfliers=False)
    axes[2].set(xlabel="system message id", ylabel="response tokens", title="responses by system message")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_packing(grid: pd.DataFrame, paper_factor: float | None, paper_label: str, title: str):
    """Packing factor and padding fraction against max_len, one line per (tokenizer, method)."""
    import matplotlib.pyplot as plt

    from . import figure_style

    figure_style.apply()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for (tok, method), part in grid.groupby(["tokenizer", "method"]):
        style = "-" if method.startswith("best") else "--"
        colour = figure_style.color_for(str(tok))         # one colour per tokenizer, line style per method
        axes[0].plot(part["max_len"], part["packing_factor"], style, marker="o", color=colour,
                     label=f"{method} / {tok}")
        axes[1].plot(part["max_len"], 100 * part["padding_fraction"], style, marker="o", color=colour,
                     label=f"{method} / {tok}")
    if paper_factor is not None:
        axes[0].scatter([2048], [paper_factor], marker="*", s=200, color="black", zorder=5, label=paper_label)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(grid["max_len"].unique()), [str(v) for v in sorted(grid["max_len"].unique())])
        ax.set_xlabel("max_len (tokens)")
    axes[0].set(ylabel="samples per sequence", title="packing factor")
    axes[1].set(ylabel="% of positions that are padding", title="padding")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
