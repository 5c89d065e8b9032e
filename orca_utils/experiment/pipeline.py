"""The laptop-sized test of Orca's central claim: does a student learn more from explanations than from answers?

One small student, trained from scratch three ways on the SAME problems:
- `answer_only`: targets are the answers alone ("So the answer is X."), the imitation-learning baseline;
- `explanation`: targets are full step-by-step traces (Orca's explanation tuning);
- `progressive`: short explanations first, then full traces (Orca's ChatGPT-then-GPT-4 progressive learning, with
  a "short" teacher standing in for the easier one).

Two controls, both run (`controls`), because "the same budget" can mean two things:
- `same_epochs` (the paper's setting): every variant makes `epochs` passes over the same problems, so the compute
  grows with the response length (an answer-only student is cheap); `progressive` spends half its passes on short
  traces, then half on full ones;
- `same_tokens`: every variant takes the same number of optimizer steps over packed sequences of `seq_len_tokens`
  (identical compute), so the answer-only student sees each problem many more times. The budget is `train_tokens`,
  or (null) exactly what the explanation student uses under `same_epochs`: that run is then the same run in both
  controls and is trained once.

Problems come from the generators of `experiment.symbolic` (never a BBH item); responses from the symbolic teacher
served by the local OpenAI-compatible server (`experiment.symbolic_teacher`), tokenized by `orca_utils.tokens`
(every response ends with EOS, which is a label: the student learns to stop), packed by `orca_utils.packing` (the
paper's shuffle-and-fill, samples isolated by restarting position ids). Evaluation is zero-shot greedy on the real
BBH items and on held-out generated problems whose number of steps is set (the difficulty curve, `curve`), with a
stop rule: generation ends at EOS or as soon as the answer line "So the answer is ..." is complete; an output that
reaches `eval_max_new_tokens` without either hit the token cap (`finish_reason == "length"`, reported per variant).
Answers are read by `orca_utils.evaluation.extract` as notebook 06 reads them.

Why a tiny LLaMA-config model with a small task tokenizer: on 2 CPU cores the output layer of a 32k-vocabulary
model alone caps a 20M-parameter student at about 1,000 training tokens/s, far too slow to train several variants
over several seeds in minutes. The default tokenizer is a byte-level BPE of `tokenizer_vocab_size` (1,024) entries
trained with `tokenizers` on each seed's training texts (digits split one per token, as LLaMA does): names and
words become single tokens, so copying a name from the question is one lookup. A character-level tokenizer
(`tokenizer: char`) is kept for comparison: in earlier pilots (one seed, 1.2M tokens per variant, 100 BBH items per
task) its students mostly failed to copy names and objects from the question (web_of_lies explanation student 12%
with characters, 40% with the BPE). The same architecture as LLaMA (RMSNorm, RoPE, SwiGLU) keeps it the paper's
student family in miniature.

This module runs the whole experiment (`run_experiment`, `check_invariants`, `provenance`) over the modules beside it,
whose names it re-exports: `settings` (`Settings`, the variants and controls), `student` (tokenizers, the model),
`problems` (BBH items, generated problems, the teacher's responses), `trainer` (plans and the training loop) and
`evaluate` (generation with the stop rule, scoring, trace fidelity).
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from .evaluate import ANSWER_MARKER, answer_line_done, evaluate_run, generate_answers, trace_fidelity
from .erasure import collect_erasure, erasure_jobs
from .parallel import map_jobs
from .problems import collect_responses, load_bbh_items, make_curve_items, make_problems
from .settings import CONTROLS, EVAL_STYLE, VARIANTS, Settings
from .student import build_char_tokenizer, build_student, build_task_tokenizer, seed_tokenizer
from .symbolic import ALL_TASKS, TRACE_VERSION
from .symbolic_teacher import TEACHER_LABEL
from .trainer import eos_in_loss, plan_runs, style_samples, train_run

__all__ = ["VARIANTS", "CONTROLS", "EVAL_STYLE", "ANSWER_MARKER", "Settings", "build_char_tokenizer",
           "build_task_tokenizer", "build_student", "load_bbh_items", "make_problems", "make_curve_items",
           "collect_responses", "style_samples", "eos_in_loss", "plan_runs", "train_run", "generate_answers",
           "evaluate_run", "trace_fidelity", "answer_line_done", "provenance",
           "run_experiment", "check_invariants"]


# ------------------------------------------------------------------ the whole experiment
def _pick_threads() -> int:
    """One torch thread per run. On the shared 2-core machines this runs on, OpenMP threads that wait for a busy
    core stall every step: measured with the load average at 4, one training step of the small student took
    1.15-1.32 s with 2 threads and 0.36-0.49 s with 1 (passive waiting included), and greedy generation of 60x80
    tokens 6.7-6.9 s vs 1.5 s. On an idle machine 2 threads would be up to ~1.7x faster; 1 is the robust choice
    and leaves the other core to the rest of the machine."""
    import torch

    torch.set_num_threads(1)
    return 1


def _settings_key(s: Settings) -> str:
    """What makes a cached run reusable: everything but the seeds, the controls and runs chosen, and the test level.
    "problems" and "eval" version how problems are made and outputs scored: runs cached under an older rule are
    never reused."""
    fields = {k: v for k, v in asdict(s).items() if k not in ("seeds", "controls", "skip_runs", "alpha", "workers")
              and not k.startswith(("gate_", "erasure"))}
    versions = {"problems": f"exclude-all-bbh-items;steps-mix-max7;chains;{TRACE_VERSION}",
                "eval": "answer-line-stop;trace-fidelity"}
    return json.dumps({**fields, **versions}, sort_keys=True)


def _wanted(s: Settings, run: dict) -> bool:
    """Whether a planned run belongs to this experiment (its control is run and it is not skipped)."""
    control = run["control"].split("@")[0]
    return control in s.controls and f"{run['control']}/{run['variant']}" not in s.skip_runs


def _prepare_seed(s: Settings, problems: pd.DataFrame, seed: int, runs_dir: Path, key: str, prepared: dict,
                  clock: dict, progress: bool, log) -> None:
    """The seed's teacher responses (through the local server), its tokenizer and tokenized samples, timed."""
    t1 = time.time()
    cache = runs_dir / f"teacher_cache_{TRACE_VERSION}_seed{seed}.sqlite"
    responses = collect_responses(problems, ["answer", "short", "full"], cache, progress)
    responses.to_parquet(runs_dir / f"seed{seed}_responses.parquet")
    t2 = time.time()
    tokenizer = seed_tokenizer(s, responses, runs_dir / f"seed{seed}_tokenizer", key)
    prepared.update(tokenizer=tokenizer, samples=style_samples(responses, tokenizer, s))
    clock.update(teacher_s=round(t2 - t1, 1), tokenize_s=round(time.time() - t2, 1))
    log(f"seed {seed}: {len(responses)} teacher responses in {clock['teacher_s']}s, tokenizer and tokenization "
        f"in {clock['tokenize_s']}s")


