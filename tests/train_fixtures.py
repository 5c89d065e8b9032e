"""Fixtures for the training tests: a tiny random LLaMA-config student and a fake notebook-02 output folder."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from orca_utils.config import load_profile
from orca_utils.runs import notebook_hash

TINY_LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)


def make_tiny_student(folder: Path, tokenizer_spec: str = "shared:tokenizers/llama", seed: int = 0) -> Path:
    """A random 2-layer LLaMA with the given tokenizer, saved as a loadable HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from orca_utils.models import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_spec)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, **TINY_LLAMA)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


WORDS = "the a cat dog sat ran on under mat tree because therefore so answer step first then finally is".split()


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def make_fake_augmentation(run_root: Path, n1: int = 40, n2: int = 24, seed: int = 0, profile: str = "smoke") -> Path:
    """`<run_root>/02_augmentation/` with train_stage1/2.parquet (02's columns) and a run_info 'ok' for `profile`."""
    rng = random.Random(seed)
    folder = run_root / "02_augmentation"
    folder.mkdir(parents=True, exist_ok=True)
    for stage, n in ((1, n1), (2, n2)):
        rows = [{"id": f"s{stage}-{i}", "system": _text(rng, 0, 6), "user": _text(rng, 3, 12),
                 "response": _text(rng, 2, 16), "teacher": "random words (test fixture)", "teacher_model": "none",
                 "collection": "cot", "task": "t", "system_message_id": 1, "status": "ok", "finish_reason": "stop"}
                for i in range(n)]
        pd.DataFrame(rows).to_parquet(folder / f"train_stage{stage}.parquet")
    key = notebook_hash("02_augmentation", load_profile(profile))
    (folder / "run_info.json").write_text(json.dumps({"notebook": "02_augmentation", "profile": profile,
                                                      "params_hash": key, "status": "ok"}))
    return folder


def tiny_overrides(student: Path, **extra) -> list[str]:
    """Overrides of the 04_training block for a fast CPU run on the tiny student."""
    base = {"student_model": str(student), "max_len_tokens": 128, "per_device_batch_size": 2, "save_steps": 2,
            "save_total_limit": 4,  # keep checkpoint-2: the resume test copies it (smoke keeps only 1)
            "eval_steps": 2, "stage1.max_steps": 4, "stage2.max_steps": 3, "stage1.learning_rate": 1e-3,
            "stage2.learning_rate": 1e-3, "num_generation_examples": 0, "warmup_ratio": 0.0}
    base.update(extra)
    return [f"04_training.{k}={v}" for k, v in base.items()]
