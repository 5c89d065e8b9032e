"""Training-data preparation memory: the in-memory path (Python lists) beside the on-disk path (Arrow, memory-mapped).

    .venv/bin/python benchmarks/train_data_memory.py [--sizes 50000 400000] [--list-sizes 50000] [--max-len 2048]

For each size, a synthetic FLAN-like `train_stage1.parquet` is written (system message, a query of ~60-200 words, a
teacher response of ~40-300 words; deterministic), then each path prepares stage-1 training data in a FRESH process
with the real LLaMA tokenizer (`shared:tokenizers/llama`) plus `[[PAD]]`:
- `list`: `train_data.read_stage_table` -> `tokenize_rows` -> `pack_samples_into_rows` -> `rows_to_dataset` (today's
  notebook 04 path before the on-disk one; it needs ~120 bytes per token, so it runs only at `--list-sizes`);
- `arrow`: `train_data.prepare_arrow_stage` (datasets map into Arrow files, packing on the length column, the plan as
  indices), then one pass reading every packed row, as a trainer's data loader would.
Peak anonymous resident memory (`RssAnon`, sampled every 20 ms from /proc/self/status by a thread) and its
high-water mark (`VmHWM`, which counts file-backed pages of memory-mapped Arrow files too) are printed per run;
`bytes_per_token_slope` = growth of peak RssAnon between the two sizes / growth in tokens. Goal: at most 2
bytes/token, and samples/s not lower than the list path on the same data. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = ("the a of to and in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so what up out no them more about "
         "into than its only other new some could time these two may then do first any my now such like our over "
         "man me even most made after also did many before must through back years where much your way well down "
         "should because each just those people how too little state good very make world still own see men work "
         "long get here between both life being under never day same another know while last might us great old "
         "year off come since against go came right used take three answer question step reason therefore").split()


def write_synthetic(path: Path, n: int, seed: int = 0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)

    def text(lo, hi):
        return [" ".join(vocab[rng.integers(0, len(vocab), rng.integers(lo, hi))]) for _ in range(n)]

    df = pd.DataFrame({"id": [f"s{i}" for i in range(n)],
                       "system": rng.choice(["", "You are an AI assistant. Think step by step and justify your "
                                                 "answer."], n),
                       "user": text(60, 200), "response": text(40, 300), "status": "ok"})
    df.to_parquet(path, index=False, row_group_size=10_000)     # as notebook 02 writes its train files


def _rss_sampler(stop: threading.Event, peak: dict) -> None:
    while not stop.is_set():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                peak["rss_anon_kb"] = max(peak.get("rss_anon_kb", 0), int(line.split()[1]))
        stop.wait(0.02)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(mode: str, folder: Path, max_len: int) -> dict:
    """Runs in a fresh process: prepare stage 1 one way, report time, tokens and peak memory."""
    from orca_utils import tokens, train_data

    tok = tokens.load_padded_tokenizer("shared:tokenizers/llama")
    base = _status_kb("RssAnon")
    peak, stop = {}, threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(stop, peak), daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    if mode == "list":
        df = train_data.read_stage_table(folder, 1)
        samples, _ = train_data.tokenize_rows(df, tok, max_len)
        rows = train_data.pack_samples_into_rows(samples, max_len, "paper", 0)
        ds = train_data.rows_to_dataset(rows)
        n_samples, n_tokens, n_rows = len(samples), sum(len(s.input_ids) for s in samples), len(ds)
    else:
        out = train_data.prepare_arrow_stage(folder, 1, tok, max_len, "paper", 0, 0.0001, 8, folder / "cache",
                                             num_proc=1)
        ds = out["train_dataset"]
        read = 0
        for start in range(0, len(ds), 256):      # what the data loader does: every row, a batch at a time
            read += sum(len(r) for r in ds[start:start + 256]["input_ids"])
        n_samples, n_tokens, n_rows = out["stats"]["samples"], out["stats"]["tokens"], len(ds)
        assert read == n_tokens, (read, n_tokens)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {"mode": mode, "samples": n_samples, "tokens": n_tokens, "rows": n_rows, "seconds": round(seconds, 2),
            "samples_per_s": round(n_samples / seconds, 1), "peak_rss_anon_mb": round(peak["rss_anon_kb"] / 1024, 1),
            "rss_anon_growth_mb": round((peak["rss_anon_kb"] - base) / 1024, 1),
            "vm_hwm_mb": round(_status_kb("VmHWM") / 1024, 1)}


def run_child(mode: str, folder: Path, max_len: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(folder), "--max-len", str(max_len)],
                          capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} on {folder}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[50_000, 400_000])
    ap.add_argument("--list-sizes", type=int, nargs="*", default=[50_000], help="sizes the list path also runs at")
    ap.add_argument("--max-len", type=int, default=2048)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.max_len)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="train-data-memory-") as tmp:
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            write_synthetic(folder / "train_stage1.parquet", n)
            for mode in (["list"] if n in args.list_sizes else []) + ["arrow"]:
                r = {"size": n, **run_child(mode, folder, args.max_len)}
                results.append(r)
                print(f"{mode:5s} n={n:>8,}: {r['tokens']:>12,} tokens in {r['seconds']:7.1f} s "
                      f"({r['samples_per_s']:>8,.0f} samples/s); peak RssAnon {r['peak_rss_anon_mb']:8.1f} MB "
                      f"(+{r['rss_anon_growth_mb']:.1f} MB over the loaded tokenizer), VmHWM {r['vm_hwm_mb']:.1f} MB",
                      flush=True)
    arrow = [r for r in results if r["mode"] == "arrow"]
    small, large = arrow[0], arrow[-1]
    slope = (large["peak_rss_anon_mb"] - small["peak_rss_anon_mb"]) * 2**20 / max(1, large["tokens"] - small["tokens"])
    lists = {r["size"]: r for r in results if r["mode"] == "list"}
    speed_ratio = (arrow[0]["samples_per_s"] / lists[small["size"]]["samples_per_s"]) if small["size"] in lists \
        else None
    list_bpt = ({n: round(r["rss_anon_growth_mb"] * 2**20 / r["tokens"], 1) for n, r in lists.items()})
    tokens_5m = large["tokens"] / large["samples"] * 5_090_000
    projection_gb = (small["peak_rss_anon_mb"] * 2**20 + max(0.0, slope) * (tokens_5m - small["tokens"])) / 2**30
    print(f"arrow bytes/token slope (peak RssAnon, {small['size']:,} -> {large['size']:,} samples): {slope:.3f} "
          f"(goal <= 2); list path: {list_bpt} bytes/token over its tokenizer baseline")
    print(f"projection for FLAN-5M (5.09M samples, {tokens_5m / 1e9:.2f}B tokens at this length mix): arrow peak "
          f"RssAnon ~{projection_gb:.2f} GB per rank; list path ~"
          f"{(max(list_bpt.values()) * tokens_5m / 2**30) if list_bpt else float('nan'):.0f} GB per rank")
    print(json.dumps({"results": results, "bytes_per_token_slope": round(slope, 4),
                      "arrow_vs_list_samples_per_s": round(speed_ratio, 3) if speed_ratio else None,
                      "list_bytes_per_token": list_bpt, "projection_5m_arrow_gb_per_rank": round(projection_gb, 3),
                      "goal_met": slope <= 2 and (speed_ratio is None or speed_ratio >= 1.0)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
