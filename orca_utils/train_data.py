"""Training data for 04_training: teacher tables -> tokenized samples -> packed rows -> `datasets.Dataset`.

The serialization `<system, user, response> -> input_ids, labels` (labels -100 except the response and its EOS)
is `orca_utils.tokens` (issue 5), and the packers are `orca_utils.packing`: this module only calls them, reads
notebook 02's `train_stage{N}.parquet`, splits a held-out set, and lays packed samples out the way TRL's
padding-free collator expects them: one row per packed sequence with `input_ids`, `labels`, `seq_lengths`
(per-sample lengths, from which the collator builds per-sample position ids; the model then isolates samples
with a block-diagonal mask or FlashAttention varlen) and `sample_ids` (which samples it holds, for the record).

`RecordingCollator` wraps the collator to log, per rank, which samples each batch held: the proof that ranks
train on disjoint data, and the data position a resumed run continues from.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["TRAIN_COLUMNS", "TrainDataError", "Sample", "read_stage_table", "split_heldout", "tokenize_rows",
           "pack_samples_into_rows", "rows_to_dataset", "PackedRowsCollator", "RecordingCollator",
           "count_useful_tokens"]

TRAIN_COLUMNS = ("id", "system", "user", "response")


class TrainDataError(ValueError):
    """Training data that cannot be used; the message names the file, column or row."""


@dataclass(frozen=True)
class Sample:
    id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def n_trainable(self) -> int:
        return sum(1 for t in self.labels if t != -100)


def read_stage_table(folder: Path, stage: int) -> pd.DataFrame:
    """`train_stage{stage}.parquet` from notebook 02's folder, checked against the contract."""
    path = Path(folder) / f"train_stage{stage}.parquet"
    if not path.exists():
        raise TrainDataError(f"{path}: missing; notebook 02_augmentation writes train_stage1/2.parquet")
    df = pd.read_parquet(path)
    missing = [c for c in TRAIN_COLUMNS if c not in df.columns]
    if missing:
        raise TrainDataError(f"{path}: missing columns {missing}; expected at least {list(TRAIN_COLUMNS)}")
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    empty = df["response"].fillna("").str.strip() == ""
    if empty.any():
        raise TrainDataError(f"{path}: {int(empty.sum())} rows with an empty response (first id "
                             f"{df.loc[empty, 'id'].iloc[0]!r}); 02 keeps only status == 'ok' rows")
    if df["id"].duplicated().any():
        raise TrainDataError(f"{path}: duplicate ids, e.g. {df.loc[df['id'].duplicated(), 'id'].iloc[0]!r}")
    if df.empty:
        raise TrainDataError(f"{path}: no training rows")
    return df.reset_index(drop=True)