def _run_seed(seed: int, s: Settings, problems: dict, items: pd.DataFrame, runs_dir: Path, key: str,
              progress: bool, log) -> tuple[list, list, list, dict]:
    """One seed of `run_experiment`: its teacher responses, tokenizer and planned runs (finished runs reused).
    Returns (eval frames, training curves, run rows, clock)."""
    evals, curves, rows = [], [], []
    plan_path = runs_dir / f"seed{seed}_plan.json"
    cached = json.loads(plan_path.read_text()) if plan_path.exists() else {}
    prepared: dict[str, Any] = {}
    clock = {"seed": seed, "teacher_s": 0.0, "tokenize_s": 0.0}
    if cached.get("settings") == key:
        planned = cached["runs"]
    else:
        _prepare_seed(s, problems[seed], seed, runs_dir, key, prepared, clock, progress, log)
        planned = plan_runs(s, prepared["samples"], seed)
        plan_path.write_text(json.dumps({"settings": key, "runs": planned}, indent=1))
    planned = [r for r in planned if _wanted(s, r)]
    done: dict[str, tuple] = {}
    for run in planned:
        name = run["name"]
        stem = runs_dir / name
        meta = stem.with_suffix(".json")
        if name not in done and meta.exists() and json.loads(meta.read_text()).get("settings") == key:
            done[name] = (pd.read_parquet(runs_dir / f"{name}_eval.parquet"),
                          pd.read_parquet(runs_dir / f"{name}_curve.parquet"),
                          json.loads(meta.read_text())["info"])
            log(f"seed {seed} {run['control']}/{run['variant']}: reused {meta.name}")
        if name not in done:
            if not prepared:
                _prepare_seed(s, problems[seed], seed, runs_dir, key, prepared, clock, progress, log)
            rs = s.with_student(run["size"]) if run["size"] else s
            info_threads = _pick_threads()
            t1 = time.time()
            random.seed(seed)
            model, curve_log, info = train_run(run, prepared["samples"], prepared["tokenizer"], rs, seed, progress)
            train_s = time.time() - t1
            info["train_s"] = round(train_s, 1)
            t2 = time.time()
            ev = evaluate_run(model, prepared["tokenizer"], run["variant"], items, rs, progress)
            info.update(threads=info_threads, load_avg=round(os.getloadavg()[0], 2))
            info.update(eval_s=round(time.time() - t2, 1), n_params=int(sum(p.numel() for p in model.parameters())),
                        vocab_size=len(prepared["tokenizer"]),
                        tokens_per_s=round(info["tokens"] / max(train_s, 1e-6)))
            ev.to_parquet(runs_dir / f"{name}_eval.parquet")
            curve_log.to_parquet(runs_dir / f"{name}_curve.parquet")
            meta.write_text(json.dumps({"settings": key, "info": info}, indent=2))
            done[name] = (ev, curve_log, info)
            bbh_acc = ev.loc[ev["set"] == "bbh", "correct"].mean()
            log(f"seed {seed} {run['control']}/{run['variant']}: BBH accuracy {bbh_acc:.3f}, token cap "
                f"{(ev['finish_reason'] == 'length').mean():.1%} (train {info['train_s']}s for {info['steps']} "
                f"steps, {info['tokens_per_s']} tokens/s; eval {info['eval_s']}s)")
        else:
            log(f"seed {seed} {run['control']}/{run['variant']}: same run as {name} (shared)")
        ev, curve_log, info = done[name]
        tags = {"seed": seed, "control": run["control"], "variant": run["variant"]}
        evals.append(ev.assign(**tags))
        curves.append(curve_log.assign(**tags))
        rows.append({**tags, **{k: v for k, v in info.items() if k not in ("seed",)},
                     "shared": sum(r["name"] == name for r in planned) > 1})
    return evals, curves, rows, clock


