"""One evaluation engine for multiple-choice and exact-match tasks (AGIEval, BBH) over any model backend.

Two modes, both over the same `EvalItem`s (`orca_utils.evaluation.tasks`):
- `generate` (as the paper): the model answers the zero-shot prompt (greedy, chat template, optional system
  message), `orca_utils.evaluation.extract` reads the answer; an unparseable answer is wrong and counted as an
  extraction failure.
- `loglikelihood` (as lm-evaluation-harness scores AGIEval): the answer is the continuation with the highest
  log-likelihood after the raw prompt (`acc`; `acc_norm` divides by the continuation's length in bytes). Only
  choice and boolean tasks have continuations to compare; free-form BBH tasks fall back to generation (the
  `mode` column says which was used).

Every generated answer is scored under both conventions of `orca_utils.evaluation.extract`: `robust` (the
`correct`/`failed` columns, the accuracy the tables lead with) and `published` (the benchmark authors' own rule:
`published_correct`; for BBH the target string "(B)", "True", "12" ...; for AGIEval the label letter).
Log-likelihood answers need no reading, so both conventions agree there.

Averages follow the paper: `macro` is the unweighted mean of the per-task accuracies (the papers' "average" rows
are column means), `micro` is correct / all items.

`score_records` scores saved outputs (one task) the same way, under one convention, line by line: a line that cannot
be scored (no prediction or target, a target that is not an answer of the task) is reported with its line number
and left out, never aborting the rest.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .tasks import EvalItem, get_task
from .extract import CONVENTIONS, extract_answer, normalize_target, score_published

__all__ = ["EvalResult", "evaluate", "summarize", "score_records", "NoScorableLines", "prompt_options",
           "item_published_target", "DEFAULT_STOP", "MODES", "PREDICTION_KEYS", "TARGET_KEYS", "PROMPT_KEYS"]

MODES = ("generate", "loglikelihood")
DEFAULT_STOP = ("Q:",)          # lm-eval bbh_zeroshot stops there (with EOS); chat models end with EOS anyway


@dataclass
class EvalResult:
    """Per-item records, per-task table, macro/micro averages, and timing of one model on one benchmark."""

    records: pd.DataFrame        # task, id, target, prediction, extracted, method, correct, failed, mode,
    #                              published_answer, published_correct, published_failed
    per_task: pd.DataFrame       # task, n, correct, accuracy, failed, failure_rate[, published_correct,
    #                              published_accuracy] (accuracies in %)
    macro: float
    micro: float
    seconds: float
    label: str = ""

    @property
    def has_published(self) -> bool:
        return "published_correct" in self.records.columns

    @property
    def published_macro(self) -> float | None:
        """Macro accuracy (%) under the published convention; None when the records do not carry it."""
        return float(self.per_task["published_accuracy"].mean()) if "published_accuracy" in self.per_task else None

    @property
    def published_micro(self) -> float | None:
        return float(100.0 * self.records["published_correct"].mean()) if self.has_published else None

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
        if self.published_macro is not None:
            out[f"{prefix}/published_macro_accuracy"] = self.published_macro
            out[f"{prefix}/published_micro_accuracy"] = self.published_micro
        for row in self.per_task.to_dict("records"):
            key = row["task"].replace("-", "_")
            out[f"{prefix}/{key}/accuracy"] = row["accuracy"]
            out[f"{prefix}/{key}/extraction_failure_rate"] = row["failure_rate"]
            if "published_accuracy" in row:
                out[f"{prefix}/{key}/published_accuracy"] = row["published_accuracy"]
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
    columns = ["task", "n", "correct", "accuracy", "failed", "failure_rate"]
    if "published_correct" in records.columns:
        per_task["published_correct"] = grouped["published_correct"].sum().to_numpy()
        per_task["published_accuracy"] = 100.0 * per_task["published_correct"] / per_task["n"]
        columns += ["published_correct", "published_accuracy"]
    macro = float(per_task["accuracy"].mean())
    micro = float(100.0 * per_task["correct"].sum() / per_task["n"].sum())
    return per_task[columns], macro, micro


def item_published_target(item: EvalItem) -> str:
    """The gold string the published rule compares with: BBH's target as released ("(B)", "True", "12", "a b"),
    AGIEval's label letter. Items keep the normalized target; a BBH letter is put back in its parentheses."""
    if item.benchmark == "bbh" and item.kind == "choice":
        return f"({item.target})"
    return item.target


