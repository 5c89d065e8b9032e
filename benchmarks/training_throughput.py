"""Useful (non-pad) training tokens/s: packed-and-isolated rows vs padded per-sample batches, same data and model.

One run trains the same samples once in each mode (AdamW, forward + backward + step, timed per step):
- packed_flat: notebook 03's paper packer, TRL's padding-free collator (the batch flattened into one sequence,
  per-sample position ids, block-diagonal attention, no pad tokens), `--rows` packed rows per step: the layout for
  FlashAttention's varlen kernels;
- packed_rows: the same packed rows kept as rows (`orca_utils.train_data.PackedRowsCollator`, per-sample position
  ids inside each row, a short pad tail to the batch's longest row): the layout notebook 04 uses with SDPA/eager
  attention, where the block-diagonal mask is computed as a square per row;
- padded_longest: `--rows` samples per step padded to the longest in the batch (dynamic padding);
- padded_max_len: `--rows` samples per step padded to max_len (static shapes, the classic layout).
Useful tokens are the samples' own tokens; pads are excluded. Data: FLAN CoT rationales from the shared data root
(question -> rationale + answer), serialized by `orca_utils.tokens`. The last line is one JSON object.

    .venv/bin/python benchmarks/training_throughput.py [--model SPEC] [--samples 24] [--max-len 512] [--rows 4]
"""
from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch


def load_samples(tokenizer, n: int, max_len: int, seed: int):
    from orca_utils.data import resolve_dataset
    from orca_utils.train_data import tokenize_rows

    folder = resolve_dataset("flan_cot", None, True).path
    frames = []
    for name in ("gsm8k", "strategyqa", "creak", "ecqa", "qasc", "aqua"):
        path = folder / f"{name}_train.tsv"
        if path.exists():
            frames.append(pd.read_csv(path, sep="\t", header=None, names=["q", "a", "r"], quoting=3).head(200))
    df = pd.concat(frames).sample(n=n, random_state=seed).reset_index(drop=True)
    df = pd.DataFrame({"id": [f"b{i}" for i in range(n)], "system": "You are a helpful assistant. Think step by step.",
                       "user": df["q"].astype(str), "response": df["r"].astype(str) + " So the answer is " +
                       df["a"].astype(str) + "."})
    return tokenize_rows(df, tokenizer, max_len)[0]


def batches(samples, mode: str, max_len: int, rows: int, pad_id: int, seed: int):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from orca_utils.train_data import PackedRowsCollator, pack_samples_into_rows

    if mode.startswith("packed"):
        packed = pack_samples_into_rows(samples, max_len, "paper", seed)
        collate = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True) if mode == "packed_flat" \
            else PackedRowsCollator(pad_id)
        for i in range(0, len(packed), rows):
            yield collate([{k: v for k, v in r.items() if k != "sample_ids"} for r in packed[i:i + rows]])
        return
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id,
                                              pad_to_multiple_of=max_len if mode == "padded_max_len" else None)
    for i in range(0, len(samples), rows):
        yield collate([{"input_ids": s.input_ids, "labels": s.labels} for s in samples[i:i + rows]])


def run_mode(model, samples, mode, args, pad_id) -> dict:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    seconds, slots, useful, steps = 0.0, 0, 0, 0
    warm = next(batches(samples, mode, args.max_len, args.rows, pad_id, args.seed))
    model(**warm, use_cache=False).loss.backward()      # untimed warm-up: allocator and kernels, not the mode
    model.zero_grad(set_to_none=True)
    for batch in batches(samples, mode, args.max_len, args.rows, pad_id, args.seed):
        slots += batch["input_ids"].numel()
        useful += int((batch["input_ids"] != pad_id).sum())     # the pad token is distinct: never a real token
        t0 = time.perf_counter()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t0
        steps += 1
    model.load_state_dict(state)           # every mode starts from the same weights
    out = {"mode": mode, "steps": steps, "useful_tokens": useful, "token_slots": slots, "seconds": seconds,
           "useful_tokens_per_s": useful / seconds, "pad_fraction": 1 - useful / slots}
    print(f"{mode:15s} {steps:3d} steps  {useful:6d} useful / {slots:6d} slots  {seconds:7.1f} s  "
          f"{out['useful_tokens_per_s']:8.1f} useful tokens/s")
    return out


def main() -> None:
    from orca_utils.config import load_profile
    from orca_utils.models import load_model
    from orca_utils.tokens import load_padded_tokenizer, resize_embeddings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=load_profile("smoke")["04_training"].student_model)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--rows", type=int, default=4, help="rows (packed) or samples (padded) per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokenizer = load_padded_tokenizer(args.model)
    model = load_model(args.model, device=args.device)
    resize_embeddings(model, tokenizer)
    samples = load_samples(tokenizer, args.samples, args.max_len, args.seed)
    print(f"model {args.model} | {len(samples)} FLAN-CoT samples, {sum(len(s.input_ids) for s in samples)} tokens | "
          f"max_len {args.max_len} | {args.rows} rows/step | device {args.device} | threads {torch.get_num_threads()}")
    results = {r["mode"]: r for r in (run_mode(model, samples, m, args, tokenizer.pad_token_id)
                                      for m in ("packed_flat", "packed_rows", "padded_longest", "padded_max_len"))}
    summary = {"model": args.model, "samples": len(samples), "max_len": args.max_len, "rows_per_step": args.rows,
               "device": args.device, **{f"{m}_useful_tokens_per_s": round(r["useful_tokens_per_s"], 1)
                                         for m, r in results.items()},
               **{f"{m}_pad_fraction": round(r["pad_fraction"], 3) for m, r in results.items()},
               **{f"{packed}_speedup_vs_{padded}": round(results[packed]["useful_tokens_per_s"] /
                                                          results[padded]["useful_tokens_per_s"], 2)
                  for packed in ("packed_flat", "packed_rows") for padded in ("padded_longest", "padded_max_len")}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
