"""Notebook 09's prompt-erasure ablation: Orca 2's method, which the Orca 2 paper never ablated.

Orca 2 asks the teacher for each task under a strategy system message ("solve step by step ...", "answer directly
...") and trains the student with that message erased to one generic message, so that the student has to choose
the strategy from the task itself. Here, on a mix of tasks where the right strategy differs (`erasure_tasks`: a long
chain, `lie_chain`, that needs the trace, and `truth_lookup`, where a direct answer suffices), the symbolic teacher
answers under the task's strategy message (`STRATEGY_MESSAGES`), and one student per arm is trained on the same
responses for the same optimizer steps:
- `kept`: trained with the strategy message, evaluated with it (`strategy`) and with the generic one (`generic`);
- `erased`: trained with the generic message (`orca_utils.strategies.GENERIC_SYSTEM_MESSAGE`, the one notebook
  02's `prompt_erasure` writes), evaluated with the generic one.
Reported per task: accuracy, and how often the student chose the right strategy on its own (wrote a trace where the
teacher did, answered directly where it did); paired McNemar tests with the per-seed sign rule, as in H1-H4.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pandas as pd

from .evaluate import ANSWER_MARKER, generate_answers
from .parallel import map_jobs
from .problems import collect_responses, load_bbh_items, make_problems
from .settings import Settings
from .student import build_task_tokenizer
from .symbolic import TRACE_VERSION, generate_problems, score, solve
from .trainer import style_samples, train_run

__all__ = ["STRATEGY_MESSAGES", "ARMS", "EVALUATIONS", "generic_message", "training_frame", "wrote_trace",
           "make_eval_items", "erasure_jobs", "collect_erasure", "run_erasure", "erasure_table", "erasure_tests",
           "erasure_conclusion", "erasure_metrics"]

STRATEGY_MESSAGES = {
    "step": "Solve it step by step: write every intermediate result on its own line, then give the answer.",
    "direct": "Answer directly: give the final answer only, without steps.",
}
ARMS = ("kept", "erased")
EVALUATIONS = (("kept", "strategy"), ("kept", "generic"), ("erased", "generic"))


def generic_message() -> str:
    from ..strategies import GENERIC_SYSTEM_MESSAGE

    return GENERIC_SYSTEM_MESSAGE


def training_frame(responses: pd.DataFrame, arm: str) -> pd.DataFrame:
    """The arm's training texts: the strategy responses with the system message the arm trains on (`kept`: the
    task's strategy message; `erased`: the generic message); `style` names the arm."""
    if arm not in ARMS:
        raise ValueError(f"erasure arm {arm!r}: expected one of {list(ARMS)}")
    out = responses.assign(style=arm)
    if arm == "erased":
        out["system"] = generic_message()
    return out


def wrote_trace(prediction: str | None) -> bool:
    """Whether an output explains before answering: any text before "So the answer is" (or no answer line)."""
    text = (prediction or "").strip()
    j = text.find(ANSWER_MARKER)
    return bool(text[:j].strip()) if j >= 0 else bool(text)


def make_eval_items(s: Settings, tasks: list[str], exclude: dict[str, set[str]]) -> pd.DataFrame:
    """Held-out generated problems per erasure task, drawn over the trained lengths (in distribution)."""
    spans = s.chain_steps(tasks)
    rows = []
    for task in tasks:
        span = spans.get(task)
        for i, text in enumerate(generate_problems(task, s.erasure_eval_items_per_task, "erasure-eval",
                                                   exclude=exclude.get(task, set()),
                                                   steps=tuple(span) if span else None)):
            rows.append({"task": task, "item": f"erasure/{task}/{i}", "input": text,
                         "target": solve(task, text).answer})
    return pd.DataFrame(rows)