def _record(item: EvalItem, prediction: str, mode: str) -> dict[str, Any]:
    ex = extract_answer(prediction, item.kind, options=item.options, labels=item.labels)
    pub_ok, pub = score_published(prediction, item_published_target(item), item.benchmark)
    return {"task": item.task, "id": item.id, "prompt": item.prompt, "target": item.target,
            "prediction": prediction, "extracted": ex.answer, "method": ex.method,
            "correct": ex.answer is not None and ex.answer == item.target, "failed": ex.failed, "mode": mode,
            "published_answer": pub.answer, "published_correct": pub_ok, "published_failed": pub.failed}


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
                    "failed": False, "mode": "loglikelihood", "published_answer": extracted,
                    "published_correct": best == it.gold_index, "published_failed": False})
    return out


def _generate_resumable(backend, items: Sequence[EvalItem], max_new_tokens: int, system_message: str | None,
                        stop: Sequence[str] | None, records_dir: Path, chunk_items: int) -> list[dict]:
    """`_generate` in chunks, each chunk's records written to `records_dir/part-NNNNN.parquet` as soon as it is
    scored: an interrupted evaluation resumes from the parts already written instead of starting over.

    `records_dir` must be specific to the model and the generation settings (the caller keys it by them).
    """
    records_dir = Path(records_dir)
    records_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    parts = sorted(records_dir.glob("part-*.parquet"))
    for part in parts:
        for rec in pd.read_parquet(part).to_dict("records"):
            done[str(rec["id"])] = rec
    todo = [it for it in items if it.id not in done]
    for start in range(0, len(todo), max(1, chunk_items)):
        chunk = todo[start:start + chunk_items]
        records = _generate(backend, chunk, max_new_tokens, system_message, stop)
        path = records_dir / f"part-{len(parts):05d}.parquet"
        tmp = path.with_suffix(".tmp")
        pd.DataFrame(records).to_parquet(tmp, index=False)
        tmp.replace(path)                     # a kill mid-write never leaves a half part
        parts.append(path)
        done.update({r["id"]: r for r in records})
    return [done[it.id] for it in items]


def evaluate(backend, items_by_task: dict[str, list[EvalItem]], *, mode: str = "generate",
             max_new_tokens: int = 256, system_message: str | None = None,
             stop: Sequence[str] | None = DEFAULT_STOP, apply_chat_template: bool = False,
             normalize: bool = False, label: str = "", records_dir: Path | None = None,
             chunk_items: int = 256) -> EvalResult:
    """Score `backend` on every task. All tasks' prompts go to the backend in one call (better batches).

    `apply_chat_template` and `normalize` only matter in log-likelihood mode (lm-eval's defaults: raw prompt,
    `acc`). Free-form tasks are always generated. With `records_dir`, generations are scored and saved
    `chunk_items` at a time and a rerun resumes from what was saved (`_generate_resumable`).
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
    elif records_dir is not None:
        records = _generate_resumable(backend, items, max_new_tokens, system_message, stop, records_dir,
                                      chunk_items)
    else:
        records = _generate(backend, items, max_new_tokens, system_message, stop)
    seconds = time.time() - t0
    order = {it.id: k for k, it in enumerate(items)}
    df = pd.DataFrame(records).sort_values("id", key=lambda s: s.map(order)).reset_index(drop=True)
    per_task, macro, micro = summarize(df)
    return EvalResult(df, per_task, macro, micro, seconds, label or getattr(backend, "label", ""))


PREDICTION_KEYS = ("prediction", "model_output")            # BBH's released files, AGIEval's result schema
TARGET_KEYS = ("target", "label")
PROMPT_KEYS = ("input", "question", "problem_input", "model_input", "query")


def prompt_options(text: str) -> list[str]:
    """Option texts of the LAST question in a prompt (released BBH inputs carry few-shot exemplars before it):
    lines "(A) text", or AGIEval's inline "Answer Choices: (A)text (B)text"."""
    text = str(text)
    last = re.split(r"(?:^|\n\n)Q:\s", text)[-1]
    if "Answer Choices:" in last:
        inline = last.split("Answer Choices:", 1)[1].split("\n")[0]
        return [m.group(2).strip() for m in re.finditer(r"\(([A-R])\)\s*(.*?)(?=\s*\([A-R]\)|$)", inline)]
    return [m.group(2).strip() for m in re.finditer(r"^\(([A-R])\)\s*(.*)$", last, re.MULTILINE)]


