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
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import string
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .symbolic import TASKS, count_steps, generate_problems, score
from .symbolic_teacher import SYSTEM_MESSAGES, TEACHER_LABEL, SymbolicTeacher

__all__ = ["VARIANTS", "CONTROLS", "EVAL_STYLE", "ANSWER_MARKER", "Settings", "build_char_tokenizer",
           "build_task_tokenizer", "build_student", "load_bbh_items", "make_problems", "make_curve_items",
           "collect_responses", "style_samples", "plan_runs", "train_run", "generate_answers", "evaluate_run",
           "trace_fidelity", "answer_line_done", "provenance",
           "run_experiment", "check_invariants"]

VARIANTS = ("answer_only", "explanation", "progressive")
CONTROLS = ("same_tokens", "same_epochs")
STYLES_OF = {"answer_only": ["answer"], "explanation": ["full"], "progressive": ["short", "full"]}
EVAL_STYLE = {"answer_only": "answer", "explanation": "full", "progressive": "full"}
ANSWER_MARKER = "So the answer is"
TEACHER_MODEL = "symbolic-teacher"
SPECIALS = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@dataclass
class Settings:
    """What one experiment run uses (from `ExperimentParams`); stored with every result."""
    tasks: list[str]
    seeds: list[int]
    train_problems_per_task: int
    train_tokens: int | None
    seq_len_tokens: int
    batch_size: int
    learning_rate: float
    n_layers: int
    hidden_size: int
    n_heads: int
    eval_items_per_task: int | None
    eval_max_new_tokens: int
    eval_batch_size: int
    tokenizer: str = "bpe"
    tokenizer_vocab_size: int = 1024
    controls: list[str] = field(default_factory=lambda: list(CONTROLS))
    epochs: float = 3.0
    curve: dict[str, list[int]] = field(default_factory=dict)
    curve_items_per_step: int = 20
    stop_at_answer: bool = True
    alpha: float = 0.05
    larger_student: dict[str, int] | None = None
    skip_runs: list[str] = field(default_factory=list)

    @classmethod
    def from_cfg(cls, cfg) -> "Settings":
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)})

    def with_student(self, size: dict[str, int]) -> "Settings":
        return Settings(**{**asdict(self), **size})

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len_tokens

    def curve_tasks(self) -> dict[str, list[int]]:
        """The curve's tasks that are also trained (a curve on an untrained task would say nothing)."""
        return {t: list(k) for t, k in self.curve.items() if t in self.tasks and k}


# ------------------------------------------------------------------ student
def build_char_tokenizer():
    """A character-level fast tokenizer (printable ASCII + newline) with a chat template, built with `tokenizers`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\t\r\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                  additional_special_tokens=SPECIALS[3:])
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def build_task_tokenizer(texts, vocab_size: int = 1024):
    """A byte-level BPE trained on `texts` (digits one per token), with the same specials and chat template as the
    character tokenizer. Deterministic for the same texts in the same order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                  pre_tokenizers.ByteLevel(add_prefix_space=False)])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                  additional_special_tokens=SPECIALS[3:])
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def _seed_tokenizer(s: Settings, responses: pd.DataFrame, folder: Path, key: str):
    """The seed's tokenizer: characters, or a BPE trained on the seed's training texts (saved, reused while the
    settings match, so a resumed run tokenizes exactly as the interrupted one did)."""
    from transformers import AutoTokenizer

    if s.tokenizer == "char":
        return build_char_tokenizer()
    stamp = folder / "orca_settings.json"
    if stamp.exists() and stamp.read_text() == key:
        tok = AutoTokenizer.from_pretrained(folder)
        tok.chat_template, tok.padding_side = CHAT_TEMPLATE, "left"
        return tok
    texts = pd.concat([responses["system"], responses["user"], responses["response"]]).drop_duplicates().tolist()
    tok = build_task_tokenizer(texts, s.tokenizer_vocab_size)
    tok.save_pretrained(folder)
    stamp.write_text(key)
    return tok


