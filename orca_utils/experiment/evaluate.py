"""Notebook 09's evaluation: zero-shot greedy generation with the answer-line stop rule, scoring on the BBH and
difficulty-curve items (read as notebook 06 reads answers), and how far a prediction follows the teacher's trace."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .settings import EVAL_STYLE, Settings
from .symbolic import score
from .symbolic_teacher import SYSTEM_MESSAGES

__all__ = ["ANSWER_MARKER", "answer_line_done", "generate_answers", "evaluate_run", "trace_fidelity"]

ANSWER_MARKER = "So the answer is"


def answer_line_done(text: str) -> bool:
    """Whether `text` holds a complete answer line: "So the answer is ..." followed by a period or a line end."""
    j = text.rfind(ANSWER_MARKER)
    return j >= 0 and re.search(r"[.\n]", text[j + len(ANSWER_MARKER):]) is not None


def _answer_line_stop(tokenizer, prompt_len: int):
    """A transformers stopping criterion: a row stops once its answer line is complete (checked only when the new
    token holds a period or a line break, on the last 48 generated tokens)."""
    import torch
    from transformers import StoppingCriteria

    ends = torch.tensor([("." in tokenizer.decode([i]) or "\n" in tokenizer.decode([i]))
                         for i in range(len(tokenizer))])

    class AnswerLineStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for i in torch.nonzero(ends[input_ids[:, -1].cpu()]).flatten().tolist():
                tail = input_ids[i, max(prompt_len, input_ids.shape[1] - 48):]
                done[i] = answer_line_done(tokenizer.decode(tail, skip_special_tokens=True))
            return done

    return AnswerLineStop()


def generate_answers(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int, batch_size: int,
                     stop_at_answer: bool = True, progress: bool = False) -> list[dict]:
    """Greedy completions (batched, left-padded, longest prompts first): `text`, `finish_reason` ("eos", "answer_line"
    when the stop rule ended it, "length" at the token cap) and `new_tokens`."""
    import torch
    from tqdm.auto import tqdm

    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    room = model.config.max_position_embeddings - max_new_tokens
    encoded = [ids[-room:] for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    out: list[dict] = [{}] * len(encoded)
    for lo in tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress, leave=False):
        batch = order[lo:lo + batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(batch):
            ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[r, width - len(encoded[i]):] = 1
        criteria = [_answer_line_stop(tokenizer, width)] if stop_at_answer else []
        with torch.inference_mode():
            seqs = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=eos,
                                  stopping_criteria=criteria or None)
        for r, i in enumerate(batch):
            new = seqs[r, width:].tolist()
            hit_eos = eos in new
            new = new[:new.index(eos)] if hit_eos else new
            while new and new[-1] == pad:
                new.pop()
            text = tokenizer.decode(new, skip_special_tokens=True).strip()
            reason = "eos" if hit_eos else "answer_line" if stop_at_answer and answer_line_done(text) else "length"
            out[i] = {"text": text, "finish_reason": reason, "new_tokens": len(new) + hit_eos}
    return out


def evaluate_run(model, tokenizer, variant: str, items: pd.DataFrame, s: Settings,
                 progress: bool = True) -> pd.DataFrame:
    """Zero-shot greedy answers on `items` (BBH and curve), prompted with the variant's own system message."""
    system = SYSTEM_MESSAGES[EVAL_STYLE[variant]]
    outs = generate_answers(model, tokenizer, [[{"role": "system", "content": system},
                                                {"role": "user", "content": q}] for q in items["input"]],
                            s.eval_max_new_tokens, s.eval_batch_size, s.stop_at_answer, progress)
    scored = [score(task, o["text"], t, q) for o, t, task, q in
              zip(outs, items["target"], items["task"], items["input"])]
    items = items.copy()
    items["prediction"] = [o["text"] for o in outs]
    items["finish_reason"] = [o["finish_reason"] for o in outs]
    items["new_tokens"] = [o["new_tokens"] for o in outs]
    items["extracted"] = [ex.answer for _, ex in scored]
    items["correct"] = [ok for ok, _ in scored]
    fidelity = [trace_fidelity(task, q, o["text"]) if EVAL_STYLE[variant] == "full" else (np.nan, np.nan)
                for o, task, q in zip(outs, items["task"], items["input"])]
    items["trace_steps_right"] = [f[0] for f in fidelity]
    items["trace_steps"] = [f[1] for f in fidelity]
    return items


def trace_fidelity(task: str, question: str, prediction: str) -> tuple[int, int]:
    """(leading steps of the teacher's full trace that the prediction reproduces exactly, steps in that trace):
    whether a student can follow the trace it was taught, step by step."""
    from .symbolic import solve

    gold = solve(task, question).steps
    lines = [ln.strip() for ln in (prediction or "").splitlines()]
    right = 0
    for want, got in zip(gold, lines):
        if want.strip() != got:
            break
        right += 1
    return right, len(gold)
