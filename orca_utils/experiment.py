"""The laptop-sized test of Orca's central claim: does a student learn more from explanations than from answers?

One small student, trained from scratch three ways on the SAME problems with the SAME compute:
- `answer_only`: targets are the answers alone ("So the answer is X."), the imitation-learning baseline;
- `explanation`: targets are full step-by-step traces (Orca's explanation tuning);
- `progressive`: short explanations for the first half of the steps, full traces for the second (Orca's
  ChatGPT-then-GPT-4 progressive learning, with a "short" teacher standing in for the easier one).
Fairness: every variant takes exactly `train_tokens // (batch_size * seq_len_tokens)` optimizer steps over packed
sequences of `seq_len_tokens` tokens, so the compute is identical; all variants see the same problems (answer-only
targets being shorter, it simply makes more passes over them). Responses come from the symbolic teacher served by
the local OpenAI-compatible server (`orca_utils.symbolic_teacher`), tokenized by `orca_utils.tokens`, packed by
`orca_utils.packing` (the paper's shuffle-and-fill, samples isolated by restarting position ids), and scored
zero-shot on the real BBH items with `orca_utils.generate.HFBackend` (greedy) and `orca_utils.extract`.

Why a tiny LLaMA-config model with a small task tokenizer: on 2 CPU cores the output layer of a 32k-vocabulary
model alone caps a 20M-parameter student at about 1,000 training tokens/s, far too slow to train three variants
over several seeds in minutes. The default tokenizer is a byte-level BPE of `tokenizer_vocab_size` (1,024) entries
trained with `tokenizers` on each seed's training texts (digits split one per token, as LLaMA does): names and
words become single tokens, so copying a name from the question is one lookup, and sequences are ~4x shorter than
in characters. A character-level tokenizer (`tokenizer: char`) is kept for comparison: in the pilots of 2026-11-29
(one seed, 1.2M tokens per variant, 100 BBH items per task) its students mostly failed to copy names and objects
from the question (web_of_lies explanation student 12% with characters, 40% with the BPE). The same architecture
as LLaMA (RMSNorm, RoPE, SwiGLU) keeps it the paper's student family in miniature.
"""
from __future__ import annotations

import json
import math
import random
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .symbolic import TASKS, generate_problems, score
from .symbolic_teacher import SYSTEM_MESSAGES, TEACHER_LABEL, SymbolicTeacher

__all__ = ["VARIANTS", "SCHEDULES", "EVAL_STYLE", "Settings", "build_char_tokenizer", "build_task_tokenizer",
           "build_student",
           "load_bbh_items", "make_problems", "collect_responses", "train_variant", "evaluate_variant",
           "run_experiment"]

VARIANTS = ("answer_only", "explanation", "progressive")
SCHEDULES = {"answer_only": [("answer", 1.0)], "explanation": [("full", 1.0)],
             "progressive": [("short", 0.5), ("full", 0.5)]}