def build_student(tokenizer, s: Settings, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=s.hidden_size, intermediate_size=3 * s.hidden_size,
                         num_hidden_layers=s.n_layers, num_attention_heads=s.n_heads,
                         num_key_value_heads=s.n_heads, max_position_embeddings=2 * s.seq_len_tokens,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# ------------------------------------------------------------------ data
def load_bbh_items(data_dir: str | None, offline: bool, task: str, limit: int | None = None) -> pd.DataFrame:
    """The real BBH items of `task` (`item` id, `input`, `target`, `steps`); `limit` takes a fixed random subset
    (seed 0)."""
    from ..data import resolve_dataset

    path = resolve_dataset("bbh", data_dir, offline).path / f"{task}.json"
    if not path.exists():
        raise FileNotFoundError(f"BBH task file {path} not found")
    frame = pd.DataFrame(json.loads(path.read_text())["examples"])[["input", "target"]]
    frame.insert(0, "item", [f"{task}/{i}" for i in range(len(frame))])
    frame.insert(0, "task", task)
    frame["steps"] = [count_steps(task, q) for q in frame["input"]]
    if limit is not None and limit < len(frame):
        frame = frame.sample(n=limit, random_state=0).sort_index()
    return frame.reset_index(drop=True)


def make_problems(tasks: list[str], n_per_task: int, seed: int, data_dir: str | None = None,
                  offline: bool = True) -> pd.DataFrame:
    """Fresh training problems per task; EVERY BBH input of the task is excluded (all items, not only the
    evaluation subset: the subset is a sample, and an unsampled BBH item is still a test item)."""
    rows = []
    for task in tasks:
        every_item = set(load_bbh_items(data_dir, offline, task)["input"])
        for i, text in enumerate(generate_problems(task, n_per_task, seed, exclude=every_item)):
            rows.append({"id": f"{task}-{seed}-{i}", "task": task, "user": text})
    return pd.DataFrame(rows)


def make_curve_items(curve: dict[str, list[int]], n_per_step: int, exclude: dict[str, set[str]]) -> pd.DataFrame:
    """Held-out generated problems with a set number of steps (the difficulty curve), the same for every seed and
    variant; none equals a BBH item or a training problem of any seed (`exclude`, per task)."""
    from .symbolic import solve

    rows = []
    for task, levels in curve.items():
        for k in levels:
            for i, text in enumerate(generate_problems(task, n_per_step, "curve", exclude=exclude.get(task, set()),
                                                       steps=k)):
                rows.append({"task": task, "item": f"curve/{task}/{k}/{i}", "input": text,
                             "target": solve(task, text).answer, "steps": k})
    return pd.DataFrame(rows, columns=["task", "item", "input", "target", "steps"])


def collect_responses(problems: pd.DataFrame, styles: list[str], cache_path: Path,
                      progress: bool = True) -> pd.DataFrame:
    """Ask the symbolic teacher for each problem in each style: the project's teacher client (`complete_chats`,
    cached in `cache_path`) against the local OpenAI-compatible server, exactly as 02 asks GPT-4."""
    from ..schemas import TeacherEndpointParams
    from ..teacher import ChatRequest, complete_chats, serve_offline

    rows = [(row.id, row.task, style, SYSTEM_MESSAGES[style], row.user)
            for style in styles for row in problems.itertuples()]
    requests = [ChatRequest(id=f"{rid}-{style}", model=TEACHER_MODEL, max_tokens=2048,
                            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
                for rid, _, style, system, user in rows]
    local = TeacherEndpointParams(concurrency=16, requests_per_minute=1e7, tokens_per_minute=1e10, max_retries=2)
    with serve_offline({TEACHER_MODEL: SymbolicTeacher()}, local) as endpoint:
        chat = complete_chats(requests, endpoint, cache_path, progress=progress, desc="symbolic teacher")
    out = pd.DataFrame(rows, columns=["id", "task", "style", "system", "user"])
    out["response"] = [r.text for r in chat.results]
    out["status"] = [r.status for r in chat.results]
    out["finish_reason"] = [r.finish_reason for r in chat.results]
    out["teacher"], out["teacher_model"] = TEACHER_LABEL, TEACHER_MODEL
    bad = out[out["status"] != "ok"]
    if len(bad):
        raise RuntimeError(f"symbolic teacher: {len(bad)} of {len(out)} requests not ok "
                           f"({bad['status'].value_counts().to_dict()}); first id {bad['id'].iloc[0]}")
    return out


# ------------------------------------------------------------------ training
def style_samples(responses: pd.DataFrame, tokenizer, s: Settings) -> dict[str, Any]:
    """Each style's responses tokenized once (`orca_utils.tokens`: prompt masked, response + EOS as labels)."""
    from ..tokens import tokenize_samples

    out = {}
    for style, part in responses.groupby("style", sort=False):
        out[style] = tokenize_samples(tokenizer, part["system"].tolist(), part["user"].tolist(),
                                      part["response"].tolist(), max_len_tokens=s.seq_len_tokens)
    return out


def eos_in_loss(samples) -> int:
    """How many samples end with EOS as a label (a response cut by `seq_len_tokens` loses it)."""
    labels, ends = samples.labels_flat(), samples.offsets[1:] - 1
    return int((labels[ends] == samples.eos_token_id).sum())


def plan_runs(s: Settings, samples: dict[str, Any], seed: int) -> list[dict]:
    """The training runs of one seed: per control and variant, its stages [(style, optimizer steps)].

    same_epochs: `epochs` passes over each style's packed sequences (progressive: half short, then half full);
    same_tokens: `train_tokens` per variant, or the explanation student's same_epochs steps when null (that run is
    then identical in both controls and trained once: runs are named by their stages). Every control and variant
    is planned (the plan is cached per seed); `controls` and `skip_runs` select among them. A `larger_student` repeats
    the same_epochs answer-only and explanation runs at its size, as control `same_epochs@L<layers>H<hidden>`."""
    from ..packing import pack_paper

    per_epoch = {st: pack_paper(smp.lengths, s.seq_len_tokens, seed=0).n_sequences for st, smp in samples.items()}

    def passes(style: str, epochs: float) -> tuple[str, int]:
        return style, max(1, math.ceil(epochs * per_epoch[style] / s.batch_size))

    epochs_plan = {"answer_only": [passes("answer", s.epochs)], "explanation": [passes("full", s.epochs)],
                   "progressive": [passes("short", s.epochs / 2), passes("full", s.epochs / 2)]}
    total = s.train_tokens // s.tokens_per_step if s.train_tokens else epochs_plan["explanation"][0][1]
    total = max(2, total)
    tokens_plan = {"answer_only": [("answer", total)], "explanation": [("full", total)],
                   "progressive": [("short", total // 2), ("full", total - total // 2)]}
    runs = []
    for control in CONTROLS:
        for variant in VARIANTS:
            stages = (epochs_plan if control == "same_epochs" else tokens_plan)[variant]
            runs.append({"control": control, "variant": variant, "stages": stages, "size": None,
                         "name": f"seed{seed}_{variant}_" + "-".join(f"{st}{n}" for st, n in stages)})
    if s.larger_student:
        tag = f"L{s.larger_student['n_layers']}H{s.larger_student['hidden_size']}"
        for variant in ("answer_only", "explanation"):
            stages = epochs_plan[variant]
            runs.append({"control": f"same_epochs@{tag}", "variant": variant, "stages": stages,
                         "size": dict(s.larger_student),
                         "name": f"seed{seed}_{variant}_{tag}_" + "-".join(f"{st}{n}" for st, n in stages)})
    for r in runs:
        r["epochs"] = [round(n * s.batch_size / per_epoch[st], 3) for st, n in r["stages"]]
        r["epoch_slack"] = round(sum(s.batch_size / per_epoch[st] for st, _ in r["stages"]), 3)  # whole steps
    return runs


def _packed_stream(samples, s: Settings, n_seqs: int, seed: int) -> dict[str, Any]:
    """`n_seqs` packed sequences, cycling over epochs of the paper's packing (a new shuffle per epoch)."""
    from ..packing import pack_paper, packed_inputs

    chunks, epoch, have = [], 0, 0
    while have < n_seqs:
        plan = pack_paper(samples.lengths, s.seq_len_tokens, seed=seed * 1000 + epoch)
        take = np.arange(min(plan.n_sequences, n_seqs - have))
        chunks.append(packed_inputs(plan, samples, take))
        have, epoch = have + len(take), epoch + 1
    return {k: np.concatenate([c[k] for c in chunks]) for k in ("input_ids", "labels", "position_ids")}


def train_run(run: dict, samples: dict[str, Any], tokenizer, s: Settings, seed: int,
              progress: bool = True) -> tuple[Any, pd.DataFrame, dict]:
    """Train one student through the run's stages; returns (model, per-step log, info)."""
    import torch
    from tqdm.auto import tqdm

    model = build_student(tokenizer, s, seed)
    model.train()
    n_steps = sum(n for _, n in run["stages"])
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, n_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t / n_steps)))))
    info = {"run": run["name"], "seed": seed, "steps": n_steps, "stages": []}
    log, step = [], 0
    bar = tqdm(total=n_steps, desc=f"train {run['name']}", disable=not progress)
    for stage, (style, steps) in enumerate(run["stages"]):
        data = _packed_stream(samples[style], s, steps * s.batch_size, seed * 10 + stage)
        info["stages"].append({"style": style, "steps": steps, "samples": len(samples[style]),
                               "epochs": run["epochs"][stage], "truncated": samples[style].counts["truncated"],
                               "eos_in_loss": eos_in_loss(samples[style])})
        for i in range(steps):
            sl = slice(i * s.batch_size, (i + 1) * s.batch_size)
            batch = {k: torch.from_numpy(data[k][sl]) for k in ("input_ids", "labels", "position_ids")}
            loss = model(**batch).loss          # position_ids restart per sample: block-diagonal attention
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            step += 1
            log.append({"run": run["name"], "seed": seed, "step": step, "style": style, "loss": loss.item(),
                        "tokens": step * s.tokens_per_step,
                        "supervised_tokens": int((batch["labels"] != -100).sum())})
            bar.update(1)
    bar.close()
    model.eval()
    info["tokens"] = step * s.tokens_per_step
    info["epochs"], info["epoch_slack"] = round(sum(run["epochs"]), 3), run["epoch_slack"]
    return model, pd.DataFrame(log), info