def _erasure_seed(seed: int, s: Settings, problems: dict, strategy: dict[str, str], folder: Path,
                  items: pd.DataFrame, progress: bool, log) -> tuple[list, list, pd.DataFrame]:
    """One seed of `run_erasure`: (eval frames, run rows, the teacher's responses)."""
    import torch

    from ..packing import pack_paper

    evals, runs = [], []
    t0 = time.time()
    responses = collect_responses(problems[seed], [], folder / f"teacher_cache_{TRACE_VERSION}_seed{seed}.sqlite",
                                  progress, system_of_task=strategy)
    frames = {arm: training_frame(responses, arm) for arm in ARMS}
    both = pd.concat(frames.values())
    tok = build_task_tokenizer(pd.concat([both["system"], both["user"], both["response"]]).drop_duplicates()
                               .tolist(), s.tokenizer_vocab_size)
    samples = style_samples(both, tok, s)
    per_epoch = pack_paper(samples["kept"].lengths, s.seq_len_tokens, seed=0).n_sequences
    steps = max(2, math.ceil(s.epochs * per_epoch / s.batch_size))
    for arm in ARMS:
        torch.set_num_threads(1)
        random.seed(seed)
        run = {"name": f"seed{seed}_erasure_{arm}{steps}", "stages": [(arm, steps)],
               "epochs": [round(steps * s.batch_size / per_epoch, 3)], "epoch_slack": 0.0}
        t1 = time.time()
        model, _, info = train_run(run, samples, tok, s, seed, progress)
        train_s = time.time() - t1
        for arm_, prompt in EVALUATIONS:
            if arm_ != arm:
                continue
            systems = [strategy[t] if prompt == "strategy" else generic_message() for t in items["task"]]
            outs = generate_answers(model, tok, [[{"role": "system", "content": sy}, {"role": "user", "content": q}]
                                                 for sy, q in zip(systems, items["input"])],
                                    s.eval_max_new_tokens, s.eval_batch_size, s.stop_at_answer, progress)
            ev = items.assign(seed=seed, arm=arm, prompt=prompt, prediction=[o["text"] for o in outs],
                              finish_reason=[o["finish_reason"] for o in outs])
            ev["correct"] = [score(t, o["text"], y, q)[0]
                             for o, t, y, q in zip(outs, items["task"], items["target"], items["input"])]
            ev["wrote_trace"] = ev["prediction"].map(wrote_trace)
            ev["teacher_trace"] = ev["task"].map(lambda t: s.erasure_tasks[t] == "step")
            ev["strategy_right"] = ev["wrote_trace"] == ev["teacher_trace"]
            evals.append(ev)
        runs.append({"seed": seed, "arm": arm, "steps": steps, "tokens": info["tokens"],
                     "epochs": run["epochs"][0], "train_s": round(train_s, 1)})
        log(f"seed {seed} erasure/{arm}: {steps} steps in {train_s:.1f}s")
    log(f"seed {seed} erasure: {time.time() - t0:.1f}s")
    return evals, runs, responses.assign(seed=seed)


def erasure_jobs(s: Settings, data_dir: str | None, offline: bool, out_dir: Path,
                 progress: bool = True) -> list[tuple]:
    """The ablation's per-seed jobs for `parallel.map_jobs` (problems and held-out items drawn here, once);
    `collect_erasure` turns their results into `run_erasure`'s frames."""
    tasks = list(s.erasure_tasks)
    strategy = {t: STRATEGY_MESSAGES[s.erasure_tasks[t]] for t in tasks}
    folder = Path(out_dir) / "runs" / "erasure"
    folder.mkdir(parents=True, exist_ok=True)
    problems = {seed: make_problems(tasks, s.erasure_problems_per_task, seed, data_dir, offline,
                                    s.chain_steps(tasks)).assign(id=lambda f: "erasure-" + f["id"])
                for seed in s.seeds}
    exclude = {t: set(load_bbh_items(data_dir, offline, t)["input"])
               | {q for p in problems.values() for q in p.loc[p.task == t, "user"]} for t in tasks}
    items = make_eval_items(s, tasks, exclude)
    return [(_erasure_seed, seed, dict(s=s, problems={seed: problems[seed]}, strategy=strategy, folder=folder,
                                       items=items, progress=progress)) for seed in s.seeds]


def collect_erasure(results: list) -> dict[str, pd.DataFrame]:
    """`run_erasure`'s frames from its jobs' results (in seed order)."""
    evals, runs, answers = [], [], []
    for ev, rw, responses in results:
        evals += ev
        runs += rw
        answers.append(responses)
    return {"eval": pd.concat(evals, ignore_index=True), "runs": pd.DataFrame(runs),
            "responses": pd.concat(answers, ignore_index=True)}