def _first(row: dict, keys: Sequence[str]):
    for key in keys:
        if key in row:
            return key, row[key]
    return None, None


class NoScorableLines(ValueError):
    """No line of a file could be scored; `bad_lines` says why for each."""

    def __init__(self, message: str, bad_lines: list[dict]):
        super().__init__(message)
        self.bad_lines = bad_lines


def score_records(rows: Sequence[Any], benchmark: str, task: str, convention: str = "robust",
                  line_numbers: Sequence[int] | None = None) -> dict[str, Any]:
    """Score saved outputs of one task under one convention (`robust` or `published`), line by line.

    Each row holds the model's text (`prediction`, or AGIEval's `model_output`) and the gold answer (`target` or
    `label`); `options` (option texts) or the prompt (`input`, `question`, ...) let the robust reading take option
    text for a letter. Returns accuracy and extraction-failure rate (%) over the scored lines, their Wilson 95%
    interval, `bad_lines` ([{"line", "error"}]: left out, never fatal) and `items` (one verdict per line).
    Raises ValueError when no line could be scored.
    """
    from .stats import wilson_interval

    if convention not in CONVENTIONS:
        raise ValueError(f"convention {convention!r}: expected one of {CONVENTIONS}")
    spec = get_task(benchmark, task)
    numbers = list(line_numbers) if line_numbers is not None else list(range(1, len(rows) + 1))
    items, bad = [], []
    for line, row in zip(numbers, rows):
        try:
            items.append({"line": line, **_score_row(row, spec, benchmark, convention)})
        except ValueError as exc:
            bad.append({"line": line, "error": str(exc)})
            items.append({"line": line, "target": row.get("target") if isinstance(row, dict) else None,
                          "answer": None, "method": "", "verdict": "skipped", "error": str(exc)})
    scored = [it for it in items if it["verdict"] != "skipped"]
    if not scored:
        raise NoScorableLines(f"no line could be scored ({len(bad)} bad line(s))" if bad else "no lines to score",
                              bad)
    n = len(scored)
    correct = sum(it["verdict"] == "correct" for it in scored)
    failed = sum(it["verdict"] == "unparseable" for it in scored)
    lo, hi = wilson_interval(correct, n)
    return {"benchmark": benchmark, "task": spec.name, "convention": convention, "n": n,
            "accuracy": round(100.0 * correct / n, 2), "accuracy_95ci": [round(100 * lo, 2), round(100 * hi, 2)],
            "extraction_failure_rate": round(100.0 * failed / n, 2), "correct": correct, "failed": failed,
            "bad_lines": bad, "items": items}


def _score_row(row: Any, spec, benchmark: str, convention: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    pred_key, prediction = _first(row, PREDICTION_KEYS)
    target_key, target = _first(row, TARGET_KEYS)
    if pred_key is None or target_key is None:
        raise ValueError(f"expected keys 'prediction' (or 'model_output') and 'target' (or 'label'), got "
                         f"{sorted(row)}")
    if target is None or isinstance(target, (list, dict)) or not str(target).strip():
        raise ValueError(f"{target_key} {target!r}: expected one answer")
    if prediction is not None and not isinstance(prediction, str):
        raise ValueError(f"{pred_key} {prediction!r}: expected text")
    if convention == "published":
        ok, ex = score_published(prediction, str(target), benchmark)
    else:
        options = row.get("options")
        if not options and spec.kind == "choice":
            _, prompt = _first(row, PROMPT_KEYS)
            options = prompt_options(prompt) if isinstance(prompt, str) else None
        options = [str(o) for o in options] if options else None
        gold = normalize_target(target, spec.kind, spec.labels, options)
        ex = extract_answer(prediction, spec.kind, options=options, labels=spec.labels)
        ok = ex.answer is not None and ex.answer == gold
    verdict = "correct" if ok else "unparseable" if ex.failed else "wrong"
    return {"target": target, "answer": ex.answer, "method": ex.method, "verdict": verdict, "error": ""}
