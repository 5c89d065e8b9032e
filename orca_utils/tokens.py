"""Tokenization: a tokenizer with a real pad token, and THE serialization `<system, user, response>` -> ids, labels.

Analysis (notebook 03) and training (notebook 04) both call `tokenize_samples`, so the token counts we report and the
tokens the student learns from cannot drift apart.

Pad token. The paper adds `[[PAD]]` to LLaMA's 32,000-entry vocabulary (id 32000, 32,001 entries). A tokenizer
whose pad token is its EOS token (SmolLM2-135M-Instruct: pad == eos == `<|im_end|>`) gets a distinct `[[PAD]]` too:
with pad == eos any collator that masks padding by id also masks the EOS label, and the student never learns to stop.
Adding a token grows the vocabulary by one, so the model's embeddings MUST be resized before training:
`resize_embeddings(model, tokenizer)` (the new row never receives gradient: pad positions are label -100).

Serialization (one sample = one system message, one user turn, one response):
- Chat-template tokenizers (SmolLM2: ChatML): prompt = the template rendered for [system, user] with the generation
  prompt (`<|im_start|>assistant\\n`); response = the response text followed by the EOS token (`<|im_end|>` for
  ChatML). The system turn is ALWAYS rendered, even when the system message is empty: Orca's system message 1 is
  the empty one, and omitting the turn would make SmolLM2's template inject its own default system prompt ("You are
  a helpful AI assistant named SmolLM..."), a message the teacher never saw. `system_turn="if_nonempty"` restores
  the template's default behaviour.
- Tokenizers without a chat template (LLaMA): an Orca-style plain format, BOS + prompt + response + EOS with
      prompt = "### System:\\n{system}\\n\\n### User:\\n{user}\\n\\n### Response:\\n"
  (the `### System:` block is left out when the system message is empty; the paper does not publish its exact
  format, this one is the common Orca-replica convention). `render_orca_plain` is the one definition of this text,
  and `ORCA_PLAIN_TEMPLATE` the same format as a Jinja chat template: training saves it with a template-less
  student (`attach_orca_plain_template`), so every later load of the student renders its prompts the way it
  was trained. The BOS is part of the prompt TEXT (the template starts with `{{ bos_token }}`) and prompts are
  tokenized with `add_special_tokens=False`, as prompts rendered by chat templates are.
- Prompt and response are tokenized SEPARATELY and concatenated, so the loss mask is exact by construction (no
  search for a response template in the token stream). labels = -100 on every prompt token, the response token ids
  (and its EOS) elsewhere. With SentencePiece (LLaMA) the separately tokenized response starts with its dummy-prefix
  `▁`; that is what the student then learns to generate after the prompt, consistently in training and inference.
- Longer than `max_len_tokens`: `overflow="truncate_response"` keeps the prompt and cuts the response (losing its
  EOS, correctly: the response did not end there); a sample whose prompt leaves fewer than `min_response_tokens`
  is dropped. `overflow="drop"` drops every overlong sample. Both are counted in `TokenizedSamples.counts`.
  `max_len_tokens=None` keeps every sample whole: the token store that 03 and 04 share (`orca_utils.train_data`)
  holds whole samples and applies `apply_overflow` at whatever max_len it is read at.
- `tokenizer_fingerprint` names what of a tokenizer shapes these ids (vocabulary, merges, normalizer, special
  tokens, the prompt format rendered): the token store is keyed by it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal

import numpy as np

from .models import PAD_TOKEN, load_tokenizer

__all__ = [
    "IGNORE_INDEX",
    "ORCA_PLAIN_FORMAT",
    "ORCA_PLAIN_TEMPLATE",
    "PAD_TOKEN",
    "TokenizedSamples",
    "attach_orca_plain_template",
    "ensure_pad_token",
    "load_padded_tokenizer",
    "render_orca_plain",
    "render_prompt",
    "resize_embeddings",
    "tokenize_frame",
    "tokenize_samples",
    "tokenizer_fingerprint",
    "uses_chat_template",
]

IGNORE_INDEX = -100
ORCA_PLAIN_TURNS = {"system": "### System:\n{content}\n\n", "user": "### User:\n{content}\n\n",
                    "assistant": "### Response:\n{content}\n\n"}
ORCA_PLAIN_GENERATION = "### Response:\n"
ORCA_PLAIN_FORMAT = ORCA_PLAIN_TURNS["user"].format(content="{user}") + ORCA_PLAIN_GENERATION   # a user turn
# The same format as a Jinja chat template (transformers renders it with trim_blocks and lstrip_blocks; no
# newline here follows a block tag, so both leave the text alone). An empty system message renders nothing.
ORCA_PLAIN_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] %}### System:\n{{ message['content'] }}\n\n{% endif %}"
    "{% elif message['role'] == 'user' %}### User:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'assistant' %}### Response:\n{{ message['content'] }}\n\n"
    "{% else %}{{ raise_exception('the Orca plain format has no role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)
Overflow = Literal["truncate_response", "drop"]
PromptFormat = Literal["auto", "chat_template", "orca_plain"]


def ensure_pad_token(tokenizer, pad_token: str = PAD_TOKEN) -> bool:
    """Give `tokenizer` a pad token distinct from EOS (adds `pad_token` when needed). Returns True if one was added.

    After an addition the vocabulary is one larger: resize the model with `resize_embeddings(model, tokenizer)`.
    """
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad_id is not None and pad_id != eos_id:
        return False
    before = len(tokenizer)
    tokenizer.add_special_tokens({"pad_token": pad_token})
    if tokenizer.pad_token_id == eos_id:
        raise ValueError(f"could not give the tokenizer a pad token distinct from EOS {tokenizer.eos_token!r}")
    return len(tokenizer) > before


def load_padded_tokenizer(spec: str, pad_token: str = PAD_TOKEN, **kwargs):
    """`orca_utils.models.load_tokenizer(spec)` with a pad token distinct from EOS (`[[PAD]]` added if needed).

    `spec`: a local directory, `shared:tokenizers/llama` (LLaMA: 32,001 entries, `[[PAD]]` = 32000), a GGUF /
    `pkg:` model spec, or a hub id. Padding side is right (training); generation code sets its own.
    """
    tokenizer = load_tokenizer(spec, **kwargs)
    ensure_pad_token(tokenizer, pad_token)
    tokenizer.padding_side = "right"
    return tokenizer


def resize_embeddings(model, tokenizer, pad_to_multiple_of: int | None = None) -> int:
    """Resize `model`'s (tied or untied) embeddings to `len(tokenizer)` and record the pad id in its configs.

    Needed after `ensure_pad_token` added a token. Returns the new embedding count (>= len(tokenizer)).
    """
    current = model.get_input_embeddings().weight.shape[0]
    if current < len(tokenizer) or pad_to_multiple_of:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.get_input_embeddings().weight.shape[0]


def has_orca_plain_template(tokenizer) -> bool:
    """Whether the tokenizer's chat template is `ORCA_PLAIN_TEMPLATE` (a student trained on the plain format)."""
    return getattr(tokenizer, "chat_template", None) == ORCA_PLAIN_TEMPLATE


