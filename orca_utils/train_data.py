"""Training data for 04_training: teacher tables -> tokenized samples -> packed rows -> `datasets.Dataset`.

The serialization `<system, user, response> -> input_ids, labels` (labels -100 except the response and its EOS)
is `orca_utils.tokens` (shared with 03), and the packers are `orca_utils.packing`: this module only calls them, reads
notebook 02's `train_stage{N}.parquet`, splits a held-out set, and lays packed samples out the way TRL's
padding-free collator expects them: one row per packed sequence with `input_ids`, `labels`, `seq_lengths`
(per-sample lengths, from which the collator builds per-sample position ids; the model then isolates samples
with a block-diagonal mask or FlashAttention varlen) and `sample_ids` (which samples it holds, for the record).

`RecordingCollator` wraps the collator to log, per rank, which samples each batch held: the proof that ranks
train on disjoint data, and the data position a resumed run continues from.

On disk (the default), a stage's table is tokenized once into a token store found by its fingerprint
(`token_store`), the same store notebook 03 measures its token lengths from; see the section below.
"""
from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .contracts import TRAIN_REQUIRED_COLUMNS, train_file

__all__ = ["TRAIN_COLUMNS", "TrainDataError", "Sample", "read_stage_table", "split_heldout", "tokenize_rows",
           "pack_samples_into_rows", "rows_to_dataset", "PackedRowsCollator", "RecordingCollator",
           "count_useful_tokens", "load_stage_arrow", "split_heldout_indices", "tokenize_arrow", "plan_packing",
           "save_plan", "load_plan", "packed_rows_dataset", "prepare_arrow_stage", "open_prepared_stage",
           "prepared_key", "manifest_path", "TOKEN_STORE_DIR", "STORE_COLUMNS", "TokenStore", "table_stamp",
           "store_fingerprint", "open_token_store", "token_store", "kept_samples"]

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
# written batch by batch (`datasets` map, `num_proc` workers) and memory-mapped when read; packing runs on the int32
# length column; the plan is int64 arrays (`order`, `seq_offsets`, and per sample its store row and kept length) in
# a .npz file; the trainer's dataset is a `datasets.Dataset` of row numbers whose transform gathers a packed row from
# the memory-mapped samples when (and only on the rank where) it is read.
#
# The token store. 02's stage table is tokenized ONCE per tokenizer and prompt format, into
# `<store root>/<fingerprint>/` (`token_store`): notebook 03 measures its token lengths from that store and 04's
# prepare step packs from it, so the packing analysis reads exactly the token counts that are trained, and FLAN-5M
# is tokenized once, by whichever of the two runs first (either builds it alone). The fingerprint
# (`store_fingerprint`) is the table (file name, size, modification time), `tokens.tokenizer_fingerprint` (vocabulary,
# merges, special tokens, the chat template or plain format rendered) and the store's format. Samples are stored
# WHOLE (prompt + response + EOS): max_len is not in the fingerprint, because truncation and dropping are
# `tokens.apply_overflow` on the length columns when a max_len is chosen (03 compares several, 04 trains at one),
# exactly the policy `tokenize_samples` applies.

TOKEN_STORE_DIR = "token_store"        # under the run root (or 04's data_cache_dir), shared by 03 and 04
STORE_META = "store.json"              # written last: a folder with it holds a finished store
STORE_FORMAT = 1                       # bump when the store's columns or their meaning change
STORE_COLUMNS = ("id", "input_ids", "prompt_length", "length")


@dataclass
class TokenStore:
    """One stage table tokenized whole by one tokenizer: `samples` (a memory-mapped `datasets.Dataset` with
    `STORE_COLUMNS`, one row per row of the table's `ok` rows, in order) in `folder`, named by `fingerprint`;
    `built`: tokenized by this call (False: found on disk, tokenized before by 03 or by an earlier prepare)."""

    folder: Path
    fingerprint: str
    samples: object
    meta: dict
    built: bool = False

    def __len__(self) -> int:
        return len(self.samples)

    def column(self, name: str) -> np.ndarray:
        return _column(self.samples, name)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(prompt tokens, response tokens with the EOS) per row, before any truncation."""
        prompt = self.column("prompt_length").astype(np.int64)
        return prompt, self.column("length").astype(np.int64) - prompt


def _tokenize_batch(batch: dict, tokenizer) -> dict:
    """`datasets.map` function: the one serialization (`orca_utils.tokens`) on a batch of 02's rows, whole."""
    from .tokens import tokenize_samples

    system = [s or "" for s in batch["system"]]
    tokenized = tokenize_samples(tokenizer, system, batch["user"], batch["response"], max_len_tokens=None,
                                 batch_size=len(system) or 1)
    offsets = tokenized.offsets
    return {"id": [str(i) for i in batch["id"]],
            "input_ids": [tokenized.input_ids[offsets[i]:offsets[i + 1]] for i in range(len(tokenized))],
            "prompt_length": tokenized.prompt_lengths.astype(np.int32),
            "length": tokenized.lengths.astype(np.int32)}


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




