"""A Hugging Face causal LM as a backend: batched greedy generation with left padding, and batched log-likelihoods.

`HFBackend` renders each conversation with the tokenizer's chat template (a template-less tokenizer, e.g. LLaMA:
the Orca plain format of `orca_utils.tokens`, the text the student is trained on), left-pads a batch (prompts
sorted by length, so batches carry little padding), and stops a sequence at EOS or at the first stop string; the
returned text is cut before the stop string. `HFBackend.loglikelihood` scores continuations given a context (the way
lm-evaluation-harness scores multiple choice), batched. It also answers the local server's contract (`complete`,
`complete_batch`), so it can be served by `orca_utils.backends.local_server` as a stand-in teacher or judge.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..tokens import plain_bos, render_orca_plain, uses_chat_template
from .base import Backend, Completion, Conversation, cut_at_stop, progress_bar, to_messages

__all__ = ["HFBackend"]


class HFBackend(Backend):
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

        from ..models import load_model_and_tokenizer, pick_device

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
        for batch in progress_bar(batches, len(batches), f"generate ({self.label})", self.progress):
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
        for batch in progress_bar(batches, len(batches), f"loglikelihood ({self.label})", self.progress):
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