def split_heldout(df: pd.DataFrame, fraction: float, max_rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded held-out split: at least 1 row, at most `max_rows`, never the whole table."""
    if len(df) < 2:
        raise TrainDataError(f"need at least 2 rows to hold some out for the held-out loss, got {len(df)}")
    n = min(max_rows, max(1, round(len(df) * fraction)), len(df) - 1)
    heldout = df.sample(n=n, random_state=seed)
    return df.drop(heldout.index).reset_index(drop=True), heldout.reset_index(drop=True)


def tokenize_rows(df: pd.DataFrame, tokenizer, max_len: int) -> tuple[list[Sample], dict[str, int]]:
    """Serialize rows with `orca_utils.tokens.tokenize_frame` (the one serialization; overlong responses cut,
    samples whose prompt alone fills `max_len` dropped, both counted).

    Every returned sample has at least one label that is not -100 (asserted), so no row trains on nothing.
    """
    from .tokens import tokenize_frame

    tokenized = tokenize_frame(tokenizer, df, max_len_tokens=max_len)
    ids = df["id"].astype(str).tolist()
    samples = []
    for i in range(len(tokenized)):
        enc = tokenized.sample(i, attention_mask=False)
        samples.append(Sample(ids[int(tokenized.source_index[i])], enc["input_ids"], enc["labels"]))
    assert all(s.n_trainable > 0 for s in samples), "every sample keeps at least one trainable token"
    if not samples:
        raise TrainDataError(f"no sample keeps a trainable token at max_len_tokens={max_len}: raise it")
    counts = tokenized.counts
    return samples, {"truncated": counts["truncated"], "dropped": counts["dropped"]}


def pack_samples_into_rows(samples: list[Sample], max_len: int, packer: str, seed: int) -> list[dict]:
    """Rows for the trainer. `paper`/`bfd`: 03's packers; `none` and `trl_bfd`: one sample per row.

    A packed row concatenates its samples and records their lengths in `seq_lengths`; TRL's padding-free collator
    turns those into per-sample position ids (0, 1, ... restarting at each sample) and masks the label at each
    sample start, so no loss term crosses a boundary.
    """
    if packer in ("none", "trl_bfd"):
        return [{"input_ids": s.input_ids, "labels": s.labels, "seq_lengths": [len(s.input_ids)],
                 "sample_ids": [s.id]} for s in samples]
    from .packing import pack_lengths

    if packer not in ("paper", "bfd"):
        raise TrainDataError(f"packer {packer!r}: expected paper, bfd, trl_bfd or none")
    plan = pack_lengths([len(s.input_ids) for s in samples], max_len,
                        method="paper" if packer == "paper" else "best_fit", seed=seed)
    rows = []
    for seq in range(plan.n_sequences):
        members = [samples[int(i)] for i in plan.sequence(seq)]
        rows.append({"input_ids": [t for s in members for t in s.input_ids],
                     "labels": [t for s in members for t in s.labels],
                     "seq_lengths": [len(s.input_ids) for s in members],
                     "sample_ids": [s.id for s in members]})
    random.Random(seed).shuffle(rows)     # best-fit returns rows sorted by fill; the trainer sees a random order
    return rows


def rows_to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows)


def count_useful_tokens(rows: list[dict]) -> int:
    return sum(len(r["input_ids"]) for r in rows)


class PackedRowsCollator:
    """Packed rows kept as rows: `[batch, longest row]` ids with per-sample position ids restarting inside each row.

    TRL's padding-free collator flattens a batch into ONE sequence, which FlashAttention's varlen kernels process
    without waste; SDPA and eager attention (CPU, GPUs without flash-attn) instead compute the full square of that
    sequence under a block-diagonal mask, so attention cost grows with batch x row length squared. Kept as rows,
    the square is per row. The short tail that pads a row to the batch's longest continues the last sample's
    position ids: causal attention keeps real tokens from seeing it and its labels are -100. The label at each
    sample's first token is -100 too (it would be predicted from the previous sample), as TRL's collator does.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(ex["input_ids"]) for ex in examples)
        ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        positions = torch.zeros((len(examples), width), dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            lengths = ex.get("seq_lengths") or [n]
            if sum(lengths) != n:
                raise TrainDataError(f"packed row {row}: seq_lengths sum to {sum(lengths)}, the row holds {n} tokens")
            ids[row, :n] = torch.tensor(ex["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(ex["labels"], dtype=torch.long)
            starts = torch.tensor([0, *lengths[:-1]]).cumsum(0)
            labels[row, starts] = -100
            positions[row, :n] = torch.cat([torch.arange(k) for k in lengths])
            positions[row, n:] = torch.arange(width - n) + lengths[-1]
        return {"input_ids": ids, "labels": labels, "position_ids": positions}


class RecordingCollator:
    """Wraps a collator: strips `sample_ids` and appends `{call, rank, sample_ids, tokens}` to a JSONL log.

    Line k is the k-th batch this rank collated; accelerate's loader collates one batch ahead (to know where the
    epoch ends), so the last line may be a batch that no step consumed.
    """

    def __init__(self, collator, log_path: Path | None, rank: int = 0):
        self.collator, self.log_path, self.rank, self.calls = collator, log_path, rank, 0

    def __call__(self, examples: list[dict]) -> dict:
        ids = [i for ex in examples for i in ex.get("sample_ids", [])]
        tokens = sum(len(ex["input_ids"]) for ex in examples)
        clean = [{k: v for k, v in ex.items() if k != "sample_ids"} for ex in examples]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps({"call": self.calls, "rank": self.rank, "sample_ids": ids,
                                     "tokens": tokens}) + "\n")
        self.calls += 1
        return self.collator(clean)