def table_stamp(folder: Path, stage: int) -> str:
    """02's `train_stage{stage}.parquet` as `name:size:mtime_ns` (no absolute path: a moved run folder keeps it)."""
    path = Path(folder) / train_file(stage)
    if not path.exists():
        raise TrainDataError(f"{path}: missing; notebook 02_augmentation writes train_stage1/2.parquet")
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def store_fingerprint(folder: Path, stage: int, tokenizer) -> str:
    """The token store's name: the stage table, the tokenizer and prompt format, the store's format (no max_len:
    samples are stored whole)."""
    import hashlib

    from .tokens import tokenizer_fingerprint

    what = json.dumps([STORE_FORMAT, table_stamp(folder, stage), tokenizer_fingerprint(tokenizer)])
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def tokenize_arrow(ds, tokenizer, num_proc: int = 1, batch_size: int = 1000, cache_file: Path | None = None,
                   fingerprint: str | None = None):
    """Whole tokenized samples (`STORE_COLUMNS`) of `ds`'s rows, one per row, in order, as Arrow files
    (`cache_file`, sharded by `num_proc`; default: beside `ds`'s cache)."""
    from datasets import Features, List, Value

    features = Features({"id": Value("string"), "input_ids": List(Value("int32")), "prompt_length": Value("int32"),
                         "length": Value("int32")})
    return ds.map(_tokenize_batch, batched=True, batch_size=batch_size, num_proc=num_proc if num_proc > 1 else None,
                  remove_columns=ds.column_names, fn_kwargs={"tokenizer": tokenizer}, features=features,
                  writer_batch_size=batch_size, cache_file_name=str(cache_file) if cache_file else None,
                  new_fingerprint=fingerprint, desc="tokenize (Arrow)")


def open_token_store(folder: Path, stage: int, tokenizer, root: Path) -> TokenStore | None:
    """The finished token store of this table and tokenizer under `root`, memory-mapped; None when there is none."""
    from datasets import Dataset, concatenate_datasets

    fingerprint = store_fingerprint(folder, stage, tokenizer)
    target = Path(root) / fingerprint
    meta_path = target / STORE_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is None or meta.get("fingerprint") != fingerprint:
        return None
    files = [target / f for f in meta["files"]]
    if not files or not all(f.is_file() for f in files):
        return None
    parts = [Dataset.from_file(str(f)) for f in files]
    samples = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if len(samples) != meta["rows"]:
        return None
    return TokenStore(target, fingerprint, samples, meta)


def token_store(folder: Path, stage: int, tokenizer, root: Path | Sequence[Path], num_proc: int = 1) -> TokenStore:
    """02's stage table tokenized whole by `tokenizer`: the finished store with this fingerprint under `root` (a
    folder, or folders searched in order: a run's own, then those of the runs it reuses), else built here in the
    first (02's table streamed and checked by `load_stage_arrow`, tokenized with `num_proc` workers, `store.json`
    written last). Notebook 03 and 04's prepare step both call this; never run two builds of the same store at once
    (on several nodes: one node prepares a shared root)."""
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    for where in dict.fromkeys(roots):
        found = open_token_store(folder, stage, tokenizer, where)
        if found is not None:
            return found
    from .tokens import uses_chat_template

    root = roots[0]
    fingerprint = store_fingerprint(folder, stage, tokenizer)
    rows = load_stage_arrow(folder, stage, root)
    target = root / fingerprint
    target.mkdir(parents=True, exist_ok=True)
    samples = tokenize_arrow(rows, tokenizer, num_proc, cache_file=target / "tokens.arrow", fingerprint=fingerprint)
    if len(samples) != len(rows):
        raise TrainDataError(f"token store {target}: {len(samples)} samples for {len(rows)} rows")
    meta = {"fingerprint": fingerprint, "format": STORE_FORMAT, "table": table_stamp(folder, stage), "stage": stage,
            "rows": len(samples), "tokens": int(_column(samples, "length").sum()),
            "tokenizer": getattr(tokenizer, "name_or_path", ""), "vocab_size": len(tokenizer),
            "prompt_format": "chat_template" if uses_chat_template(tokenizer) else "orca_plain",
            "system_turn": "always", "files": _cache_files(samples, target)}
    tmp = target / f"{STORE_META}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(target / STORE_META)
    return TokenStore(target, fingerprint, samples, meta, built=True)


