"""Training data for 04_training: teacher tables -> tokenized samples -> packed rows -> `datasets.Dataset`.

The serialization `<system, user, response> -> input_ids, labels` (labels -100 except the response and its EOS)
is `orca_utils.tokens` (shared with 03), and the packers are `orca_utils.packing`: this module only calls them, reads
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

import numpy as np
import pandas as pd

from .contracts import TRAIN_REQUIRED_COLUMNS, train_file

__all__ = ["TRAIN_COLUMNS", "TrainDataError", "Sample", "read_stage_table", "split_heldout", "tokenize_rows",
           "pack_samples_into_rows", "rows_to_dataset", "PackedRowsCollator", "RecordingCollator",
           "count_useful_tokens", "load_stage_arrow", "split_heldout_indices", "tokenize_arrow", "plan_packing",
           "save_plan", "load_plan", "packed_rows_dataset", "prepare_arrow_stage", "open_prepared_stage",
           "prepared_key", "manifest_path"]

TRAIN_COLUMNS = TRAIN_REQUIRED_COLUMNS      # what training reads of 02's table (orca_utils.contracts)


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
    path = Path(folder) / train_file(stage)
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
    """A seeded held-out split: at least 1 row, at most `max_rows`, never the whole table (the same rows as the
    on-disk path's `split_heldout_indices`)."""
    train_idx, heldout_idx = split_heldout_indices(len(df), fraction, max_rows, seed)
    return df.iloc[train_idx].reset_index(drop=True), df.iloc[heldout_idx].reset_index(drop=True)


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


# ---- On disk: tokenize once into Arrow, pack on the length array, every rank memory-maps the same files --------
#
# The in-memory path above holds every sample as Python lists (about 120 bytes of resident memory per token:
# 400 GB per rank for FLAN-5M's 3-4 billion tokens). The path below keeps the text and the tokens in Arrow files
# written batch by batch (`datasets` map, fingerprinted cache, `num_proc` workers) and memory-mapped when read;
# packing runs on the int32 length column; the plan is two int64 arrays (`order`, `seq_offsets`) in a .npy file;
# the trainer's dataset is a `datasets.Dataset` of row numbers whose transform gathers a packed row from the
# memory-mapped samples when (and only on the rank where) it is read.

ARROW_COLUMNS = ("input_ids", "labels", "length", "id")


def _serialize_batch(batch: dict, tokenizer, max_len: int) -> dict:
    """`datasets.map` function: the one serialization (`orca_utils.tokens`) on a batch of 02's rows."""
    from .tokens import tokenize_samples

    system = [s or "" for s in batch["system"]]
    tokenized = tokenize_samples(tokenizer, system, batch["user"], batch["response"], max_len_tokens=max_len,
                                 batch_size=len(system) or 1)
    out = {"input_ids": [], "labels": [], "length": [], "id": [], "truncated": []}
    for i in range(len(tokenized)):
        enc = tokenized.sample(i, attention_mask=False)
        if all(t == -100 for t in enc["labels"]):
            continue
        out["input_ids"].append(enc["input_ids"])
        out["labels"].append(enc["labels"])
        out["length"].append(len(enc["input_ids"]))
        out["truncated"].append(enc["input_ids"][-1] != tokenizer.eos_token_id)
        out["id"].append(str(batch["id"][int(tokenized.source_index[i])]))
    return out


def load_stage_arrow(folder: Path, stage: int, cache_dir: Path, batch_rows: int = 10_000):
    """02's `train_stage{stage}.parquet` as a memory-mapped `datasets.Dataset`, checked like `read_stage_table`.

    The parquet file is streamed batch by batch (`pyarrow` `iter_batches`) into an Arrow file in `cache_dir`: only
    `ok` rows, only the columns training reads; the checks (empty responses, duplicate ids) run on the same batches.
    `datasets.Dataset.from_parquet` would hold a whole row group of text in memory at once. The Arrow file is
    reused while the parquet file's size and modification time are unchanged.
    """
    import hashlib

    import pyarrow.parquet as pq
    from datasets import Dataset

    path = Path(folder) / train_file(stage)
    if not path.exists():
        raise TrainDataError(f"{path}: missing; notebook 02_augmentation writes train_stage1/2.parquet")
    source = pq.ParquetFile(path)
    names = source.schema_arrow.names
    missing = [c for c in TRAIN_COLUMNS if c not in names]
    if missing:
        raise TrainDataError(f"{path}: missing columns {missing}; expected at least {list(TRAIN_COLUMNS)}")
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(cache_dir) / f"stage{stage}_rows_{key}.arrow"
    if not target.exists():
        _stream_checked_rows(source, path, target, batch_rows, "status" in names)
    ds = Dataset.from_file(str(target))
    if len(ds) == 0:
        raise TrainDataError(f"{path}: no training rows")
    return ds


def _stream_checked_rows(source, path: Path, target: Path, batch_rows: int, has_status: bool) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = pa.schema([(c, pa.string()) for c in TRAIN_COLUMNS])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    n_empty, first_empty, id_hashes = 0, None, []
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        columns = list(TRAIN_COLUMNS) + (["status"] if has_status else [])
        for batch in source.iter_batches(batch_size=batch_rows, columns=columns):
            if has_status:
                batch = batch.filter(pc.equal(batch.column("status"), "ok"))
            batch = pa.RecordBatch.from_arrays([pc.cast(batch.column(c), pa.string()) for c in TRAIN_COLUMNS],
                                               schema=schema)
            empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(batch.column("response"), ""))),
                             0)
            if pc.any(empty).as_py():
                n_empty += pc.sum(empty).as_py()
                first_empty = first_empty or batch.column("id")[pc.index(empty, True).as_py()].as_py()
            id_hashes.append(np.fromiter((hash(x) for x in batch.column("id").to_pylist()), np.int64,
                                         batch.num_rows))
            writer.write_batch(batch)
    hashes = np.concatenate(id_hashes) if id_hashes else np.array([], dtype=np.int64)
    # 8 bytes per row, not a Python set of ids (two distinct ids sharing a 64-bit hash: ~1e-6 at 5M rows)
    if len(np.unique(hashes)) != len(hashes):
        tmp.unlink()
        raise TrainDataError(f"{path}: duplicate ids")
    if n_empty:
        tmp.unlink()
        raise TrainDataError(f"{path}: {n_empty} rows with an empty response (first id {first_empty!r}); "
                             f"02 keeps only status == 'ok' rows")
    tmp.replace(target)


