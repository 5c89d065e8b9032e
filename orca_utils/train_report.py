"""What notebook 04 shows about a training run: loss curves, a per-stage summary, generations before and after.

Reads the per-stage results that `orca_utils.train` writes (`stage{N}_result.json`), so it works the same whether
the stages ran in the notebook's process or under `accelerate launch`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .train_data import read_stage_table, split_heldout

__all__ = ["heldout_conversations", "loss_curves", "plot_loss_curves", "stage_metrics", "stage_summary",
           "generation_table"]


def heldout_conversations(cfg, upstream: Path, stage: int, n: int) -> tuple[list[str], list[list[dict]], list[str]]:
    """The first `n` held-out rows of a stage (the same split training used): ids, chat messages, references."""
    train_df, heldout = split_heldout(read_stage_table(upstream, stage), cfg.heldout_fraction,
                                      cfg.max_heldout_samples, cfg.seed + stage)
    rows = heldout.head(n)
    convs = [[{"role": "system", "content": r.system or ""}, {"role": "user", "content": r.user}]
             for r in rows.itertuples(index=False)]
    return rows["id"].astype(str).tolist(), convs, rows["response"].tolist()


def loss_curves(results: list[dict]) -> pd.DataFrame:
    """Long table: stage, global step (continued across stages), split (train / held-out), loss."""
    records, offset = [], 0
    for res in results:
        for h in res["history"]:
            for key, split in (("loss", "train"), ("eval_loss", "held-out")):
                if key in h:
                    records.append({"stage": res["stage"], "step": offset + h["step"], "split": split,
                                    "loss": h[key]})
        offset += res["steps"]
    return pd.DataFrame(records)


def plot_loss_curves(results: list[dict], title: str):
    import matplotlib.pyplot as plt

    from . import figure_style

    figure_style.apply()
    df = loss_curves(results)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (stage, split), part in df.groupby(["stage", "split"]):
        ax.plot(part["step"], part["loss"], marker="o" if split == "held-out" else None, ms=4,
                ls="-" if split == "train" else "--", label=f"stage {stage} {split}",
                color=figure_style.color_for(f"stage {stage}"))     # the colour of that stage's teacher
    boundary = results[0]["steps"] if len(results) > 1 else None
    if boundary:
        ax.axvline(boundary + 0.5, color="0.6", lw=0.8)
    ax.set(xlabel="optimizer step (stage 2 continues stage 1)", ylabel="loss (teacher tokens only)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def stage_metrics(result: dict) -> dict:
    """`metrics.json` entries of one stage's result: losses, steps, throughput, packing, and the batch (global,
    per device, accumulation, world size; absent from results saved before the global batch was a param)."""
    s = f"stage{result['stage']}"
    out = {f"{s}/train_loss": result["train_loss_final"], f"{s}/heldout_loss": result["eval_loss_final"],
           f"{s}/steps": result["steps"], f"{s}/tokens_per_s": result["tokens_per_s"],
           f"{s}/useful_tokens": result["useful_tokens"], f"{s}/samples_per_row": result["data"]["samples_per_row"]}
    data = result["data"]
    # the rows 02's funnel kept (the table 04 read): trained samples, held out, dropped for not fitting max_len
    out.update({f"{s}/{k}": data[k] for k in ("samples", "heldout_samples", "dropped") if data.get(k) is not None})
    if all(data.get(k) is not None for k in ("samples", "heldout_samples", "dropped")):
        out[f"{s}/table_rows"] = data["samples"] + data["heldout_samples"] + data["dropped"]
    out.update({f"{s}/{k}": result[k] for k in ("global_batch_size", "per_device_batch_size",
                                                "gradient_accumulation_steps", "world_size")
                if result.get(k) is not None})
    return out


def stage_summary(results: list[dict]) -> pd.DataFrame:
    keys = ["stage", "steps", "train_loss_final", "eval_loss_final", "useful_tokens", "tokens_per_s", "world_size",
            "global_batch_size", "gradient_accumulation_steps", "packer", "attn_implementation", "resumed_from"]
    rows = []
    for res in results:
        row = {k: res.get(k) for k in keys}
        row.update({f"data_{k}": v for k, v in res["data"].items() if k in ("samples", "rows", "samples_per_row",
                                                                              "fill", "truncated")})
        rows.append(row)
    return pd.DataFrame(rows)


def generation_table(ids: list[str], convs: list[list[dict]], references: list[str], before: list[str],
                     after: list[str], width: int = 160) -> pd.DataFrame:
    def cut(text: str) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    return pd.DataFrame({"id": ids, "user": [cut(c[-1]["content"]) for c in convs],
                         "teacher": [cut(r) for r in references], "student before": [cut(b) for b in before],
                         "student after": [cut(a) for a in after]})