def kept_samples(store: TokenStore, rows: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`rows` of the store at `max_len` under training's policy (`tokens.apply_overflow`, truncate_response): (the
    rows kept, in order; their kept lengths; the status of every row in `rows`)."""
    from .tokens import apply_overflow

    prompt, response = store.lengths()
    rows = np.asarray(rows, dtype=np.int64)
    status, kept = apply_overflow(prompt[rows], response[rows], max_len, "truncate_response")
    keep = status != "dropped"
    return rows[keep], kept[keep], status


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




def save_plan(plan, path: Path, sample_rows: np.ndarray, sample_lengths: np.ndarray) -> None:
    """The plan's `order` and `seq_offsets`, and per sample (the plan's index) its store row and kept length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, order=plan.order.astype(np.int64), seq_offsets=plan.seq_offsets.astype(np.int64),
             sample_rows=np.asarray(sample_rows, dtype=np.int64), sample_lengths=np.asarray(sample_lengths,
                                                                                           dtype=np.int64))
    tmp.replace(path)


def load_plan(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in ("order", "seq_offsets", "sample_rows", "sample_lengths")}


def packed_rows_dataset(samples, order: np.ndarray, seq_offsets: np.ndarray, sample_rows: np.ndarray,
                        sample_lengths: np.ndarray):
    """A `datasets.Dataset` with one row per packed sequence; reading row r gathers its samples from the token
    store's `samples` (memory-mapped): sample i is store row `sample_rows[i]` cut to `sample_lengths[i]` tokens,
    labels -100 on its prompt (`input_ids`, `labels`, `seq_lengths`, `sample_ids`, as the in-memory rows)."""
    from datasets import Dataset

    rows = Dataset.from_dict({"row": np.arange(len(seq_offsets) - 1, dtype=np.int64)})
    columns = samples.select_columns(["id", "input_ids", "prompt_length"])

    def gather(batch: dict) -> dict:
        out = {"input_ids": [], "labels": [], "seq_lengths": [], "sample_ids": []}
        for r in batch["row"]:
            members = order[seq_offsets[r]:seq_offsets[r + 1]]
            got = columns[sample_rows[members].tolist()]
            ids_row, labels_row, lengths = [], [], []
            for ids, p, n in zip(got["input_ids"], got["prompt_length"], sample_lengths[members].tolist()):
                ids = ids[:n]
                ids_row += ids
                labels_row += [-100] * p + ids[p:]
                lengths.append(n)
            out["input_ids"].append(ids_row)
            out["labels"].append(labels_row)
            out["seq_lengths"].append(lengths)
            out["sample_ids"].append(list(got["id"]))
        return out

    rows.set_transform(gather)
    return rows


def prepared_key(folder: Path, stage: int, tokenizer, max_len: int, packer: str, seed: int, heldout_fraction: float,
                 max_heldout: int, max_train_samples: int | None) -> str:
    """The stamp of a prepared stage: the token store's fingerprint (02's table, the tokenizer) and every param
    that shapes the samples, the split or the packing. A rank opens the cache only when the manifest carries it."""
    import hashlib

    try:
        store = store_fingerprint(folder, stage, tokenizer)
    except TrainDataError:
        store = "missing"
    what = json.dumps([store, max_len, packer, seed, heldout_fraction, max_heldout, max_train_samples])
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def manifest_path(cache_dir: Path, stage: int) -> Path:
    return Path(cache_dir) / f"stage{stage}_prepared.json"


