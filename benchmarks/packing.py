"""Packing benchmark: the paper's method, our best-fit decreasing and exact-fit, TRL's `pack_dataset`, same lengths.

    .venv/bin/python benchmarks/packing.py [--n 1000000] [--max-len 2048] [--seed 0] [--large-n 5000000]

Lengths: `--n` synthetic samples shaped like augmented Orca data (system + query prompt, lognormal, median ~160
tokens; teacher response, lognormal, median ~280 tokens with a long tail; total capped at max_len as the tokenizer's
truncation does). TRL packs a `datasets.Dataset` of token lists; its `input_ids` here are all-null int8 lists of
the right lengths (no token buffer: the packer reads only the list offsets). TRL is timed twice: as
`pack_dataset(..., strategy="bfd")` runs by default (`Dataset.map` batches of 1,000 samples, packed batch by batch)
and with one batch of all samples (global BFD, the comparable setting). Ours twice: best-fit decreasing and
exact-fit (pair completion, BFD fallback); both are also timed on `--large-n` lengths (0 skips). Prints one line per
method; the LAST line is one JSON object with every figure and the ratios.
Goal for ours (exact-fit) at 2,048: >= 99.5% of tokens non-pad, sequences within 0.1% of ceil(total / max_len), at
least as fast as TRL's.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def synthetic_lengths(n: int, max_len: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prompt = rng.lognormal(np.log(160), 0.7, n)
    response = rng.lognormal(np.log(280), 0.9, n)
    return np.clip((prompt + response).astype(np.int64), 8, max_len)


def trl_pack(lengths: np.ndarray, max_len: int, batch_size: int | None) -> tuple[float, int, int]:
    """Seconds, sequences and packed tokens of `trl.pack_dataset(strategy="bfd")` over `lengths`."""
    import datasets
    import pyarrow as pa
    from datasets import Dataset
    from trl import pack_dataset

    datasets.disable_progress_bars()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    column = pa.LargeListArray.from_arrays(pa.array(offsets), pa.nulls(int(offsets[-1]), pa.int8()))
    dataset = Dataset(pa.table({"input_ids": column}))
    kwargs = {"batch_size": batch_size or len(lengths)}
    start = time.perf_counter()
    packed = pack_dataset(dataset, max_len, strategy="bfd", map_kwargs=kwargs)
    seconds = time.perf_counter() - start
    seq_lengths = packed.with_format("arrow")["seq_lengths"]
    tokens = int(pa.compute.sum(pa.compute.list_flatten(seq_lengths)).as_py())
    return seconds, len(packed), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--large-n", type=int, default=5_000_000, help="also time ours on this many lengths (0: skip)")
    args = parser.parse_args()

    from orca_utils.packing import lower_bound_sequences, pack_best_fit, pack_exact_fit, pack_paper

    lengths = synthetic_lengths(args.n, args.max_len, args.seed)
    total, bound = int(lengths.sum()), lower_bound_sequences(lengths, args.max_len)
    print(f"{args.n:,} synthetic lengths, mean {lengths.mean():.0f}, total {total:,} tokens, "
          f"max_len {args.max_len}, lower bound {bound:,} sequences")
    rows = {}

    def record(name: str, seconds: float, sequences: int, tokens: int) -> None:
        assert tokens == total, f"{name} lost tokens: {tokens} != {total}"
        rows[name] = {"seconds": round(seconds, 3), "samples_per_s": round(args.n / seconds),
                      "sequences": sequences, "samples_per_sequence": round(args.n / sequences, 3),
                      "non_pad_fraction": round(tokens / (sequences * args.max_len), 5),
                      "sequences_over_lower_bound": round(sequences / bound - 1, 6)}
        r = rows[name]
        print(f"{name:<26} {r['seconds']:>8.2f} s  {r['samples_per_s']:>12,} samples/s  "
              f"{r['sequences']:>10,} seqs  {r['samples_per_sequence']:.2f} samples/seq  "
              f"non-pad {100 * r['non_pad_fraction']:.2f}%  over bound {100 * r['sequences_over_lower_bound']:.3f}%")

    for name, pack in (("paper (shuffle, next-fit)", lambda: pack_paper(lengths, args.max_len, seed=args.seed)),
                       ("ours (best-fit decreasing)", lambda: pack_best_fit(lengths, args.max_len)),
                       ("ours (exact-fit)", lambda: pack_exact_fit(lengths, args.max_len))):
        start = time.perf_counter()
        plan = pack()
        record(name, time.perf_counter() - start, plan.n_sequences, plan.total_tokens)
    large = {}
    if args.large_n:
        big = synthetic_lengths(args.large_n, args.max_len, args.seed)
        large = {"n": args.large_n, "lower_bound_sequences": lower_bound_sequences(big, args.max_len)}
        for key, pack in (("best_fit", pack_best_fit), ("exact_fit", pack_exact_fit)):
            start = time.perf_counter()
            plan = pack(big, args.max_len)
            large[key] = {"seconds": round(time.perf_counter() - start, 3), "sequences": plan.n_sequences,
                          "sequences_over_lower_bound": round(plan.n_sequences / large["lower_bound_sequences"] - 1, 6)}
            print(f"ours ({key}) on {args.large_n:,} lengths: {large[key]['seconds']:.2f} s, "
                  f"{plan.n_sequences:,} seqs, over bound {100 * large[key]['sequences_over_lower_bound']:.3f}%")
        del big
    record("trl bfd (global)", *trl_pack(lengths, args.max_len, None))
    record("trl bfd (default batches)", *trl_pack(lengths, args.max_len, 1000))

    ours, bfd, trl = rows["ours (exact-fit)"], rows["ours (best-fit decreasing)"], rows["trl bfd (global)"]
    summary = {"n": args.n, "max_len": args.max_len, "seed": args.seed, "total_tokens": total,
               "lower_bound_sequences": bound, "methods": rows, "large": large,
               "ours_speedup_vs_trl_global": round(trl["seconds"] / ours["seconds"], 2),
               "ours_speedup_vs_trl_default": round(rows["trl bfd (default batches)"]["seconds"] / ours["seconds"], 2),
               "bfd_speedup_vs_trl_global": round(trl["seconds"] / bfd["seconds"], 2),
               "exact_fit_sequences_saved_vs_bfd": bfd["sequences"] - ours["sequences"],
               "goal_non_pad_ge_0.995": ours["non_pad_fraction"] >= 0.995,
               "goal_within_0.1pct_of_bound": ours["sequences_over_lower_bound"] <= 0.001,
               "goal_at_least_as_fast_as_trl": ours["seconds"] <= trl["seconds"]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