def uses_chat_template(tokenizer, prompt_format: PromptFormat = "auto") -> bool:
    """Whether `render_prompt` goes through the tokenizer's chat template (False: the Orca plain format).

    With "auto", a tokenizer carrying `ORCA_PLAIN_TEMPLATE` counts as plain: the text is the same either way, and
    a student trained in two stages reports one format for both.
    """
    if prompt_format == "chat_template":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt_format='chat_template' but the tokenizer has no chat template")
        return True
    if prompt_format == "orca_plain":
        return False
    if prompt_format != "auto":
        raise ValueError(f"prompt_format {prompt_format!r}: expected 'auto', 'chat_template' or 'orca_plain'")
    return bool(getattr(tokenizer, "chat_template", None)) and not has_orca_plain_template(tokenizer)


def plain_bos(tokenizer) -> str:
    """The BOS text that starts a plain-format prompt ("" for a tokenizer without a BOS token)."""
    return (tokenizer.bos_token or "") if tokenizer.bos_token_id is not None else ""


def render_orca_plain(messages: Sequence[dict], bos_token: str = "", add_generation_prompt: bool = True) -> str:
    """Chat messages in the Orca plain format: the one definition `ORCA_PLAIN_TEMPLATE` mirrors.

    `bos_token` + per message: `### System:` (left out when empty), `### User:`, `### Response:` blocks, each
    content followed by a blank line; then `### Response:\\n` when `add_generation_prompt`.
    """
    parts = [bos_token]
    for m in messages:
        role, content = m["role"], m["content"]
        if role not in ORCA_PLAIN_TURNS:
            raise ValueError(f"the Orca plain format has no role {role!r}")
        if role != "system" or content:
            parts.append(ORCA_PLAIN_TURNS[role].format(content=content))
    if add_generation_prompt:
        parts.append(ORCA_PLAIN_GENERATION)
    return "".join(parts)


def attach_orca_plain_template(tokenizer) -> bool:
    """Give a template-less tokenizer `ORCA_PLAIN_TEMPLATE`, so a saved student carries its prompt format.

    A tokenizer that already has a chat template keeps it (training rendered prompts with it). Returns True if
    the template was attached.
    """
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = ORCA_PLAIN_TEMPLATE
    return True


