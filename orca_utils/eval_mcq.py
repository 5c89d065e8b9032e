"""One evaluation engine for multiple-choice and exact-match tasks (AGIEval, BBH) over any model backend.

Two modes, both over the same `EvalItem`s (`orca_utils.eval_tasks`):
- `generate` (as the paper): the model answers the zero-shot prompt (greedy, chat template, optional system
  message), `orca_utils.extract` reads the answer; an unparseable answer is wrong and counted as an
  extraction failure.
- `loglikelihood` (as lm-evaluation-harness scores AGIEval): the answer is the continuation with the highest
  log-likelihood after the raw prompt (`acc`; `acc_norm` divides by the continuation's length in bytes). Only
  choice and boolean tasks have continuations to compare; free-form BBH tasks fall back to generation (the
  `mode` column says which was used).

Averages follow the paper: `macro` is the unweighted mean of the per-task accuracies (the papers' "average" rows
are column means), `micro` is correct / all items.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from .eval_tasks import EvalItem, get_task
from .extract import extract_answer, normalize_target

__all__ = ["EvalResult", "evaluate", "summarize", "score_records", "DEFAULT_STOP", "MODES"]

MODES = ("generate", "loglikelihood")
DEFAULT_STOP = ("Q:",)          # lm-eval bbh_zeroshot stops there (with EOS); chat models end with EOS anyway


@dataclass
class EvalResult:
    """Per-item records, per-task table, macro/micro averages, and timing of one model on one benchmark."""

    records: pd.DataFrame        # task, id, target, prediction, extracted, method, correct, failed, mode
    per_task: pd.DataFrame       # task, n, correct, accuracy, failed, failure_rate (accuracies in %)
    macro: float
    micro: float
    seconds: float
    label: str = ""

    def errors(self, per_task: int = 2, width: int = 240) -> pd.DataFrame:
        """Wrong answers, `per_task` of each task: the prompt's end, the prediction, what was read, the gold."""
        wrong = self.records[~self.records["correct"]].groupby("task", sort=False).head(per_task).copy()
        wrong["prompt_end"] = wrong["prompt"].str[-width:]
        wrong["prediction"] = wrong["prediction"].str[:width]
        return wrong[["task", "id", "prompt_end", "prediction", "extracted", "method", "target"]]

    def metrics(self, prefix: str) -> dict[str, float]:
        """Slash-path metrics: `<prefix>/<task>/accuracy`, `.../extraction_failure_rate`, `<prefix>/macro` ..."""
        out = {f"{prefix}/macro_accuracy": self.macro, f"{prefix}/micro_accuracy": self.micro,
               f"{prefix}/n_items": int(self.per_task["n"].sum()), f"{prefix}/seconds": round(self.seconds, 2)}
        for row in self.per_task.itertuples():
            key = row.task.replace("-", "_")
            out[f"{prefix}/{key}/accuracy"] = row.accuracy
            out[f"{prefix}/{key}/extraction_failure_rate"] = row.failure_rate
        return out


