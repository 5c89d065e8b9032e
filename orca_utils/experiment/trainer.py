"""Notebook 09's training: each style's responses tokenized once, the runs of one seed under both controls
(`plan_runs`), and the training loop of one run over the paper's packing (`train_run`)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .settings import CONTROLS, VARIANTS, Settings
from .student import build_student

__all__ = ["style_samples", "eos_in_loss", "plan_runs", "train_run"]


def style_samples(responses: pd.DataFrame, tokenizer, s: Settings) -> dict[str, Any]:
    """Each style's responses tokenized once (`orca_utils.tokens`: prompt masked, response + EOS as labels)."""
    from ..tokens import tokenize_samples

    out = {}
    for style, part in responses.groupby("style", sort=False):
        out[style] = tokenize_samples(tokenizer, part["system"].tolist(), part["user"].tolist(),
                                      part["response"].tolist(), max_len_tokens=s.seq_len_tokens)
    return out


def eos_in_loss(samples) -> int:
    """How many samples end with EOS as a label (a response cut by `seq_len_tokens` loses it)."""
    labels, ends = samples.labels_flat(), samples.offsets[1:] - 1
    return int((labels[ends] == samples.eos_token_id).sum())


def plan_runs(s: Settings, samples: dict[str, Any], seed: int) -> list[dict]:
    """The training runs of one seed: per control and variant, its stages [(style, optimizer steps)].

    same_epochs: `epochs` passes over each style's packed sequences (progressive: half short, then half full);
    same_tokens: `train_tokens` per variant, or the explanation student's same_epochs steps when null (that run is
    then identical in both controls and trained once: runs are named by their stages). Every control and variant
    is planned (the plan is cached per seed); `controls` and `skip_runs` select among them. A `larger_student` repeats
    the same_epochs answer-only and explanation runs at its size, as control `same_epochs@L<layers>H<hidden>`."""
    from ..packing import pack_paper

    per_epoch = {st: pack_paper(smp.lengths, s.seq_len_tokens, seed=0).n_sequences for st, smp in samples.items()}

    def passes(style: str, epochs: float) -> tuple[str, int]:
        return style, max(1, math.ceil(epochs * per_epoch[style] / s.batch_size))

    epochs_plan = {"answer_only": [passes("answer", s.epochs)], "explanation": [passes("full", s.epochs)],
                   "progressive": [passes("short", s.epochs / 2), passes("full", s.epochs / 2)]}
    total = s.train_tokens // s.tokens_per_step if s.train_tokens else epochs_plan["explanation"][0][1]
    total = max(2, total)
    tokens_plan = {"answer_only": [("answer", total)], "explanation": [("full", total)],
                   "progressive": [("short", total // 2), ("full", total - total // 2)]}
    runs = []
    for control in CONTROLS:
        for variant in VARIANTS:
            stages = (epochs_plan if control == "same_epochs" else tokens_plan)[variant]
            runs.append({"control": control, "variant": variant, "stages": stages, "size": None,
                         "name": f"seed{seed}_{variant}_" + "-".join(f"{st}{n}" for st, n in stages)})
    if s.larger_student:
        tag = f"L{s.larger_student['n_layers']}H{s.larger_student['hidden_size']}"
        for variant in ("answer_only", "explanation"):
            stages = epochs_plan[variant]
            runs.append({"control": f"same_epochs@{tag}", "variant": variant, "stages": stages,
                         "size": dict(s.larger_student),
                         "name": f"seed{seed}_{variant}_{tag}_" + "-".join(f"{st}{n}" for st, n in stages)})
    for r in runs:
        r["epochs"] = [round(n * s.batch_size / per_epoch[st], 3) for st, n in r["stages"]]
        r["epoch_slack"] = round(sum(s.batch_size / per_epoch[st] for st, _ in r["stages"]), 3)  # whole steps
    return runs


def _packed_stream(samples, s: Settings, n_seqs: int, seed: int) -> dict[str, Any]:
    """`n_seqs` packed sequences, cycling over epochs of the paper's packing (a new shuffle per epoch)."""
    from ..packing import pack_paper, packed_inputs

    chunks, epoch, have = [], 0, 0
    while have < n_seqs:
        plan = pack_paper(samples.lengths, s.seq_len_tokens, seed=seed * 1000 + epoch)
        take = np.arange(min(plan.n_sequences, n_seqs - have))
        chunks.append(packed_inputs(plan, samples, take))
        have, epoch = have + len(take), epoch + 1
    return {k: np.concatenate([c[k] for c in chunks]) for k in ("input_ids", "labels", "position_ids")}


def train_run(run: dict, samples: dict[str, Any], tokenizer, s: Settings, seed: int,
              progress: bool = True) -> tuple[Any, pd.DataFrame, dict]:
    """Train one student through the run's stages; returns (model, per-step log, info)."""
    import torch
    from tqdm.auto import tqdm

    model = build_student(tokenizer, s, seed)
    model.train()
    n_steps = sum(n for _, n in run["stages"])
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, n_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t / n_steps)))))
    info = {"run": run["name"], "seed": seed, "steps": n_steps, "stages": []}
    log, step = [], 0
    bar = tqdm(total=n_steps, desc=f"train {run['name']}", disable=not progress)
    for stage, (style, steps) in enumerate(run["stages"]):
        data = _packed_stream(samples[style], s, steps * s.batch_size, seed * 10 + stage)
        info["stages"].append({"style": style, "steps": steps, "samples": len(samples[style]),
                               "epochs": run["epochs"][stage], "truncated": samples[style].counts["truncated"],
                               "eos_in_loss": eos_in_loss(samples[style])})
        for i in range(steps):
            sl = slice(i * s.batch_size, (i + 1) * s.batch_size)
            batch = {k: torch.from_numpy(data[k][sl]) for k in ("input_ids", "labels", "position_ids")}
            loss = model(**batch).loss          # position_ids restart per sample: block-diagonal attention
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            step += 1
            log.append({"run": run["name"], "seed": seed, "step": step, "style": style, "loss": loss.item(),
                        "tokens": step * s.tokens_per_step,
                        "supervised_tokens": int((batch["labels"] != -100).sum())})
            bar.update(1)
    bar.close()
    model.eval()
    info["tokens"] = step * s.tokens_per_step
    info["epochs"], info["epoch_slack"] = round(sum(run["epochs"]), 3), run["epoch_slack"]
    return model, pd.DataFrame(log), info