# ------------------------------------------------------------------ evaluation
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
    fields = {k: v for k, v in asdict(s).items() if k not in ("seeds", "controls", "skip_runs", "alpha")}
    versions = {"problems": "exclude-all-bbh-items;steps-mix-max7", "eval": "answer-line-stop;trace-fidelity"}
    return json.dumps({**fields, **versions}, sort_keys=True)


def _wanted(s: Settings, run: dict) -> bool:
    """Whether a planned run belongs to this experiment (its control is run and it is not skipped)."""
    control = run["control"].split("@")[0]
    return control in s.controls and f"{run['control']}/{run['variant']}" not in s.skip_runs


def _prepare_seed(s: Settings, problems: pd.DataFrame, seed: int, runs_dir: Path, key: str, prepared: dict,
                  clock: dict, progress: bool, log) -> None:
    """The seed's teacher responses (through the local server), its tokenizer and tokenized samples, timed."""
    t1 = time.time()
    responses = collect_responses(problems, ["answer", "short", "full"], runs_dir / "teacher_cache.sqlite", progress)
    responses.to_parquet(runs_dir / f"seed{seed}_responses.parquet")
    t2 = time.time()
    tokenizer = _seed_tokenizer(s, responses, runs_dir / f"seed{seed}_tokenizer", key)
    prepared.update(tokenizer=tokenizer, samples=style_samples(responses, tokenizer, s))
    clock.update(teacher_s=round(t2 - t1, 1), tokenize_s=round(time.time() - t2, 1))
    log(f"seed {seed}: {len(responses)} teacher responses in {clock['teacher_s']}s, tokenizer and tokenization "
        f"in {clock['tokenize_s']}s")