def render_prompt(tokenizer, system: str, user: str, prompt_format: PromptFormat = "auto",
                  system_turn: Literal["always", "if_nonempty"] = "always") -> str:
    """The prompt text (everything before the response) for one sample; generation should use the same text."""
    messages = [{"role": "user", "content": user}]
    if system or system_turn == "always":
        messages.insert(0, {"role": "system", "content": system})
    if uses_chat_template(tokenizer, prompt_format):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return render_orca_plain(messages, plain_bos(tokenizer))


@dataclass
class TokenizedSamples:
    """Kept samples in a flat (CSR) layout: sample i is `input_ids[offsets[i]:offsets[i+1]]`.

    Its first `prompt_lengths[i]` tokens are the prompt (label -100), the rest the response (+ EOS unless cut).
    `source_index[i]` is the sample's row in the input. Per input row (kept or not): `prompt_tokens_all`,
    `response_tokens_all` (before truncation, response counted with its EOS) and `status_all`
    ("ok" | "truncated" | "dropped").
    """

    input_ids: np.ndarray
    offsets: np.ndarray
    prompt_lengths: np.ndarray
    source_index: np.ndarray
    prompt_tokens_all: np.ndarray
    response_tokens_all: np.ndarray
    status_all: np.ndarray
    max_len_tokens: int | None
    overflow: str
    prompt_format: str
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def response_lengths(self) -> np.ndarray:
        return self.lengths - self.prompt_lengths

    @property
    def counts(self) -> dict[str, int]:
        status = self.status_all
        return {"rows": len(status), "kept": len(self), "truncated": int((status == "truncated").sum()),
                "dropped": int((status == "dropped").sum())}

    def labels_flat(self) -> np.ndarray:
        """Labels aligned with `input_ids`: -100 on prompt tokens, the token id on response (+ EOS) tokens."""
        labels = self.input_ids.astype(np.int64)
        lengths = self.lengths
        position = np.arange(len(labels)) - np.repeat(self.offsets[:-1], lengths)
        labels[position < np.repeat(self.prompt_lengths, lengths)] = IGNORE_INDEX
        return labels

    def sample(self, i: int, attention_mask: bool = True) -> dict[str, list[int]]:
        """One sample as model inputs: `input_ids`, `labels` (and `attention_mask` of ones)."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        ids = self.input_ids[lo:hi].tolist()
        p = int(self.prompt_lengths[i])
        out = {"input_ids": ids, "labels": [IGNORE_INDEX] * p + ids[p:]}
        if attention_mask:
            out["attention_mask"] = [1] * len(ids)
        return out

    def to_records(self, attention_mask: bool = True) -> list[dict[str, list[int]]]:
        return [self.sample(i, attention_mask) for i in range(len(self))]


def _rows(name: str, values: Sequence[Any], n: int) -> list[str]:
    if len(values) != n:
        raise ValueError(f"tokenize_samples: {name!r} has {len(values)} rows, expected {n}")
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise ValueError(f"tokenize_samples: {name!r} must hold strings; rows {bad[:5]} hold "
                         f"{type(values[bad[0]]).__name__}")
    return list(values)


def apply_overflow(prompt_tokens, response_tokens, max_len_tokens: int, overflow: Overflow = "truncate_response",
                   min_response_tokens: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The truncation policy on token counts: (status per row "ok"|"truncated"|"dropped", kept length per row).

    `response_tokens` count the EOS. Dropped rows get length 0. `tokenize_samples` applies exactly this, so an
    analysis at another max_len can reuse one tokenization's counts.
    """
    p_len, r_len = np.asarray(prompt_tokens, dtype=np.int64), np.asarray(response_tokens, dtype=np.int64)
    if overflow not in ("truncate_response", "drop"):
        raise ValueError(f"overflow {overflow!r}: expected 'truncate_response' or 'drop'")
    too_long = p_len + r_len > max_len_tokens
    status = np.full(len(p_len), "ok", dtype=object)
    if overflow == "drop":
        status[too_long] = "dropped"
    else:
        status[too_long] = "truncated"
        status[too_long & (max_len_tokens - p_len < min_response_tokens)] = "dropped"
    kept = np.where(status == "dropped", 0, np.minimum(p_len + r_len, max_len_tokens))
    return status.astype(str), kept