def open_prepared_stage(folder: Path, stage: int, tokenizer, max_len: int, packer: str, seed: int,
                        heldout_fraction: float, max_heldout: int, cache_dir: Path,
                        max_train_samples: int | None = None, hint: str = "") -> dict:
    """What `prepare_arrow_stage` returned, read back from its manifest: the memory-mapped token store and plans,
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
    store_dir = cache_dir / manifest["store"]["folder"]
    files = [store_dir / f for f in manifest["store"]["files"]]
    plans = [cache_dir / manifest["parts"][part]["plan"] for part in ("train", "eval")]
    missing = [str(f) for f in files + plans if not f.is_file()]
    if missing:
        raise TrainDataError(f"stage {stage} training data: {missing[0]} is gone" + (f": {hint}" if hint else ""))
    parts = [Dataset.from_file(str(f)) for f in files]
    samples = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    out = {part: packed_rows_dataset(samples, **load_plan(plan)) for part, plan in zip(("train", "eval"), plans)}
    return {"train_dataset": out["train"], "eval_dataset": out["eval"], "stats": manifest["stats"]}


def _cache_files(ds, folder: Path) -> list[str]:
    """The Arrow files holding `ds`, relative to `folder` (so that a copied cache still opens)."""
    names = []
    for entry in ds.cache_files:
        f = Path(entry["filename"])
        names.append(str(f.relative_to(folder)) if f.is_relative_to(folder) else str(f))
    return names


def prepare_arrow_stage(folder: Path, stage: int, tokenizer, max_len: int, packer: str, seed: int,
                        heldout_fraction: float, max_heldout: int, cache_dir: Path,
                        max_train_samples: int | None = None, num_proc: int = 1,
                        store_root: Path | Sequence[Path] | None = None) -> dict:
    """Train / held-out packed datasets for one stage from Arrow files, plus the same counts as the in-memory path.

    Call it in ONE process, outside any collective (`orca_utils.train.prepare_stage`, before `accelerate launch`):
    it opens the stage's token store under `store_root` (default `<cache_dir>/token_store`; several folders: searched
    in order, a missing store built in the first), or tokenizes it with
    `num_proc` workers when none has this fingerprint (`token_store`: 03 may have built it), cuts and drops samples
    at `max_len`, packs, and writes the manifest `stage{N}_prepared.json` (its stamp, files and counts) from which
    the launched ranks open the same files with `open_prepared_stage`, memory-mapped, without tokenizing.
    Stats: `token_store` (the fingerprint), `token_store_folder` and `token_store_built` (False: reused, nothing
    tokenized here).
    """
    import hashlib
    import os

    cache_dir = Path(cache_dir)
    store = token_store(folder, stage, tokenizer, store_root or cache_dir / TOKEN_STORE_DIR, num_proc)
    train_idx, heldout_idx = split_heldout_indices(len(store), heldout_fraction, max_heldout, seed)
    if max_train_samples:
        train_idx = train_idx[:max_train_samples]
    out, kept, files = {}, {}, {}
    for part, idx in (("train", train_idx), ("eval", heldout_idx)):
        rows, lengths, status = kept_samples(store, idx, max_len)
        if len(rows) == 0:
            raise TrainDataError(f"no sample keeps a trainable token at max_len_tokens={max_len}: raise it")
        which = hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest()[:12]
        plan_path = cache_dir / f"plan_stage{stage}_{part}_{store.fingerprint}_{which}_{packer}_{max_len}_{seed}.npz"
        if not plan_path.exists():
            save_plan(plan_packing(lengths, max_len, packer, seed), plan_path, rows, lengths)
        out[part] = packed_rows_dataset(store.samples, **load_plan(plan_path))
        kept[part] = (rows, lengths, status)
        files[part] = {"plan": plan_path.name}
    rows, lengths, status = kept["train"]
    prompt, _ = store.lengths()
    tokens = int(lengths.sum())
    n_seq = len(out["train"])
    ids = store.samples.select_columns(["id"])
    stats = {"samples": len(rows), "heldout_samples": len(kept["eval"][0]), "rows": n_seq, "tokens": tokens,
             "trainable_tokens": int((lengths - prompt[rows]).sum()), "samples_per_row": len(rows) / n_seq,
             "fill": tokens / (n_seq * max_len), "dropped": int((status == "dropped").sum()),
             "truncated": int((status == "truncated").sum()),
             "heldout_ids": list(ids[kept["eval"][0].tolist()]["id"]), "storage": "arrow",
             "token_store": store.fingerprint}
    key = prepared_key(folder, stage, tokenizer, max_len, packer, seed, heldout_fraction, max_heldout,
                       max_train_samples)
    manifest = manifest_path(cache_dir, stage)
    store_ref = {"folder": os.path.relpath(store.folder, cache_dir), "files": store.meta["files"]}
    text = json.dumps({"key": key, "store": store_ref, "parts": files, "stats": stats})
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not manifest.is_file() or manifest.read_text() != text:       # a rerun on a finished cache writes nothing
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(manifest)              # written last, atomically: a manifest means a finished cache
    return {"train_dataset": out["train"], "eval_dataset": out["eval"],
            "stats": {**stats, "token_store_built": store.built, "token_store_folder": str(store.folder)}}


def _column(ds, name: str) -> np.ndarray:
    """One column as a numpy array, read from the memory-mapped Arrow table (no Python objects per row)."""
    return ds.select_columns([name]).with_format("arrow")[:].column(name).to_numpy()
