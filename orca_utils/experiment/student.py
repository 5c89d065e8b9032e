"""Notebook 09's student: the task tokenizers (a byte-level BPE trained on the seed's texts, or characters), both
with the same special tokens and chat template, and the small LLaMA-config model trained from scratch."""
from __future__ import annotations

import string
from pathlib import Path

import pandas as pd

from .settings import Settings

__all__ = ["SPECIALS", "CHAT_TEMPLATE", "build_char_tokenizer", "build_task_tokenizer", "seed_tokenizer",
           "build_student"]

SPECIALS = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


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


def seed_tokenizer(s: Settings, responses: pd.DataFrame, folder: Path, key: str):
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