def tokenize_samples(tokenizer, system: Sequence[str], user: Sequence[str], response: Sequence[str], *,
                     max_len_tokens: int | None = 2048, overflow: Overflow = "truncate_response",
                     prompt_format: PromptFormat = "auto", system_turn: Literal["always", "if_nonempty"] = "always",
                     min_response_tokens: int = 1, batch_size: int = 2000,
                     progress: bool = False) -> TokenizedSamples:
    """Serialize `<system, user, response>` rows into input ids and labels (see the module docstring).

    Batched: the fast tokenizer encodes `batch_size` prompts and responses per call. `max_len_tokens=None`: no limit,
    every sample kept whole (status "ok").
    """
    n = len(user)
    system, user, response = _rows("system", system, n), _rows("user", user, n), _rows("response", response, n)
    if overflow not in ("truncate_response", "drop"):
        raise ValueError(f"overflow {overflow!r}: expected 'truncate_response' or 'drop'")
    if (max_len_tokens is not None and max_len_tokens < 2) or min_response_tokens < 1:
        raise ValueError(f"max_len_tokens ({max_len_tokens}) must be >= 2 and min_response_tokens "
                         f"({min_response_tokens}) >= 1")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: responses could never end")
    chat = uses_chat_template(tokenizer, prompt_format)
    prompt_ids: list[list[int]] = []
    response_ids: list[list[int]] = []
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=(n + batch_size - 1) // batch_size, desc="tokenize", unit="batch")
    for lo in starts:
        hi = min(lo + batch_size, n)
        prompts = [render_prompt(tokenizer, system[i], user[i], prompt_format, system_turn) for i in range(lo, hi)]
        prompt_ids += tokenizer(prompts, add_special_tokens=False)["input_ids"]
        response_ids += [ids + [eos] for ids in tokenizer(response[lo:hi], add_special_tokens=False)["input_ids"]]
    p_len = np.fromiter(map(len, prompt_ids), dtype=np.int64, count=n)
    r_len = np.fromiter(map(len, response_ids), dtype=np.int64, count=n)
    limit = np.iinfo(np.int64).max if max_len_tokens is None else max_len_tokens         # None: nothing is cut
    status, kept_len = apply_overflow(p_len, r_len, limit, overflow, min_response_tokens)
    keep = np.flatnonzero(status != "dropped")
    r_kept = kept_len[keep] - p_len[keep]
    flat = np.fromiter(chain.from_iterable(chain(prompt_ids[i], response_ids[i][:r]) for i, r in
                                           zip(keep.tolist(), r_kept.tolist())),
                       dtype=np.int32, count=int(p_len[keep].sum() + r_kept.sum()))
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(p_len[keep] + r_kept, out=offsets[1:])
    return TokenizedSamples(
        input_ids=flat, offsets=offsets, prompt_lengths=p_len[keep], source_index=keep,
        prompt_tokens_all=p_len, response_tokens_all=r_len, status_all=status,
        max_len_tokens=max_len_tokens, overflow=overflow, prompt_format="chat_template" if chat else "orca_plain",
        pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
        meta={"tokenizer": getattr(tokenizer, "name_or_path", ""), "vocab_size": len(tokenizer),
              "system_turn": system_turn})


def tokenizer_fingerprint(tokenizer, prompt_format: PromptFormat = "auto",
                          system_turn: Literal["always", "if_nonempty"] = "always") -> str:
    """16 hex digits naming what shapes the ids `tokenize_samples` writes with `tokenizer`: its vocabulary, merges,
    normalizer and pre-tokenizer (the fast backend), special token ids, size, and the prompt format it renders (the
    chat template when one is used, else the Orca plain format and its BOS text).

    Two loads of the same tokenizer share it, whatever their spec: the LLaMA tokenizer from `llama_tokenizer` and
    from `student_model`; a student saved by 04 with `ORCA_PLAIN_TEMPLATE` attached and its template-less base (the
    same text either way). The backend's truncation and padding settings, which a call may have left set, are not
    part of it.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        body = json.loads(backend.to_str())
        body.pop("truncation", None)
        body.pop("padding", None)
    else:                                   # a slow tokenizer: its vocabulary
        body = sorted(tokenizer.get_vocab().items())
    if uses_chat_template(tokenizer, prompt_format):
        rendered = ["chat_template", tokenizer.chat_template]
    else:
        rendered = ["orca_plain", plain_bos(tokenizer)]
    what = [body, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id, len(tokenizer), rendered,
            system_turn]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenize_frame(tokenizer, frame, **kwargs) -> TokenizedSamples:
    """`tokenize_samples` over a DataFrame with string columns `system`, `user`, `response` (02's train files)."""
    missing = [c for c in ("system", "user", "response") if c not in frame.columns]
    if missing:
        raise ValueError(f"tokenize_frame: missing column(s) {missing}; have {list(frame.columns)}")
    return tokenize_samples(tokenizer, frame["system"].fillna("").tolist(), frame["user"].tolist(),
                            frame["response"].tolist(), **kwargs)