EVAL_STYLE = {"answer_only": "answer", "explanation": "full", "progressive": "full"}
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
    train_tokens: int
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

    @classmethod
    def from_cfg(cls, cfg) -> "Settings":
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})

    @property
    def steps(self) -> int:
        return max(1, self.train_tokens // (self.batch_size * self.seq_len_tokens))


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
    """The real BBH items of `task` (`input`, `target`); `limit` takes a fixed random subset (seed 0)."""
    from .data import resolve_dataset

    path = resolve_dataset("bbh", data_dir, offline).path / f"{task}.json"
    if not path.exists():
        raise FileNotFoundError(f"BBH task file {path} not found")
    frame = pd.DataFrame(json.loads(path.read_text())["examples"])[["input", "target"]]
    frame.insert(0, "task", task)
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


def collect_responses(problems: pd.DataFrame, styles: list[str], cache_path: Path,
                      progress: bool = True) -> pd.DataFrame:
    """Ask the symbolic teacher for each problem in each style: the project's teacher client (`complete_chats`,
    cached in `cache_path`) against the local OpenAI-compatible server, exactly as 02 asks GPT-4."""
    from .local_server import serve_openai_compatible
    from .schemas import TeacherEndpointParams
    from .teacher import ChatRequest, complete_chats

    rows = [(row.id, row.task, style, SYSTEM_MESSAGES[style], row.user)
            for style in styles for row in problems.itertuples()]
    requests = [ChatRequest(id=f"{rid}-{style}", model=TEACHER_MODEL, max_tokens=2048,
                            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
                for rid, _, style, system, user in rows]
    with serve_openai_compatible({TEACHER_MODEL: SymbolicTeacher()}) as base_url:
        endpoint = TeacherEndpointParams(base_url=base_url, concurrency=16, rpm=1e7, tpm=1e10, max_retries=2)
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
def _packed_stream(responses: pd.DataFrame, tokenizer, s: Settings, n_seqs: int, seed: int) -> dict[str, Any]:
    """`n_seqs` packed sequences, cycling over epochs of the paper's packing (a new shuffle per epoch)."""
    from .packing import pack_paper, packed_inputs
    from .tokens import tokenize_samples

    samples = tokenize_samples(tokenizer, responses["system"].tolist(), responses["user"].tolist(),
                               responses["response"].tolist(), max_len_tokens=s.seq_len_tokens)
    chunks, epoch, have = [], 0, 0
    while have < n_seqs:
        plan = pack_paper(samples.lengths, s.seq_len_tokens, seed=seed * 1000 + epoch)
        take = np.arange(min(plan.n_sequences, n_seqs - have))
        chunks.append(packed_inputs(plan, samples, take))
        have, epoch = have + len(take), epoch + 1
    ids = np.concatenate([c["input_ids"] for c in chunks])
    labels = np.concatenate([c["labels"] for c in chunks])
    pos = np.concatenate([c["position_ids"] for c in chunks])
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "epochs": epoch,
            "samples": len(samples), "truncated": samples.counts["truncated"]}


def train_variant(variant: str, responses: pd.DataFrame, tokenizer, s: Settings, seed: int,
                  progress: bool = True) -> tuple[Any, pd.DataFrame, dict]:
    """Train one student; returns (model, per-step log, info). Same steps and tokens for every variant."""
    import torch
    from tqdm.auto import tqdm

    model = build_student(tokenizer, s, seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, s.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t / s.steps)))))
    log, info, step = [], {"variant": variant, "seed": seed, "steps": s.steps, "stages": []}, 0
    bar = tqdm(total=s.steps, desc=f"train {variant} (seed {seed})", disable=not progress)
    for stage, (style, fraction) in enumerate(SCHEDULES[variant]):
        n_steps = s.steps - step if stage == len(SCHEDULES[variant]) - 1 else int(round(s.steps * fraction))
        data = _packed_stream(responses[responses["style"] == style], tokenizer, s, n_steps * s.batch_size,
                              seed * 10 + stage)
        info["stages"].append({"style": style, "steps": n_steps, "samples": data["samples"],
                               "epochs": data["epochs"], "truncated": data["truncated"]})
        for i in range(n_steps):
            sl = slice(i * s.batch_size, (i + 1) * s.batch_size)
            batch = {k: torch.from_numpy(data[k][sl]) for k in ("input_ids", "labels", "position_ids")}
            loss = model(**batch).loss          # position_ids restart per sample: block-diagonal attention
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
            step += 1
            log.append({"variant": variant, "seed": seed, "step": step, "style": style, "loss": loss.item(),
                        "tokens": step * s.batch_size * s.seq_len_tokens,
                        "supervised_tokens": int((batch["labels"] != -100).sum())})
            bar.update(1)
    bar.close()
    model.eval()
    info["tokens"] = step * s.batch_size * s.seq_len_tokens
    return model, pd.DataFrame(log), info