def run_erasure(s: Settings, data_dir: str | None, offline: bool, out_dir: Path, progress: bool = True,
                log=print) -> dict[str, pd.DataFrame]:
    """Every seed: problems, the teacher's strategy responses, one tokenizer for both arms, the two students (the
    same optimizer steps: `epochs` passes over the kept arm's packed sequences) and their evaluations. Returns
    frames `eval` (one row per seed, arm, evaluation prompt and item), `runs` and `responses`. Seeds run in
    `workers` processes side by side; `pipeline.run_experiment` runs these jobs in its own pool when
    `erasure` is on (its result's "erasure")."""
    return collect_erasure(map_jobs(erasure_jobs(s, data_dir, offline, out_dir, progress), s.workers, log))


def erasure_table(evals: pd.DataFrame) -> pd.DataFrame:
    """`tab_prompt_erasure`: per arm, evaluation prompt and task (and `all`), accuracy and the share of outputs
    whose strategy (trace or direct answer) is the one the teacher used, mean over seeds with per-seed values."""
    ev = pd.concat([evals, evals.assign(task="all")])
    per_seed = ev.groupby(["arm", "prompt", "task", "seed"], sort=False).agg(
        acc=("correct", "mean"), right=("strategy_right", "mean"), trace=("wrote_trace", "mean"),
        n=("correct", "size")).reset_index()
    rows = []
    for (arm, prompt, task), g in per_seed.groupby(["arm", "prompt", "task"], sort=False):
        rows.append({"arm": arm, "eval_prompt": prompt, "task": task,
                     "accuracy_pct": round(100 * g["acc"].mean(), 1),
                     "strategy_right_pct": round(100 * g["right"].mean(), 1),
                     "wrote_trace_pct": round(100 * g["trace"].mean(), 1),
                     "per_seed_accuracy_pct": " / ".join(f"{100 * v:.1f}" for v in g["acc"]),
                     "items_per_seed": int(g["n"].iloc[0]), "seeds": len(g)})
    return pd.DataFrame(rows)


def erasure_tests(evals: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The erased student under the generic message vs the kept student under its strategy message and under the
    generic one, per task: McNemar on accuracy and on the right strategy, paired by (seed, item)."""
    from .stats import pair_stats

    col = evals["arm"] + "/" + evals["prompt"]
    rows = []
    for other in ("kept/strategy", "kept/generic"):
        for task in dict.fromkeys(evals["task"]):
            for measure in ("correct", "strategy_right"):
                sub = evals[(evals["task"] == task) & col.isin(["erased/generic", other])]
                piv = sub.assign(run=col).pivot_table(index=["seed", "item"], columns="run", values=measure,
                                                      aggfunc="first").dropna()
                if {"erased/generic", other} <= set(piv.columns):
                    rows.append({"comparison": f"erased/generic vs {other}", "task": task, "measure": measure,
                                 **pair_stats(piv, "erased/generic", other, alpha)})
    return pd.DataFrame(rows)


def erasure_conclusion(table: pd.DataFrame, tests: pd.DataFrame) -> str:
    """What the ablation shows, from its table and tests alone (Markdown)."""
    def acc(arm: str, prompt: str, task: str, key: str = "accuracy_pct") -> str:
        r = table[(table["arm"] == arm) & (table["eval_prompt"] == prompt) & (table["task"] == task)]
        return f"{r[key].iloc[0]:.1f}%" if len(r) else "n/a"

    lines = ["### Prompt erasure (generated from the table and tests above)", ""]
    for task in [t for t in dict.fromkeys(table["task"]) if t != "all"]:
        lines.append(f"- {task}: accuracy erased/generic {acc('erased', 'generic', task)}, kept/strategy "
                     f"{acc('kept', 'strategy', task)}, kept/generic {acc('kept', 'generic', task)}; right strategy "
                     f"chosen {acc('erased', 'generic', task, 'strategy_right_pct')} (erased, generic) vs "
                     f"{acc('kept', 'generic', task, 'strategy_right_pct')} (kept, generic).")
    for r in tests[tests["measure"] == "correct"].itertuples():
        lines.append(f"- {r.comparison}, {r.task}: {r.diff_pp:+.1f} pp (McNemar p={r.p_mcnemar:.2g}, per seed "
                     f"{r.per_seed_diff_pp}): **{r.verdict}**.")
    return "\n".join(lines)


def erasure_metrics(table: pd.DataFrame) -> dict:
    m = {}
    for r in table.itertuples():
        m[f"experiment/erasure/{r.arm}/{r.eval_prompt}/{r.task}/accuracy_pct"] = r.accuracy_pct
        m[f"experiment/erasure/{r.arm}/{r.eval_prompt}/{r.task}/strategy_right_pct"] = r.strategy_right_pct
    return m