def run_experiment(s: Settings, data_dir: str | None, offline: bool, out_dir: Path, progress: bool = True,
                   log=print, erasure: bool = False) -> dict[str, Any]:
    """Every seed: problems, teacher responses, tokenizer, then every planned run (train, evaluate on the BBH items
    and the curve items, save under `runs/`; finished runs are reused). Returns frames `eval` (one row per item,
    seed, control and variant), `curves` (training loss), `runs` (per seed, control and variant), `timing`, `items`
    (the evaluation items: BBH and curve) and `responses` (the teacher's responses the students were trained on,
    every seed and style). `runs/` is this function's working folder (resumable parts): read the returned frames,
    not its files. Seeds run in `workers` processes side by side (`parallel.map_jobs`); `erasure`: the
    prompt-erasure ablation's seeds join the same pool (so no core waits for the last seed), and its frames come
    back as "erasure" (what `erasure.run_erasure` returns)."""
    unknown = [t for t in {*s.tasks, *s.curve} if t not in ALL_TASKS]
    if unknown:
        raise ValueError(f"tasks {unknown}: the symbolic teacher covers only {list(ALL_TASKS)}")
    if s.tokenizer not in ("bpe", "char"):
        raise ValueError(f"tokenizer {s.tokenizer!r}: expected 'bpe' or 'char'")
    if not set(s.controls) <= set(CONTROLS) or not s.controls:
        raise ValueError(f"controls {s.controls}: expected a non-empty subset of {list(CONTROLS)}")
    t0 = time.time()
    bbh = pd.concat([load_bbh_items(data_dir, offline, t, s.eval_items_per_task) for t in s.tasks],
                    ignore_index=True).assign(set="bbh")
    problems = {seed: make_problems(s.tasks, s.train_problems_per_task, seed, data_dir, offline, s.chain_steps())
                for seed in s.seeds}
    exclude = {t: set(load_bbh_items(data_dir, offline, t)["input"])
               | {q for p in problems.values() for q in p.loc[p.task == t, "user"]} for t in s.curve_tasks()}
    curve = make_curve_items(s.curve_tasks(), s.curve_items_per_step, exclude).assign(set="curve")
    items = pd.concat([bbh, curve], ignore_index=True)
    log(f"problems and {len(items)} evaluation items ({len(curve)} curve) ready in {time.time() - t0:.1f}s")
    runs_dir = Path(out_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    key = _settings_key(s)
    jobs = [(_run_seed, seed, dict(s=s, problems={seed: problems[seed]}, items=items, runs_dir=runs_dir, key=key,
                                   progress=progress)) for seed in s.seeds]
    extra = erasure_jobs(s, data_dir, offline, out_dir, progress) if erasure else []
    done = map_jobs(jobs + extra, s.workers, log)
    evals, curves, rows, timing = [], [], [], []
    for ev, cv, rw, clock in done[:len(jobs)]:
        evals += ev
        curves += cv
        rows += rw
        timing.append(clock)
    responses = pd.concat(pd.read_parquet(runs_dir / f"seed{seed}_responses.parquet") for seed in s.seeds)
    out = {"eval": pd.concat(evals, ignore_index=True), "curves": pd.concat(curves, ignore_index=True),
           "runs": pd.DataFrame(rows), "timing": pd.DataFrame(timing), "items": items, "responses": responses}
    if erasure:
        out["erasure"] = collect_erasure(done[len(jobs):])
    return out


def check_invariants(results: dict[str, pd.DataFrame], s: Settings, data_dir: str | None, offline: bool) -> list[str]:
    """The fairness and cleanliness checks of the comparison; raises AssertionError on the first that fails."""
    runs, ev = results["runs"], results["eval"]
    plain = runs[~runs["control"].str.contains("@")]
    checks = []
    if "same_tokens" in s.controls:
        st = plain[plain["control"] == "same_tokens"]
        assert st.groupby("seed")["tokens"].nunique().eq(1).all(), "same_tokens: every variant, the same tokens"
        checks.append("same_tokens: every variant took the same optimizer steps over the same number of tokens")
    if "same_epochs" in s.controls:
        se = plain[plain["control"] == "same_epochs"]
        assert ((se["epochs"] >= s.epochs - 0.01) & (se["epochs"] <= s.epochs + se["epoch_slack"] + 0.01)).all(), \
            f"same_epochs: epochs {se['epochs'].tolist()} vs {s.epochs}"
        checks.append(f"same_epochs: every variant made {s.epochs} passes over the problems "
                      f"(measured {se['epochs'].min()}-{se['epochs'].max()}, rounded up to whole steps)")
    expected = [f"{c}/{v}" for c in s.controls for v in VARIANTS if f"{c}/{v}" not in s.skip_runs]
    assert sorted(plain["control"] + "/" + plain["variant"]) == sorted(expected * len(s.seeds)), "missing runs"
    stages = [st for info in runs["stages"] for st in info]
    assert all(st["truncated"] == 0 and st["eos_in_loss"] == st["samples"] for st in stages), \
        "a training response lost its EOS (cut by seq_len_tokens)"
    checks.append("every training response ends with EOS, and EOS is a label (in the loss)")
    responses = results["responses"]
    assert responses.groupby("style")["id"].nunique().nunique() == 1, "same problems for every style"
    bbh_inputs = {q for t in s.tasks for q in load_bbh_items(data_dir, offline, t)["input"]}
    assert not set(responses["user"]) & bbh_inputs, "a BBH test item leaked into training"
    curve_inputs = set(results["items"].loc[results["items"]["set"] == "curve", "input"])
    assert not set(responses["user"]) & curve_inputs, "a difficulty-curve item leaked into training"
    checks.append("same problems for every variant; no BBH item and no curve item among the training problems")
    assert ev.groupby(["seed", "control", "variant"]).size().nunique() == 1, "every run is scored on the same items"
    checks.append(f"every run scored on the same {int(ev.groupby(['seed', 'control', 'variant']).size().iloc[0])} "
                  "items")
    return checks


def provenance(s: Settings, results: dict[str, pd.DataFrame]) -> str:
    """The provenance line under every table and figure of notebook 09: student, teacher, data."""
    runs = results["runs"]
    small = runs.loc[~runs["control"].str.contains("@"), "n_params"].iloc[0]
    budget = f"same_tokens: {s.train_tokens} tokens" if s.train_tokens else "same_tokens: the explanation run's tokens"
    curve = results["items"]["set"].eq("curve").sum()
    return (f"student: {small / 1e6:.2f}M-param LLaMA-config model ({s.n_layers} layers, hidden {s.hidden_size}), "
            f"{s.tokenizer} task tokenizer, trained from scratch (offline)"
            + (f", plus a {runs['n_params'].max() / 1e6:.2f}M one" if s.larger_student else "")
            + f"; teacher: {TEACHER_LABEL}; train: fresh generated problems, {s.train_problems_per_task}/task, "
            f"same_epochs: {s.epochs:g} epochs, {budget}; eval: real BBH items ({s.eval_items_per_task or 250}/task) "
            f"and {curve} generated curve problems, seeds {s.seeds}")