def summarize(records: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """Per-task accuracy and extraction-failure rate (%), macro (mean over tasks) and micro (over items)."""
    if records.empty:
        raise ValueError("no records to summarize (every task was empty?)")
    grouped = records.groupby("task", sort=False)
    per_task = pd.DataFrame({"n": grouped.size(), "correct": grouped["correct"].sum(),
                             "failed": grouped["failed"].sum()}).reset_index()
    per_task["accuracy"] = 100.0 * per_task["correct"] / per_task["n"]
    per_task["failure_rate"] = 100.0 * per_task["failed"] / per_task["n"]
    macro = float(per_task["accuracy"].mean())
    micro = float(100.0 * per_task["correct"].sum() / per_task["n"].sum())
    return per_task[["task", "n", "correct", "accuracy", "failed", "failure_rate"]], macro, micro


def _record(item: EvalItem, prediction: str, mode: str) -> dict[str, Any]:
    ex = extract_answer(prediction, item.kind, options=item.options, labels=item.labels)
    return {"task": item.task, "id": item.id, "prompt": item.prompt, "target": item.target,
            "prediction": prediction, "extracted": ex.answer, "method": ex.method,
            "correct": ex.answer is not None and ex.answer == item.target, "failed": ex.failed, "mode": mode}


def _generate(backend, items: Sequence[EvalItem], max_new_tokens: int, system_message: str | None,
              stop: Sequence[str] | None) -> list[dict]:
    texts = backend.generate([it.prompt for it in items], max_new_tokens=max_new_tokens, stop=list(stop or []),
                             system_message=system_message)
    return [_record(it, text, "generate") for it, text in zip(items, texts)]


def _loglikelihood(backend, items: Sequence[EvalItem], apply_chat_template: bool,
                   system_message: str | None, normalize: bool) -> list[dict]:
    requests, owners = [], []
    for k, it in enumerate(items):
        context = [{"role": "user", "content": it.prompt}] if apply_chat_template else it.prompt
        for cont in it.continuations:
            requests.append((context, cont))
            owners.append(k)
    scores = backend.loglikelihood(requests, system_message=system_message) if apply_chat_template else \
        backend.loglikelihood(requests)
    per_item: list[list[float]] = [[] for _ in items]
    for k, (req, s) in zip(owners, zip(requests, scores)):
        per_item[k].append(s / max(1, len(req[1].encode())) if normalize else s)
    out = []
    for it, sc in zip(items, per_item):
        best = max(range(len(sc)), key=sc.__getitem__)
        answer = it.continuations[best].strip()
        extracted = (answer[1] if it.kind == "choice" and answer.startswith("(") else
                     "ABCDEFGHIJKLMNOPQR"[best] if it.kind == "choice" else answer)
        out.append({"task": it.task, "id": it.id, "prompt": it.prompt, "target": it.target, "prediction": answer,
                    "extracted": extracted, "method": "loglikelihood", "correct": best == it.gold_index,
                    "failed": False, "mode": "loglikelihood"})
    return out


def evaluate(backend, items_by_task: dict[str, list[EvalItem]], *, mode: str = "generate",
             max_new_tokens: int = 256, system_message: str | None = None,
             stop: Sequence[str] | None = DEFAULT_STOP, apply_chat_template: bool = False,
             normalize: bool = False, label: str = "") -> EvalResult:
    """Score `backend` on every task. All tasks' prompts go to the backend in one call (better batches).

    `apply_chat_template` and `normalize` only matter in log-likelihood mode (lm-eval's defaults: raw prompt,
    `acc`). Free-form tasks are always generated.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    items = [it for task_items in items_by_task.values() for it in task_items]
    if not items:
        raise ValueError("no items to evaluate: every task is empty")
    t0 = time.time()
    if mode == "loglikelihood":
        ll_items = [it for it in items if len(it.continuations) > 1]
        gen_items = [it for it in items if len(it.continuations) <= 1]
        records = _loglikelihood(backend, ll_items, apply_chat_template, system_message, normalize) if ll_items \
            else []
        if gen_items:
            records += _generate(backend, gen_items, max_new_tokens, system_message, stop)
    else:
        records = _generate(backend, items, max_new_tokens, system_message, stop)
    seconds = time.time() - t0
    order = {it.id: k for k, it in enumerate(items)}
    df = pd.DataFrame(records).sort_values("id", key=lambda s: s.map(order)).reset_index(drop=True)
    per_task, macro, micro = summarize(df)
    return EvalResult(df, per_task, macro, micro, seconds, label or getattr(backend, "label", ""))


def score_records(rows: Sequence[dict], benchmark: str, task: str) -> dict[str, Any]:
    """Score saved outputs (`prediction`, `target`, optional `options`) of one task with the same extractor."""
    spec = get_task(benchmark, task)
    n = correct = failed = 0
    for i, row in enumerate(rows):
        if "prediction" not in row or "target" not in row:
            raise ValueError(f"line {i + 1}: expected keys 'prediction' and 'target', got {sorted(row)}")
        options = row.get("options")
        if options is None and spec.kind == "choice" and isinstance(row.get("input"), str):
            from .eval_tasks import _bbh_options

            options = _bbh_options(row["input"]) or None
        try:
            gold = normalize_target(row["target"], spec.kind, spec.labels)
        except ValueError as exc:
            raise ValueError(f"line {i + 1}: {exc}") from None
        ex = extract_answer(row["prediction"], spec.kind, options=options, labels=spec.labels)
        n += 1
        failed += ex.failed
        correct += ex.answer is not None and ex.answer == gold
    if n == 0:
        raise ValueError("no lines to score")
    return {"benchmark": benchmark, "task": spec.name, "n": n, "accuracy": round(100.0 * correct / n, 2),
            "extraction_failure_rate": round(100.0 * failed / n, 2), "correct": correct, "failed": failed}
