"""GPU memory (`check_memory`, arithmetic in `training_memory` / `inference_memory`, sizes from the student's
config.json or `PUBLISHED_CONFIGS`) and the projections of 02's wall time and 04's GPU hours (`check_projections`,
arithmetic in `orca_utils.projections`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..models import ModelSpecError, resolve_model
from ..train import planned_world_size
from ..projections import STAGES as PROJECTED_STAGES, augmentation_hours, training_gpu_hours   # 02's time, 04's hours
from .findings import (ASSUMED_PROMPT_TOKENS, GB, GPU_NOTEBOOKS, Finding, Note, Options, Problem, hub_offline,
                       param_owner)
from .launch import read_accelerate

__all__ = ["MemoryEstimate", "ModelDims", "PUBLISHED_CONFIGS", "check_memory", "check_projections", "cuda_free_memory",
           "estimate_memory", "inference_memory", "load_model_config", "model_dims", "training_memory"]


# ---- 5. GPU memory -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDims:
    n_params: int
    n_layers: int
    hidden: int
    vocab: int
    kv_dim: int                    # key/value heads x head dim (the KV cache's width per layer)
    max_positions: int | None


def model_dims(config: dict) -> ModelDims:
    """Sizes of a decoder-only transformer from its HF `config.json` (ValueError naming what is missing).

    Parameters, unless the config states `num_parameters`:
        V*h (embeddings; twice when the output head is untied) + h (final norm)
        + L * (h*q + 2*h*kv + q*h [attention: q, k, v, o]  +  m*h*i*E [MLP]  +  2*h [norms])
    with q = heads x head_dim, kv = kv_heads x head_dim, i = intermediate size, E = experts (1 if dense) and
    m = 3 for gated MLPs (SiLU/SwiGLU, e.g. LLaMA), else 2. LLaMA-13B: 13.016e9.
    """
    c = config.get("text_config") or config
    pick = lambda *names: next((c[n] for n in names if c.get(n) is not None), None)
    h, layers = pick("hidden_size", "n_embd", "d_model"), pick("num_hidden_layers", "n_layer", "num_layers")
    heads, vocab = pick("num_attention_heads", "n_head"), pick("vocab_size")
    missing = [n for n, v in [("hidden_size", h), ("num_hidden_layers", layers), ("num_attention_heads", heads),
                              ("vocab_size", vocab)] if v is None]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)}")
    head_dim = pick("head_dim") or h // heads
    kv = (pick("num_key_value_heads") or heads) * head_dim
    n = pick("num_parameters")
    if n is None:
        gated = c.get("hidden_act") in ("silu", "swish", "swiglu") or str(c.get("model_type", "")).startswith("gemma")
        mlp = (3 if gated else 2) * h * (pick("intermediate_size", "n_inner", "ffn_dim") or 4 * h)
        attn = 2 * h * heads * head_dim + 2 * h * kv
        tied = c.get("tie_word_embeddings", config.get("tie_word_embeddings", True))
        n = vocab * h * (1 if tied else 2) + h + layers * (attn + mlp * (pick("num_local_experts", "num_experts") or 1)
                                                            + 2 * h)
    return ModelDims(int(n), layers, h, vocab, kv, pick("max_position_embeddings", "n_positions"))


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict[str, float]        # bytes per device, by what holds them

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        return f"{_size(self.total)} = " + " + ".join(f"{_size(v)} {k}" for k, v in self.parts.items())


def _size(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def training_memory(n_params: float, n_layers: int, hidden: int, vocab: int, *, weight_bytes: int, batch: int,
                    seq_len: int, checkpointing: bool, shards: tuple[int, int, int] = (1, 1, 1),
                    fp32_master: bool = False) -> MemoryEstimate:
    """Bytes per device to train a decoder with AdamW (w = weight_bytes: 4 fp32, 2 bf16/fp16, the compute dtype).

    Pure precision (`fp32_master=False`: fp32 training, or bf16 weights trained as bf16 in one process):
        weights     = P * w / s_w
        grads       = P * w / s_g
        AdamW       = 2 * P * w / s_o                  (exp_avg and exp_avg_sq, in the parameters' dtype)
    Mixed precision (`fp32_master=True`: an accelerate config with `mixed_precision: bf16` / `fp16` under FSDP or
    DeepSpeed). FSDP upcasts the sharded parameters to fp32 and computes in bf16: the sharded state is fp32
    master weights, fp32 gradients (reduced in fp32) and fp32 AdamW moments, 16 bytes per parameter, plus the bf16
    copy of the layers gathered for compute (the current one and the one prefetched); ZeRO-3 keeps bf16 weights and
    gradients (2 + 2) beside fp32 master weights and moments (4 + 8): the same 16 bytes per parameter:
        weights     = P * 4 / s_w                      (fp32 master)
        grads       = P * 4 / s_g                      (fp32)
        AdamW       = 2 * P * 4 / s_o                  (fp32 moments)
        compute copy= 2 * (P / L) * w                  (two decoder layers gathered unsharded, in bf16)
    Both:
        activations = b * s * h * w * (17 * L)         without gradient checkpointing (Korthikanti et al. 2022:
                                                        34sbh bytes per layer in 16 bit, flash/SDPA attention)
                    = b * s * h * w * (L + 17)         with it (each layer's input, plus one layer recomputed)
        logits      = 2 * b * s * V * 4                (fp32 logits and their gradient)
    (s_w, s_g, s_o) = the shards: (N, N, N) for FSDP full shard / ZeRO-3 over N processes, (1, 1, 1) unsharded.
    LLaMA-13B, pure bf16: weights 13.0e9 x 2 = 26 GB, grads 26 GB, AdamW 52 GB, unsharded; mixed bf16 on 8 GPUs:
    (52 + 52 + 104) / 8 = 26 GB per GPU of sharded state, plus a 1.3 GB compute copy.
    """
    s_w, s_g, s_o = shards
    state_bytes = 4 if fp32_master else weight_bytes
    per_token = batch * seq_len * hidden * weight_bytes
    parts = {
        "weights" + (" (fp32 master)" if fp32_master else ""): n_params * state_bytes / s_w,
        "grads" + (" (fp32)" if fp32_master else ""): n_params * state_bytes / s_g,
        "AdamW states" + (" (fp32)" if fp32_master else ""): 2 * n_params * state_bytes / s_o,
    }
    if fp32_master:
        parts[f"compute copy ({'bf16' if weight_bytes == 2 else 'fp32'}, 2 layers)"] = \
            2 * n_params / max(n_layers, 1) * weight_bytes
    parts["activations"] = per_token * ((n_layers + 17) if checkpointing else 17 * n_layers)
    parts["logits"] = 2 * batch * seq_len * vocab * 4
    return MemoryEstimate(parts)


def inference_memory(n_params: float, n_layers: int, kv_dim: int, *, weight_bytes: int, batch: int,
                     seq_len: int) -> MemoryEstimate:
    """Bytes to generate with a decoder: weights = P * w; KV cache = 2 (K, V) * L * b * s * kv_dim * w,
    with s = prompt + new tokens and kv_dim = kv_heads x head_dim (LLaMA-13B: 0.82 MB per token in bf16)."""
    return MemoryEstimate({"weights": n_params * weight_bytes,
                           "KV cache": 2 * n_layers * batch * seq_len * kv_dim * weight_bytes})


# Published architectures, so that the paper's student is estimated offline (no hub, no cache): the values of its
# config.json. LLaMA-13B: Touvron et al. 2023 ("LLaMA: Open and Efficient Foundation Language Models"), Table 2
# (dimension 5120, 40 heads, 40 layers; SwiGLU FFN of 2/3 x 4d rounded: 13824; vocabulary 32000 SentencePiece
# tokens; context 2048), as in huggyllama/llama-13b's config.json. 04 adds one [[PAD]] row (32001): negligible here.
PUBLISHED_CONFIGS: dict[str, dict] = {
    "huggyllama/llama-13b": {
        "model_type": "llama", "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 13824,
        "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000,
        "max_position_embeddings": 2048, "tie_word_embeddings": False,
        "_source": "Touvron et al. 2023, Table 2 / huggyllama/llama-13b config.json"},
}


def load_model_config(spec: str, offline: bool) -> tuple[dict | None, str]:
    """(config.json of a model spec, "") without loading weights, or (None, why not).

    A hub model whose config.json cannot be read (offline, hub unreachable, not cached) but whose architecture is
    published (`PUBLISHED_CONFIGS`: the paper's LLaMA-13B) gets that config, with its source as the second value."""
    config, why = _read_model_config(spec, offline)
    if config is None:
        repo = spec.split("@", 1)[0]
        published = PUBLISHED_CONFIGS.get(repo) or PUBLISHED_CONFIGS.get(repo.lower())
        if published is not None:
            return dict(published), f"published architecture: {published['_source']}; {why}"
    return config, ("" if config is not None else why)


def _read_model_config(spec: str, offline: bool) -> tuple[dict | None, str]:
    try:
        resolved = resolve_model(spec)
    except (ModelSpecError, FileNotFoundError):
        return None, "the model spec does not resolve"
    if resolved.kind == "gguf":
        from ..models import gguf_cache_dir

        path = gguf_cache_dir(Path(resolved.path)) / "config.json"
        why = "GGUF not de-quantized yet: `python -m orca_utils fetch-model` writes its config"
    elif resolved.kind == "dir":
        path, why = Path(resolved.path) / "config.json", f"no config.json in {resolved.path}"
    else:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        try:
            found = try_to_load_from_cache(resolved.path, "config.json", revision=resolved.revision) if offline \
                else hf_hub_download(resolved.path, "config.json", revision=resolved.revision)
        except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: reported by check_model_specs
            return None, f"config.json not downloaded ({type(exc).__name__})"
        path = Path(found) if isinstance(found, str) else Path("/nonexistent")
        why = "hub not used (offline or unreachable), and config.json is not in the hub cache"
    return (json.loads(path.read_text()), "") if path.is_file() else (None, why)


def cuda_free_memory() -> list[tuple[int, int]]:
    """(free, total) bytes of each visible CUDA device; [] without CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [tuple(torch.cuda.mem_get_info(i)) for i in range(torch.cuda.device_count())]


def _sharding(cfg) -> tuple[tuple[int, int, int], str, bool]:
    """(weights, grads, optimizer) shard counts of 04's launch, a label, and whether it keeps fp32 master weights
    (FSDP / DeepSpeed under the config's `mixed_precision: bf16` or `fp16`, with a 16-bit `precision`)."""
    if cfg.launcher != "accelerate" or not cfg.accelerate_config:
        return (1, 1, 1), "unsharded", False
    data, _ = read_accelerate(cfg.accelerate_config)
    if data is None:
        return (1, 1, 1), "unsharded (config unreadable)", False
    n, kind = data["num_processes"], data.get("distributed_type")
    mixed = str(data.get("mixed_precision", "no")).lower() in ("bf16", "fp16") and cfg.precision != "fp32"
    how = f", mixed {data.get('mixed_precision')} (fp32 master weights)" if mixed else ""
    if kind == "FSDP":
        full = (data.get("fsdp_config") or {}).get("fsdp_reshard_after_forward", True) is not False
        return ((n if full else 1), n, n), f"FSDP over {n}{how}", mixed
    if kind == "DEEPSPEED":
        stage = int((data.get("deepspeed_config") or {}).get("zero_stage", 0))
        return (((n if stage >= 3 else 1), (n if stage >= 2 else 1), (n if stage >= 1 else 1)),
                f"ZeRO-{stage} over {n}{how}", mixed)
    return (1, 1, 1), f"{kind or 'unsharded'}, replicated", False


def _inference_shape(stem: str, cfg) -> tuple[int, int, int | None, str]:
    """(batch, new tokens, prompt + new cap or None, the batch param) of an evaluation notebook."""
    if stem == "07_open_ended":
        return cfg.candidate_batch_size, cfg.candidate_max_new_tokens, None, "candidate_batch_size"
    if stem == "08_safety":
        tqa, tox = cfg.truthfulqa, cfg.toxigen
        param = "truthfulqa.batch_size" if tqa.batch_size > tox.batch_size else "toxigen.batch_size"
        return max(tqa.batch_size, tox.batch_size), max(tqa.generative_max_new_tokens, tox.max_new_tokens), None, param
    return cfg.batch_size, cfg.max_new_tokens, cfg.max_len_tokens, "batch_size"


def estimate_memory(stem: str, cfg, dims: ModelDims, on_cuda: bool) -> tuple[MemoryEstimate, str, str]:
    """(estimate per device, how, the param that shrinks it) for one of GPU_NOTEBOOKS."""
    if stem == "04_training":
        shards, how, mixed = _sharding(cfg)
        est = training_memory(dims.n_params, dims.n_layers, dims.hidden, dims.vocab,
                              weight_bytes={"fp32": 4, "bf16": 2, "fp16": 2}[cfg.precision],
                              batch=cfg.per_device_batch_size, seq_len=cfg.max_len_tokens,
                              checkpointing=cfg.gradient_checkpointing, shards=shards, fp32_master=mixed)
        ckpt = "with" if cfg.gradient_checkpointing else "without"
        return est, f"{cfg.precision}, {how}, {ckpt} gradient checkpointing", "per_device_batch_size"
    batch, new, cap, param = _inference_shape(stem, cfg)
    seq = cap or ASSUMED_PROMPT_TOKENS + new
    seq = min(seq, dims.max_positions) if dims.max_positions else seq
    est = inference_memory(dims.n_params, dims.n_layers, dims.kv_dim, weight_bytes=2 if on_cuda else 4,
                           batch=batch, seq_len=seq)
    prompt = "" if cap else f", prompt <= {ASSUMED_PROMPT_TOKENS} tokens assumed"
    return est, f"{'bf16' if on_cuda else 'fp32'}, batch {batch} x {seq} tokens{prompt}", param


def _devices_needed(stem: str, cfg) -> int:
    return cfg.num_processes if stem == "04_training" and cfg.launcher == "accelerate" else 1


def check_memory(cfgs: dict, opts: Options) -> list[Finding]:
    gpus = cuda_free_memory() if opts.gpus is None else opts.gpus
    stems = [s for s in GPU_NOTEBOOKS if s in cfgs]
    out: list[Finding] = []
    if not gpus:
        out += [Problem(p, "device: cuda, but no CUDA device is visible here: run on a GPU machine, or set "
                           "device: cpu") for p in dict.fromkeys(f"{param_owner(cfgs, 'device', s)}.device"
                                                                 for s in stems if cfgs[s].device == "cuda")]
    configs: dict[str, tuple[dict | None, str]] = {}
    for stem in stems:
        cfg = cfgs[stem]
        if cfg.student_model not in configs:
            configs[cfg.student_model] = load_model_config(cfg.student_model,
                                                           hub_offline(cfg) or opts.hub_unreachable)
        config, why = configs[cfg.student_model]
        try:
            dims = model_dims(config) if config else None
        except ValueError as exc:
            dims, why = None, str(exc)
        if dims is None:
            out.append(Note(stem, f"GPU memory not estimated ({why})"))
            continue
        # the dtype the run will use: bf16 generation on CUDA (device: cuda even where no GPU is visible here)
        on_cuda = cfg.device == "cuda" or (bool(gpus) and cfg.device == "auto")
        est, how, param = estimate_memory(stem, cfg, dims, on_cuda)
        if why:                                  # a published architecture stood in for the unread config.json
            how += f"; {dims.n_params / 1e9:.2f}B parameters from the {why.split(';')[0]}"
        out += _compare(stem, cfg, est, how, param, gpus if on_cuda else [])
    return out


def _compare(stem: str, cfg, est: MemoryEstimate, how: str, param: str, gpus: list) -> list[Finding]:
    if not gpus:
        return [Note(stem, f"memory estimate {est.describe()} ({how}; runs on {cfg.device}: not compared)")]
    need = _devices_needed(stem, cfg)
    if need > len(gpus):
        return [Problem(f"{stem}.num_processes", f"{need} processes per node, but {len(gpus)} CUDA device(s) are "
                                                 f"visible: lower num_processes or run on a node with {need} GPUs")]
    free = min(f for f, _ in gpus[:need])
    if est.total > free:
        return [Problem(f"{stem}.{param}", f"needs ~{est.describe()} per GPU ({how}) but a device has only "
                                           f"{free / GB:.1f} GB free: lower {param} or the sequence length"
                                           f"{', shard over more GPUs' if stem == '04_training' else ''}")]
    return [Note(stem, f"memory estimate {est.describe()} per GPU ({how}); {free / GB:.1f} GB free: fits")]


# ---- 6. projections ---------------------------------------------------------------------------------------------
def check_projections(cfgs: dict, opts: Options) -> list[Finding]:
    """Notes: 02's wall time per stage and 04's GPU hours per stage, each labelled as an estimate (the arithmetic is
    `orca_utils.projections`; 04's student size comes from its config.json, as for `check_memory`)."""
    out = []
    for stage in PROJECTED_STAGES:
        got = augmentation_hours(cfgs, stage)
        if got is not None:
            out.append(Note(f"02_augmentation.{stage}", f"projected wall time (estimate): {got[1]}"))
    cfg = cfgs.get("04_training")
    if cfg is None:
        return out
    config, _ = load_model_config(cfg.student_model, hub_offline(cfg) or opts.hub_unreachable)
    try:
        n_params = model_dims(config).n_params if config else None
    except ValueError:
        n_params = None
    if n_params is None:
        return out + [Note("04_training", "GPU hours not projected: the student's size is unknown")]
    world = planned_world_size(cfg)
    for stage in (1, 2):
        got = training_gpu_hours(cfgs, stage, n_params, world)
        if got is not None:
            out.append(Note(f"04_training.stage{stage}", f"projected GPU hours (estimate): {got[1]}"))
    return out