# ------------------------------------------------------------------ evaluation
def evaluate_variant(model, tokenizer, variant: str, bbh: dict[str, pd.DataFrame], s: Settings,
                     progress: bool = True) -> pd.DataFrame:
    """Zero-shot greedy answers on the real BBH items, prompted with the variant's own system message."""
    from .generate import HFBackend

    backend = HFBackend((model, tokenizer), batch_size=s.eval_batch_size, device="cpu", progress=progress,
                        max_len_tokens=2 * s.seq_len_tokens, label=f"student ({variant})")
    items = pd.concat([bbh[t] for t in s.tasks], ignore_index=True)
    system = SYSTEM_MESSAGES[EVAL_STYLE[variant]]
    outs = backend.generate_completions([[{"role": "system", "content": system}, {"role": "user", "content": q}]
                                         for q in items["input"]], max_new_tokens=s.eval_max_new_tokens)
    scored = [score(task, o.text, t) for o, t, task in zip(outs, items["target"], items["task"])]
    items["prediction"] = [o.text for o in outs]
    items["finish_reason"] = [o.finish_reason for o in outs]
    items["extracted"] = [ex.answer for _, ex in scored]
    items["correct"] = [ok for ok, _ in scored]
    items["variant"] = variant
    return items


# ------------------------------------------------------------------ the whole experiment
def run_experiment(s: Settings, data_dir: str | None, offline: bool, out_dir: Path, progress: bool = True,
                   log=print) -> dict[str, pd.DataFrame]:
    """Every (seed, variant): train, evaluate, save `runs/seed<k>_<variant>.parquet`; finished runs are reused."""
    import torch

    unknown = [t for t in s.tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks {unknown}: the symbolic teacher covers only {list(TASKS)}")
    if s.tokenizer not in ("bpe", "char"):
        raise ValueError(f"tokenizer {s.tokenizer!r}: expected 'bpe' or 'char'")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    bbh = {t: load_bbh_items(data_dir, offline, t, s.eval_items_per_task) for t in s.tasks}
    runs_dir = Path(out_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    # "problems" versions how training problems are made: runs cached under an older rule are never reused.
    key = json.dumps({**asdict(s), "problems": "exclude-all-bbh-items"}, sort_keys=True)
    evals, curves, infos = [], [], []
    for seed in s.seeds:
        responses = None
        for variant in VARIANTS:
            stem = runs_dir / f"seed{seed}_{variant}"
            meta = stem.with_suffix(".json")
            if meta.exists() and json.loads(meta.read_text()).get("settings") == key:
                evals.append(pd.read_parquet(stem.with_name(stem.name + "_eval.parquet")))
                curves.append(pd.read_parquet(stem.with_name(stem.name + "_curve.parquet")))
                infos.append(json.loads(meta.read_text())["info"])
                log(f"seed {seed} {variant}: reused {meta.name}")
                continue
            if responses is None:
                problems = make_problems(s.tasks, s.train_problems_per_task, seed, data_dir, offline)
                responses = collect_responses(problems,
                                              ["answer", "short", "full"], runs_dir / "teacher_cache.sqlite",
                                              progress)
                responses.to_parquet(runs_dir / f"seed{seed}_responses.parquet")
                tokenizer = _seed_tokenizer(s, responses, runs_dir / f"seed{seed}_tokenizer", key)
            t0 = time.time()
            random.seed(seed)
            model, curve, info = train_variant(variant, responses, tokenizer, s, seed, progress)
            info["train_s"] = round(time.time() - t0, 1)
            t1 = time.time()
            ev = evaluate_variant(model, tokenizer, variant, bbh, s, progress).assign(seed=seed)
            info["eval_s"] = round(time.time() - t1, 1)
            info["n_params"] = int(sum(p.numel() for p in model.parameters()))
            info["vocab_size"] = len(tokenizer)
            ev.to_parquet(stem.with_name(stem.name + "_eval.parquet"))
            curve.to_parquet(stem.with_name(stem.name + "_curve.parquet"))
            meta.write_text(json.dumps({"settings": key, "info": info}, indent=2))
            evals.append(ev), curves.append(curve), infos.append(info)
            log(f"seed {seed} {variant}: accuracy {ev['correct'].mean():.3f} (train {info['train_s']}s, "
                f"eval {info['eval_s']}s)")
    return {"eval": pd.concat(evals, ignore_index=True), "curves": pd.concat(curves, ignore_index=True),
            "runs": pd.DataFrame(infos)}