def split_heldout_indices(n: int, fraction: float, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) row indices: at least 1 held out, at most `max_rows`, never every row."""
    if n < 2:
        raise TrainDataError(f"need at least 2 rows to hold some out for the held-out loss, got {n}")
    k = min(max_rows, max(1, round(n * fraction)), n - 1)
    # numpy's Generator draw, not `orca_utils.data.seeded_subset`'s legacy RandomState one: kept so that the same seed
    # holds out the same rows as before (and the training and held-out losses stay comparable across reruns).
    heldout = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    keep = np.ones(n, dtype=bool)
    keep[heldout] = False
    return np.flatnonzero(keep), heldout


def tokenize_arrow(ds, tokenizer, max_len: int, num_proc: int = 1, batch_size: int = 1000):
    """Tokenized samples (`input_ids`, `labels`, `length`, `id`) as Arrow files beside `ds`'s cache; reruns with
    the same rows, tokenizer and `max_len` reuse them (datasets' fingerprint)."""
    return ds.map(_serialize_batch, batched=True, batch_size=batch_size, num_proc=num_proc if num_proc > 1 else None,
                  remove_columns=ds.column_names, fn_kwargs={"tokenizer": tokenizer, "max_len": max_len},
                  writer_batch_size=batch_size, desc="tokenize (Arrow)")


def plan_packing(lengths: np.ndarray, max_len: int, packer: str, seed: int):
    """The packed plan from the length column alone (`orca_utils.packing`); `none`/`trl_bfd`: one sample per row."""
    from .packing import PackedPlan, pack_lengths

    lengths = np.asarray(lengths, dtype=np.int64)
    if packer in ("none", "trl_bfd"):
        n = len(lengths)
        return PackedPlan(np.arange(n), np.arange(n + 1), lengths, max_len, packer, np.array([], dtype=np.int64))
    if packer not in ("paper", "bfd"):
        raise TrainDataError(f"packer {packer!r}: expected paper, bfd, trl_bfd or none")
    plan = pack_lengths(lengths, max_len, method="paper" if packer == "paper" else "best_fit", seed=seed)
    if packer == "bfd":       # best-fit returns rows sorted by fill; the trainer sees a random order
        perm = np.random.default_rng(seed).permutation(plan.n_sequences)
        seqs = [plan.sequence(int(s)) for s in perm]
        order = np.concatenate(seqs) if seqs else np.array([], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
        plan = PackedPlan(order, offsets, plan.lengths, plan.max_len, plan.method, plan.dropped)
    return plan


def save_plan(plan, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, order=plan.order.astype(np.int64), seq_offsets=plan.seq_offsets.astype(np.int64))
    tmp.replace(path)


def load_plan(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["order"], z["seq_offsets"]


def packed_rows_dataset(samples, order: np.ndarray, seq_offsets: np.ndarray):
    """A `datasets.Dataset` with one row per packed sequence; reading row r gathers its samples from `samples`
    (memory-mapped), as the in-memory rows would hold them (`input_ids`, `labels`, `seq_lengths`, `sample_ids`)."""
    from datasets import Dataset

    rows = Dataset.from_dict({"row": np.arange(len(seq_offsets) - 1, dtype=np.int64)})

    def gather(batch: dict) -> dict:
        out = {"input_ids": [], "labels": [], "seq_lengths": [], "sample_ids": []}
        for r in batch["row"]:
            members = [int(i) for i in order[seq_offsets[r]:seq_offsets[r + 1]]]
            got = samples[members]
            out["input_ids"].append([t for ids in got["input_ids"] for t in ids])
            out["labels"].append([t for lab in got["labels"] for t in lab])
            out["seq_lengths"].append([len(ids) for ids in got["input_ids"]])
            out["sample_ids"].append(list(got["id"]))
        return out

    rows.set_transform(gather)
    return rows


def _tokenizer_key(tokenizer) -> str:
    """What of the tokenizer shapes the tokens: its vocabulary and merges, special tokens, chat template."""
    import hashlib

    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = json.dumps([tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id, len(tokenizer),
                        getattr(tokenizer, "chat_template", None)], default=str)
    return hashlib.sha256((body + extra).encode()).hexdigest()[:16]


def prepared_key(folder: Path, stage: int, tokenizer, max_len: int, packer: str, seed: int, heldout_fraction: float,
                 max_heldout: int, max_train_samples: int | None) -> str:
    """The stamp of a prepared stage: 02's table (path, size, mtime), the tokenizer and every param that shapes
    the samples, the split or the packing. A rank opens the cache only when the manifest carries this stamp."""
    import hashlib

    path = Path(folder) / train_file(stage)
    stat = path.stat() if path.exists() else None
    table = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}" if stat else "missing"
    what = json.dumps([table, _tokenizer_key(tokenizer), max_len, packer, seed, heldout_fraction, max_heldout,
                       max_train_samples])
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def manifest_path(cache_dir: Path, stage: int) -> Path:
    return Path(cache_dir) / f"stage{stage}_prepared.json"


def open_prepared_stage(folder: Path, stage: int, tokenizer, max_len: int, packer: str, seed: int,
                        heldout_fraction: float, max_heldout: int, cache_dir: Path,
                        max_train_samples: int | None = None, hint: str = "") -> dict:
    """What `prepare_arrow_stage` returned, read back from its manifest: memory-mapped sample files and plans,
    nothing tokenized or packed. A missing or stale cache (other data, tokenizer or params) is a `TrainDataError`
    in one line, ending with `hint` (the command that prepares it)."""
    from datasets import Dataset, concatenate_datasets

    cache_dir = Path(cache_dir)
    path = manifest_path(cache_dir, stage)
    key = prepared_key(folder, stage, tokenizer, max_len, packer, seed, heldout_fraction, max_heldout,
                       max_train_samples)
    manifest = json.loads(path.read_text()) if path.is_file() else None
    if manifest is None or manifest.get("key") != key:
        what = "not prepared" if manifest is None else "prepared from other data, tokenizer or params"
        raise TrainDataError(f"stage {stage} training data: {what} in {cache_dir}" + (f": {hint}" if hint else ""))
    out = {}
    for part in ("train", "eval"):
        entry = manifest["parts"][part]
        files = [cache_dir / f for f in entry["files"]]
        missing = [str(f) for f in files + [cache_dir / entry["plan"]] if not f.is_file()]
        if missing:
            raise TrainDataError(f"stage {stage} training data: {missing[0]} is gone" + (f": {hint}" if hint else ""))
        parts = [Dataset.from_file(str(f)) for f in files]
        samples = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        order, offsets = load_plan(cache_dir / entry["plan"])
        out[part] = packed_rows_dataset(samples, order, offsets)
    return {"train_dataset": out["train"], "eval_dataset": out["eval"], "stats": manifest["stats"]}


def _cache_files(ds, cache_dir: Path) -> list[str]:
    """The Arrow files holding `ds`, relative to `cache_dir` (so that a copied cache still opens)."""
    names = []
    for entry in ds.cache_files:
        f = Path(entry["filename"])
        names.append(str(f.relative_to(cache_dir)) if f.is_relative_to(cache_dir) else str(f))
    return names


def prepare_arrow_stage(folder: Path, stage: int, tokenizer, max_len: int, packer: str, seed: int,
                        heldout_fraction: float, max_heldout: int, cache_dir: Path,
                        max_train_samples: int | None = None, num_proc: int = 1) -> dict:
    """Train / held-out packed datasets for one stage from Arrow files, plus the same counts as the in-memory path.

    Call it in ONE process, outside any collective (`orca_utils.train.prepare_stage`, before `accelerate launch`):
    it tokenizes with `num_proc` workers into datasets' fingerprinted cache (a rerun reuses it), packs, and writes
    the manifest `stage{N}_prepared.json` (its stamp, files and counts) from which the launched ranks open the same
    files with `open_prepared_stage`, memory-mapped, without tokenizing.
    """
    cache_dir = Path(cache_dir)
    ds = load_stage_arrow(folder, stage, cache_dir)
    train_idx, heldout_idx = split_heldout_indices(len(ds), heldout_fraction, max_heldout, seed)
    if max_train_samples:
        train_idx = train_idx[:max_train_samples]
    out, counts, files = {}, {}, {}
    for part, idx in (("train", train_idx), ("eval", heldout_idx)):
        samples = tokenize_arrow(ds.select(idx), tokenizer, max_len, num_proc)
        if len(samples) == 0:
            raise TrainDataError(f"no sample keeps a trainable token at max_len_tokens={max_len}: raise it")
        lengths = _column(samples, "length")
        plan_path = cache_dir / f"plan_stage{stage}_{part}_{samples._fingerprint}_{packer}_{max_len}_{seed}.npz"
        if not plan_path.exists():
            save_plan(plan_packing(lengths, max_len, packer, seed), plan_path)
        order, offsets = load_plan(plan_path)
        out[part] = packed_rows_dataset(samples, order, offsets)
        counts[part] = (samples, lengths, len(idx))
        files[part] = {"files": _cache_files(samples, cache_dir), "plan": plan_path.name}
    samples, lengths, n_rows = counts["train"]
    tokens = int(lengths.sum())
    n_seq = len(out["train"])
    trainable = _count_trainable(samples)
    stats = {"samples": len(samples), "heldout_samples": len(counts["eval"][0]), "rows": n_seq, "tokens": tokens,
             "trainable_tokens": trainable, "samples_per_row": len(samples) / n_seq,
             "fill": tokens / (n_seq * max_len), "dropped": n_rows - len(samples),
             "truncated": int(_column(samples, "truncated").sum()),
             "heldout_ids": list(counts["eval"][0]["id"]), "storage": "arrow"}
    key = prepared_key(folder, stage, tokenizer, max_len, packer, seed, heldout_fraction, max_heldout,
                       max_train_samples)
    manifest = manifest_path(cache_dir, stage)
    text = json.dumps({"key": key, "parts": files, "stats": stats})
    if not manifest.is_file() or manifest.read_text() != text:       # a rerun on a finished cache writes nothing
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(manifest)              # written last, atomically: a manifest means a finished cache
    return {"train_dataset": out["train"], "eval_dataset": out["eval"], "stats": stats}


def _column(ds, name: str) -> np.ndarray:
    """One column as a numpy array, read from the memory-mapped Arrow table (no Python objects per row)."""
    return ds.select_columns([name]).with_format("arrow")[:].column(name).to_numpy()


def _count_trainable(samples) -> int:
    total = 0
    for batch in samples.select_columns(["labels"]).with_format("arrow").iter(batch_size=2000):
        import pyarrow.compute as pc

        flat = pc.list_flatten(batch.column("labels"))
        total += int(pc.sum(pc.not_equal(flat, -100)).as_py() or 0)
    return total