def run_experiment(s: Settings, data_dir: str | None, offline: bool, out_dir: Path, progress: bool = True,
                   log=print) -> dict[str, pd.DataFrame]:
    """Every seed: problems, teacher responses, tokenizer, then every planned run (train, evaluate on the BBH items
    and the curve items, save under `runs/`; finished runs are reused). Returns frames `eval` (one row per item,
    seed, control and variant), `curves` (training loss), `runs` (per seed, control and variant), `timing`, `items`
    (the evaluation items: BBH and curve) and `responses` (the teacher's responses the students were trained on,
    every seed and style). `runs/` is this function's working folder (resumable parts): read the returned frames,
    not its files."""
    unknown = [t for t in {*s.tasks, *s.curve} if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks {unknown}: the symbolic teacher covers only {list(TASKS)}")
    if s.tokenizer not in ("bpe", "char"):
        raise ValueError(f"tokenizer {s.tokenizer!r}: expected 'bpe' or 'char'")
    if not set(s.controls) <= set(CONTROLS) or not s.controls:
        raise ValueError(f"controls {s.controls}: expected a non-empty subset of {list(CONTROLS)}")
    t0 = time.time()
    bbh = pd.concat([load_bbh_items(data_dir, offline, t, s.eval_items_per_task) for t in s.tasks],
                    ignore_index=True).assign(set="bbh")
    problems = {seed: make_problems(s.tasks, s.train_problems_per_task, seed, data_dir, offline) for seed in s.seeds}
    exclude = {t: set(load_bbh_items(data_dir, offline, t)["input"])
               | {q for p in problems.values() for q in p.loc[p.task == t, "user"]} for t in s.curve_tasks()}
    curve = make_curve_items(s.curve_tasks(), s.curve_items_per_step, exclude).assign(set="curve")
    items = pd.concat([bbh, curve], ignore_index=True)
    log(f"problems and {len(items)} evaluation items ({len(curve)} curve) ready in {time.time() - t0:.1f}s")
    runs_dir = Path(out_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    key = _settings_key(s)
    evals, curves, rows, timing = [], [], [], []
    for seed in s.seeds:
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
                info["train_s"] = round(time.time() - t1, 1)
                t2 = time.time()
                ev = evaluate_run(model, prepared["tokenizer"], run["variant"], items, rs, progress)
                info.update(threads=info_threads, load_avg=round(os.getloadavg()[0], 2))
                info.update(eval_s=round(time.time() - t2, 1), n_params=int(sum(p.numel() for p in model.parameters())),
                            vocab_size=len(prepared["tokenizer"]), tokens_per_s=round(info["tokens"] / info["train_s"]))
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
        timing.append(clock)
    responses = pd.concat(pd.read_parquet(runs_dir / f"seed{seed}_responses.parquet") for seed in s.seeds)
    return {"eval": pd.concat(evals, ignore_index=True), "curves": pd.concat(curves, ignore_index=True),
            "runs": pd.DataFrame(rows), "timing": pd.DataFrame(timing), "items": items, "responses": responses}


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
