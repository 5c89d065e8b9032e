"""Model backends behind one interface: a local Hugging Face causal LM or any OpenAI-compatible endpoint.

Both backends answer `generate(conversations, max_new_tokens, stop=None, system_message=None) -> list[str]`, where
a conversation is a list of chat messages (`{"role": ..., "content": ...}`) or a plain string (one user turn).
Decoding is greedy (the paper's evaluation). The optional `system_message` is prepended to conversations that have
none; the default is no system message, as in the paper's evaluation.

`HFBackend` renders each conversation with the tokenizer's chat template (a template-less tokenizer, e.g. LLaMA:
the Orca plain format of `orca_utils.tokens`, the text the student is trained on), left-pads a batch (prompts
sorted by length, so batches carry little padding), and stops a sequence at EOS or at the first stop string; the
returned text is cut before the stop string. `HFBackend.loglikelihood` scores continuations given a context (the way
lm-evaluation-harness scores multiple choice), batched. Both backends also expose the local-server contract
(`complete`, `complete_batch` returning objects with `text, finish_reason, prompt_tokens, completion_tokens`), so an
`HFBackend` can be served by `orca_utils.teacher.local_server` as a stand-in teacher.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
from typing import Any, Sequence, Union

__all__ = ["Completion", "HFBackend", "OpenAIBackend", "TeacherClientBackend", "Conversation", "to_messages",
           "cut_at_stop"]

from .teacher.protocol import Completion   # the one result type: text, finish_reason, prompt/completion tokens
from .tokens import plain_bos, render_orca_plain, uses_chat_template

Conversation = Union[str, Sequence[dict]]


def to_messages(conversation: Conversation, system_message: str | None = None) -> list[dict]:
    """A conversation as chat messages; `system_message` (if non-empty) is prepended when there is no system turn."""
    if isinstance(conversation, str):
        messages = [{"role": "user", "content": conversation}]
    else:
        messages = [dict(m) for m in conversation]
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"conversation message {i}: expected a dict with 'role' and 'content', got {m!r}")
    if system_message and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_message})
    return messages


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """`text` cut before the earliest stop string; also whether a stop string was found."""
    cut = len(text)
    for s in stop or ():
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut], cut < len(text)


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


class HFBackend:
    """A Hugging Face causal LM: batched greedy generation with left padding, and batched log-likelihoods.

    `model` is a model spec for `orca_utils.models` (local dir, hub id, `.gguf`, `pkg:`/`shared:` spec) or an
    already loaded `(model, tokenizer)` pair. `max_len_tokens` caps prompt + generation (prompts are cut from the
    left, keeping the question's end and the generation prompt). `dtype` ("auto", "float32", "bfloat16",
    "float16"; auto = bfloat16 on CUDA, float32 on CPU) applies when loading a spec; a loaded pair keeps its own.
    """

    def __init__(self, model: str | tuple[Any, Any], *, batch_size: int = 16, device: str = "auto",
                 dtype: Any = "auto", max_len_tokens: int | None = None, progress: bool = True,
                 label: str | None = None):
        import torch

        from .models import load_model_and_tokenizer, pick_device

        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        if isinstance(model, (tuple, list)):
            if len(model) != 2:
                raise ValueError("model: expected a spec string or a (model, tokenizer) pair")
            self.model, self.tokenizer = model
            self.label = label or getattr(self.model.config, "_name_or_path", None) or type(self.model).__name__
        else:
            self.model, self.tokenizer = load_model_and_tokenizer(model, dtype=dtype, device=device)
            self.label = label or model
        if device != "auto" or not isinstance(model, (tuple, list)):
            self.model.to(pick_device(device))
        self.model.eval()
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.progress = progress
        limit = max_len_tokens or getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_len_tokens = int(limit)
        tok = self.tokenizer
        self.eos_ids = self._eos_ids()
        # Padding never reaches the model's attention (masked), so any id works; we do not mutate the tokenizer.
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_ids[0]
        self._torch = torch

    # ------------------------------------------------------------------ prompts
    def _eos_ids(self) -> list[int]:
        ids = []
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if source is None:
                continue
            ids.extend(source if isinstance(source, (list, tuple)) else [source])
        if not ids:
            raise ValueError(f"{self.label}: the tokenizer defines no eos token; cannot stop generation")
        return list(dict.fromkeys(int(i) for i in ids))

    def render(self, conversation: Conversation, system_message: str | None = None) -> str:
        """The prompt text the model sees, BOS included, ending in the generation prompt.

        The tokenizer's chat template when it has one (a student trained on the plain format carries it as
        `ORCA_PLAIN_TEMPLATE`); otherwise (e.g. LLaMA before tuning) the same Orca plain format, so the prompt is
        the text `orca_utils.tokens` puts before every training response.
        """
        messages = to_messages(conversation, system_message)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return render_orca_plain(messages, plain_bos(self.tokenizer))

    def _encode(self, text: str, rendered: bool = True) -> list[int]:
        """Token ids of `text`. A rendered prompt holds its BOS already, so no special tokens are added (as in
        training); a raw string gets the tokenizer's defaults unless the model has a (non-plain) chat template."""
        special = not rendered and not uses_chat_template(self.tokenizer)
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _left_pad(self, rows: list[list[int]]):
        torch = self._torch
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ generation
    def generate_completions(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                             stop: Sequence[str] | None = None, system_message: str | None = None,
                             batch_size: int | None = None) -> list[Completion]:
        """Greedy completions with their finish reasons and token counts, in the order given."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected >= 1, got {max_new_tokens}")
        torch = self._torch
        stop = [s for s in (stop or []) if s]
        budget = self.max_len_tokens - max_new_tokens
        if budget < 8:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in "
                             f"max_len_tokens={self.max_len_tokens}")
        encoded = [self._encode(self.render(c, system_message))[-budget:] for c in conversations]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))   # longest first: similar lengths
        size = batch_size or self.batch_size
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        out: list[Completion | None] = [None] * len(encoded)
        gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, temperature=None,
                          top_p=None, top_k=None, pad_token_id=self.pad_id, eos_token_id=self.eos_ids)
        if stop:
            gen_kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        for batch in _progress(batches, len(batches), f"generate ({self.label})", self.progress):
            ids, mask = self._left_pad([encoded[i] for i in batch])
            with torch.inference_mode():
                seqs = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
            new = seqs[:, ids.shape[1]:].tolist()
            for row, i in zip(new, batch):
                n_tokens, hit_eos = len(row), False
                for j, t in enumerate(row):
                    if t in self.eos_ids:
                        n_tokens, hit_eos = j, True
                        break
                text = self.tokenizer.decode(row[:n_tokens], skip_special_tokens=True)
                text, hit_stop = cut_at_stop(text, stop)
                if hit_stop:   # tokens after a stop string are padding; count what was really generated
                    n_tokens = len([t for t in row[:n_tokens] if t != self.pad_id]) or n_tokens
                reason = "stop" if hit_eos or hit_stop else "length"
                out[i] = Completion(text.strip(), reason, len(encoded[i]), n_tokens)
        return out  # type: ignore[return-value]

    def generate(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                 stop: Sequence[str] | None = None, system_message: str | None = None) -> list[str]:
        """Greedy generations (texts cut before the first stop string), in the order given."""
        return [c.text for c in self.generate_completions(conversations, max_new_tokens, stop, system_message)]

    # local_server contract
    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        return self.generate_completions([messages], max_tokens, stop)[0]

    def complete_batch(self, requests: list[dict]) -> list[Completion]:
        """Requests (`messages`, `max_tokens`, `stop`) grouped by their settings and generated in batches."""
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((int(r.get("max_tokens") or 256), tuple(r.get("stop") or ())), []).append(i)
        for (max_tokens, stop), idx in groups.items():
            done = self.generate_completions([requests[i]["messages"] for i in idx], max_tokens, list(stop))
            for i, c in zip(idx, done):
                out[i] = c
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ scoring
    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]],
                      system_message: str | None = None) -> list[float]:
        """Sum of log-probabilities of each `continuation` after its context (rendered with the chat template).

        As in lm-evaluation-harness, the continuation's tokens are those of `context + continuation` beyond the
        context's tokens (a leading space moves into the continuation). Batched with left padding.
        """
        torch = self._torch
        rows: list[tuple[list[int], int]] = []          # (tokens, number of continuation tokens)
        for context, continuation in requests:
            rendered = not isinstance(context, str)
            ctx = self.render(context, system_message) if rendered else context
            n_spaces = len(ctx) - len(ctx.rstrip(" "))
            if n_spaces:
                ctx, continuation = ctx[:-n_spaces], ctx[-n_spaces:] + continuation
            ctx_ids = self._encode(ctx, rendered)
            whole = self._encode(ctx + continuation, rendered)
            n_cont = len(whole) - len(ctx_ids)
            if whole[:len(ctx_ids)] != ctx_ids or n_cont < 1:    # tokenizer merged across the boundary
                cont_ids = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
                whole, n_cont = ctx_ids + cont_ids, len(cont_ids)
            if n_cont < 1:
                raise ValueError(f"loglikelihood: empty continuation {continuation!r}")
            rows.append((whole[-self.max_len_tokens:], n_cont))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        out = [0.0] * len(rows)
        for batch in _progress(batches, len(batches), f"loglikelihood ({self.label})", self.progress):
            # Left padding puts every continuation at the end, so only the last `keep` positions need logits
            # (a full [batch, length, vocab] tensor is gigabytes for long AGIEval passages).
            ids, mask = self._left_pad([rows[i][0] for i in batch])
            keep = max(rows[i][1] for i in batch) + 1
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                                    logits_to_keep=keep).logits
            logprobs = torch.log_softmax(logits[:, -keep:].float(), dim=-1)    # position j predicts token j+1
            for k, i in enumerate(batch):
                toks, n_cont = rows[i]
                targets = torch.tensor(toks[len(toks) - n_cont:], device=logprobs.device)
                picked = logprobs[k, keep - 1 - n_cont:keep - 1].gather(-1, targets[:, None])
                out[i] = float(picked.sum())
        return out


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, llama.cpp server, Ollama, our local server).

    The key is read from the environment variable named `api_key_env` (never passed as a value). A local endpoint
    (127.0.0.1 / localhost) needs no key. Requests run `concurrency` at a time; the `openai` client retries
    rate limits and server errors `max_retries` times with backoff.
    """

    def __init__(self, base_url: str | None, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 120.0, max_retries: int = 5, concurrency: int = 4, progress: bool = True,
                 label: str | None = None):
        from openai import OpenAI

        key = os.environ.get(api_key_env)
        local = bool(base_url) and any(h in base_url for h in ("127.0.0.1", "localhost", "[::1]"))
        if not key and not local:
            raise RuntimeError(f"OpenAIBackend({model!r}): environment variable {api_key_env} is not set; "
                               f"export it (the key is never read from params)")
        self.client = OpenAI(base_url=base_url, api_key=key or "local-no-key", timeout=timeout_s,
                             max_retries=max_retries)
        self.model, self.base_url = model, base_url
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self.label = label or model

    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        from .teacher import ChatRequest, dialect_for, request_body

        stop = [s for s in (stop or []) if s]
        request = ChatRequest("eval", self.model, messages, max_tokens, temperature, stop[:4] or None,
                              dialect_for(self.model))
        resp = self.client.chat.completions.create(**request_body(request))
        choice = resp.choices[0]
        text, hit = cut_at_stop(choice.message.content or "", stop)   # servers may only honour 4 stop strings
        usage = resp.usage
        return Completion(text.strip(), "stop" if hit else (choice.finish_reason or "stop"),
                          getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)

    def generate_completions(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                             stop: Sequence[str] | None = None, system_message: str | None = None
                             ) -> list[Completion]:
        messages = [to_messages(c, system_message) for c in conversations]
        out: list[Completion | None] = [None] * len(messages)
        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self.complete, m, max_new_tokens, 0.0, list(stop or [])): i
                       for i, m in enumerate(messages)}
            for fut in _progress(concurrent.futures.as_completed(futures), len(futures),
                                 f"generate ({self.label})", self.progress):
                out[futures[fut]] = fut.result()
        return out  # type: ignore[return-value]

    def generate(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                 stop: Sequence[str] | None = None, system_message: str | None = None) -> list[str]:
        return [c.text for c in self.generate_completions(conversations, max_new_tokens, stop, system_message)]

    def complete_batch(self, requests: list[dict]) -> list[Completion]:
        return [self.complete(r["messages"], int(r.get("max_tokens") or 256), float(r.get("temperature") or 0.0),
                              r.get("stop")) for r in requests]

    def loglikelihood(self, requests, system_message=None):
        raise NotImplementedError(f"{self.label}: chat endpoints return no prompt log-probabilities; score this "
                                  f"model in generation mode (mode='generate')")


class TeacherClientBackend:
    """A paid API model scored like a local one, through the teacher client (`orca_utils.teacher.complete_chats`):
    every answer lands in a SQLite response cache before it is used (a rerun pays nothing twice), requests are
    paced and retried like 02's, the model's dialect (chat or reasoning) is the registry's, and `max_cost_usd` caps
    the spend over every call of this backend (prices from the registry by model name unless given).

    Answers a reasoning model's hidden reasoning left empty or cut (`empty`, `truncated`), refusals and filtered
    answers are scored as they are (an empty answer is wrong, an extraction failure) and counted:
    `status_counts` (Counter over every answer), `statuses` ({prompt: status}), `reasoning_tokens`. Only `error`
    and `not_sent` stop the evaluation (rerun to resume). `stop` is not sent to a model that rejects it; the
    answer is cut at the stop string here instead, so scoring is unchanged."""

    def __init__(self, model, endpoint, cache_path, max_cost_usd: float | None = None, progress: bool = True):
        from collections import Counter

        self.model, self.endpoint, self.cache_path = model, endpoint, cache_path
        self.max_cost_usd, self.progress = max_cost_usd, progress
        self.label = model.label
        self.spent_usd = 0.0
        self.status_counts: Counter = Counter()
        self.statuses: dict[str, str] = {}
        self.reasoning_tokens = 0

    def generate_completions(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                             stop: Sequence[str] | None = None, system_message: str | None = None
                             ) -> list[Completion]:
        from .teacher import ChatRequest, Prices, complete_chats

        stop = [x for x in (stop or []) if x][:4] or None
        requests = [ChatRequest(f"{self.model.model}-{i}", self.model.model, to_messages(c, system_message),
                                max_new_tokens, 0.0, stop, self.model.dialect, self.model.reasoning_effort)
                    for i, c in enumerate(conversations)]
        prices = Prices(self.model.price_input_usd_per_1k or 0.0, self.model.price_output_usd_per_1k or 0.0)
        left = None if self.max_cost_usd is None else max(0.0, self.max_cost_usd - self.spent_usd)
        run = complete_chats(requests, self.endpoint, self.cache_path, prices=prices, max_cost_usd=left,
                             progress=self.progress, desc=f"generate ({self.label})")
        self.spent_usd += float(run.stats.get("spent_usd", 0.0))
        failed = [r for r in run.results if r.status in ("error", "not_sent")]
        if failed:
            raise RuntimeError(f"{self.label}: {len(failed)} of {len(requests)} requests not answered "
                               f"({failed[0].status}: {failed[0].error}); answers so far are cached in "
                               f"{self.cache_path}: rerun to resume")
        out = []
        for c, r in zip(conversations, run.results):
            self.status_counts[r.status] += 1
            self.statuses[c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)] = r.status
            self.reasoning_tokens += int(getattr(r, "reasoning_tokens", 0) or 0)
            text, hit = cut_at_stop(r.text or "", stop or [])
            out.append(Completion(text.strip(), "stop" if hit else (r.finish_reason or "stop"), r.prompt_tokens,
                                  r.completion_tokens))
        return out

    def generate(self, conversations: Sequence[Conversation], max_new_tokens: int = 256,
                 stop: Sequence[str] | None = None, system_message: str | None = None) -> list[str]:
        return [c.text for c in self.generate_completions(conversations, max_new_tokens, stop, system_message)]

    def loglikelihood(self, requests, system_message=None):
        raise NotImplementedError(f"{self.label}: chat endpoints return no prompt log-probabilities; score this "
                                  f"model in generation mode (mode='generate')")

