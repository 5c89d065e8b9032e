"""Explanation tuning (Orca §3.2): progressive, packed, resumable training of the student, multi-GPU ready.

Engine: TRL's `SFTTrainer` (on transformers' `Trainer` + accelerate), behind the thin adapter `train_stage`. What
this module adds is only what the paper needs and TRL does not do for us:
- the data: notebook 02's teacher tables, serialized by `orca_utils.tokens` (loss on the response and its EOS only,
  a pad token distinct from EOS) and packed by notebook 03's packer (`packer: paper`, shuffle-and-fill as in the
  paper, or `bfd`); TRL's own best-fit-decreasing packing is `packer: trl_bfd`; `none` is one padded sample per row;
- packed rows, per-sample position ids and no attention across samples: with FlashAttention TRL's padding-free
  collator flattens the batch into one sequence and the varlen kernels use the sample boundaries; with SDPA or
  eager attention (CPU, GPUs without flash-attn) `PackedRowsCollator` keeps the rows as rows, so the
  block-diagonal mask transformers builds from the position ids is a square per row, not one square over the
  whole flattened batch; labels masked at each sample start;
- progressive learning: stage 1 trains `cfg.student_model` on `train_stage1.parquet` and saves `student_stage1/`;
  stage 2 starts from `student_stage1/` on `train_stage2.parquet` and saves `student/` (both loadable HF dirs with
  the tokenizer; a template-less tokenizer is saved with `ORCA_PLAIN_TEMPLATE`, so the student carries the prompt
  format it was trained on to every evaluation);
- checkpoints every `save_steps` under `checkpoints/stage{N}-{stamp}/` (params + 02's table), resumed exactly by
  `Trainer` (model, optimizer, scheduler, RNG states, data position) when `resume` is on;
- per-stage results (`stage{N}_result.json`: losses, held-out loss, steps, useful tokens/s) and a per-rank log of
  which samples each batch held (`data_log/stage{N}_rank{r}.jsonl`).

- the data prepared before any launch (`prepare_stage`, `--prepare-only`): each stage's table tokenized once into
  the token store (`token_store_dir`: `<run root>/token_store/<fingerprint>/`, the store notebook 03 measured its
  lengths from; reused when 03 built it, built here with `data_num_proc` workers when not), then its packing plan
  and manifest in the data cache, in one process and inside no collective; the launched ranks only open them (a
  missing or stale cache stops them in one line). Several nodes: one cache on the shared run folder prepared once
  before launching, or a node-local `data_cache_dir` (which then holds the token store too) prepared by each
  node's launcher;
- the batch as one param: `global_batch_size` packed rows per optimizer step over all ranks (`batch_plan`:
  accumulation = global / (per device x world size)), so the effective learning rate does not move with the GPU
  count; `stage{N}_result.json` records the global batch, the per-device batch, the accumulation and the world size.

Entry point (also under `accelerate launch`, which is how the paper profile scales out; see params/accelerate/):
    python -m orca_utils.train --profile smoke --stage 1 [--run-dir DIR] [--params-override KEY=VALUE ...]
    python -m orca_utils.train --profile paper --stage 1 --prepare-only     # before `accelerate launch`
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import load_profile, params_hash
from .contracts import STAGE1_STUDENT_DIR, STUDENT_DIR, stage_result_file, train_file
from .paths import PARAMS_DIR, REPO_ROOT
from .runs import REUSE_ENV, Run, profile_root, seed_everything
from .schemas import TrainingParams
from .train_data import (TOKEN_STORE_DIR, PackedRowsCollator, RecordingCollator, open_prepared_stage,
                         pack_samples_into_rows, prepare_arrow_stage, read_stage_table, rows_to_dataset, split_heldout,
                         tokenize_rows)

__all__ = ["NOTEBOOK", "stage_model_dir", "checkpoint_dir", "load_student", "load_student_tokenizer",
           "load_student_model", "prepare_stage_data", "prepare_stage", "data_cache_dir", "token_store_dir",
           "token_store_dirs", "batch_plan",
           "planned_world_size", "launched_world_size", "save_student",
           "train_stage", "launch_command", "launch_env", "launch_stage", "run_stage", "read_stage_result", "main"]

NOTEBOOK = "04_training"


def stage_model_dir(run: Run, stage: int) -> Path:
    """`student_stage1/` after stage 1, `student/` (the final student) after stage 2."""
    return run.dir / (STAGE1_STUDENT_DIR if stage == 1 else STUDENT_DIR)


def checkpoint_dir(run: Run, stage: int, upstream: Path | None = None) -> Path:
    """Keyed by the stage stamp (params + 02's training table): checkpoints of other params or other data are
    kept, never resumed into this run."""
    upstream = Path(upstream) if upstream else run.upstream("02_augmentation")
    return run.dir / "checkpoints" / f"stage{stage}-{_stage_stamp(run.cfg, upstream, stage)}"


def _stage_cfg(cfg: TrainingParams, stage: int):
    if stage not in (1, 2):
        raise ValueError(f"stage {stage}: expected 1 or 2")
    return cfg.stage1 if stage == 1 else cfg.stage2


def _attn_implementation(cfg: TrainingParams) -> str:
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    import importlib.util

    import torch

    if cfg.device in ("cuda", "auto") and torch.cuda.is_available() and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "sdpa"


def _student_spec(cfg: TrainingParams, run: Run, stage: int) -> str:
    """Stage 1 starts from `cfg.student_model`, stage 2 from stage 1's saved student."""
    if stage == 1:
        return cfg.student_model
    previous = stage_model_dir(run, 1)
    if not (previous / "config.json").exists():
        raise FileNotFoundError(f"stage 2 starts from stage 1's weights, but {previous} holds no model: run "
                                f"`python -m orca_utils.train --profile {cfg.profile} --stage 1` first")
    return str(previous)


def load_student_tokenizer(cfg: TrainingParams, run: Run, stage: int):
    from . import tokens

    tokenizer = tokens.load_padded_tokenizer(_student_spec(cfg, run, stage))
    assert tokenizer.pad_token_id != tokenizer.eos_token_id, "pad must differ from EOS, or EOS gets masked"
    return tokenizer


def load_student_model(cfg: TrainingParams, run: Run, stage: int, tokenizer):
    """The student's weights in the training precision, embeddings resized to the padded tokenizer.

    Call it after the distributed state exists (`train_stage` builds the training arguments first): under
    `accelerate launch` with FSDP's `fsdp_cpu_ram_efficient_loading` or DeepSpeed's `zero3_init_flag`,
    `from_pretrained` then materializes the weights on rank 0 only (or sharded), not a full copy per rank.
    """
    import torch

    from . import tokens
    from .models import load_model

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
    model = load_model(_student_spec(cfg, run, stage), dtype=dtype, device="cpu",
                       attn_implementation=_attn_implementation(cfg))
    tokens.resize_embeddings(model, tokenizer)
    return model


def load_student(cfg: TrainingParams, run: Run, stage: int):
    """(model, tokenizer) for a stage; see `load_student_model` for when to call it under accelerate."""
    tokenizer = load_student_tokenizer(cfg, run, stage)
    return load_student_model(cfg, run, stage, tokenizer), tokenizer


def data_cache_dir(cfg: TrainingParams, run: Run) -> Path:
    """Where 04's tokenized Arrow cache and packing plans live: `data_cache_dir`, else `<run dir>/data_cache`."""
    return Path(cfg.data_cache_dir).expanduser() if cfg.data_cache_dir else run.dir / "data_cache"


def token_store_dir(run: Run) -> Path:
    """Where the token stores live (`orca_utils.train_data.token_store`: each stage table tokenized once per
    tokenizer, in a folder named by its fingerprint): `<data_cache_dir>/token_store` when 04_training sets
    `data_cache_dir`, else `<run root>/token_store`. Beside the notebooks' folders, not in 03's or 04's: either
    notebook builds a store the other finds by fingerprint, whatever the other's params or whether it ran. 03's run
    gets the same answer (it reads 04's `data_cache_dir` from the profile: a location, not a result-shaping param).
    """
    cfg = run.cfg if isinstance(run.cfg, TrainingParams) else run.all_cfgs.get(NOTEBOOK)
    custom = getattr(cfg, "data_cache_dir", None)
    return (Path(custom).expanduser() if custom else Path(run.root)) / TOKEN_STORE_DIR


def token_store_dirs(run: Run) -> list[Path]:
    """Where a token store is looked for, in order: `token_store_dir(run)` (where a missing one is built), then
    `<run folder>/token_store` of each run folder this run reuses upstream outputs from (`Run.reuse`): a store is
    keyed by its fingerprint and never changes once finished, so another run's is as good as ours."""
    own = token_store_dir(run)
    return list(dict.fromkeys([own, *(Path(r) / TOKEN_STORE_DIR for r in getattr(run, "reuse", ()))]))


def prepare_command(cfg: TrainingParams, run: Run, stage: int) -> str:
    return (f"python -m orca_utils.train --profile {cfg.profile} --stage {stage} --run-dir {run.root} "
            f"--prepare-only")


def prepare_stage_data(cfg: TrainingParams, upstream: Path, stage: int, tokenizer,
                       cache_dir: Path | None = None, prepare: bool = True, hint: str = "",
                       store_root: Path | list[Path] | None = None) -> dict[str, Any]:
    """Train / held-out datasets for one stage, plus counts (samples, truncated, rows, fill) for the notebook.

    `data_storage: arrow` (default): memory-mapped Arrow files: the token store under `store_root` (default
    `<cache_dir>/token_store`; a list: folders searched in order, `token_store_dirs`), plans and manifest under
    `cache_dir` (`orca_utils.train_data`).
    `prepare=True` opens the token store with this fingerprint or tokenizes it (`data_num_proc` workers), and packs
    what the cache lacks, in this process, inside no collective; `prepare=False` (the ranks of a launch) only opens
    the cache that the prepare step wrote and raises `TrainDataError` in one line (ending with `hint`) when it is
    missing or stale.
    `memory`: Python lists (the comparison path of benchmarks/train_data_memory.py), built by each process itself.
    """
    scfg = _stage_cfg(cfg, stage)
    if cfg.data_storage == "arrow":
        if cache_dir is None:
            raise ValueError("prepare_stage_data: data_storage=arrow needs a cache_dir")
        args = (upstream, stage, tokenizer, cfg.max_len_tokens, cfg.packer, cfg.seed + stage, cfg.heldout_fraction,
                cfg.max_heldout_samples, cache_dir, scfg.max_train_samples)
        out = (prepare_arrow_stage(*args, cfg.data_num_proc, store_root=store_root) if prepare
               else open_prepared_stage(*args, hint=hint))
        return {"train_dataset": out["train_dataset"], "eval_dataset": out["eval_dataset"],
                "stats": {**out["stats"], "prepared_here": prepare}}
    df = read_stage_table(upstream, stage)
    train_df, heldout_df = split_heldout(df, cfg.heldout_fraction, cfg.max_heldout_samples, cfg.seed + stage)
    if scfg.max_train_samples:
        train_df = train_df.head(scfg.max_train_samples)
    train_samples, train_counts = tokenize_rows(train_df, tokenizer, cfg.max_len_tokens)
    eval_samples, _ = tokenize_rows(heldout_df, tokenizer, cfg.max_len_tokens)
    train_rows = pack_samples_into_rows(train_samples, cfg.max_len_tokens, cfg.packer, cfg.seed + stage)
    eval_rows = pack_samples_into_rows(eval_samples, cfg.max_len_tokens, cfg.packer, cfg.seed + stage)
    tokens_total = sum(len(s.input_ids) for s in train_samples)
    stats = {"samples": len(train_samples), "heldout_samples": len(eval_samples), "rows": len(train_rows),
             "tokens": tokens_total, "trainable_tokens": sum(s.n_trainable for s in train_samples),
             "samples_per_row": len(train_samples) / len(train_rows),
             "fill": tokens_total / (len(train_rows) * cfg.max_len_tokens), "storage": "memory", **train_counts}
    return {"train_dataset": rows_to_dataset(train_rows), "eval_dataset": rows_to_dataset(eval_rows),
            "train_rows": train_rows, "eval_rows": eval_rows, "heldout": heldout_df, "stats": stats}


def planned_world_size(cfg: TrainingParams, accelerate: bool | None = None) -> int:
    """Ranks of the launch `cfg` describes: the accelerate config's num_processes (all machines together), else
    `num_processes` (one node) under `accelerate launch`, else 1 (in process). `accelerate`: whether the stage
    is launched (default: `launcher == "accelerate"`)."""
    if not (cfg.launcher == "accelerate" if accelerate is None else accelerate):
        return 1
    if cfg.accelerate_config:
        import yaml

        config = accelerate_config_path(cfg.accelerate_config)
        data = yaml.safe_load(config.read_text()) if config.is_file() else None
        if isinstance(data, dict) and isinstance(data.get("num_processes"), int):
            return int(data["num_processes"])
    return cfg.num_processes


def launched_world_size(cfg: TrainingParams) -> int:
    """This launch's ranks: WORLD_SIZE when a launcher (torchrun under `accelerate launch`) set it, else the plan."""
    env = os.environ.get("WORLD_SIZE")
    return int(env) if env and env.isdigit() and int(env) > 0 else planned_world_size(cfg)


def batch_plan(cfg: TrainingParams, world_size: int) -> dict[str, int]:
    """{global_batch_size, per_device_batch_size, gradient_accumulation_steps, world_size}, in packed rows.

    One source: `global_batch_size` when set (accumulation = global / (per_device x world), ValueError in one line
    when it does not divide), else `gradient_accumulation_steps` (default 1; the global batch then follows the world
    size). The schema refuses both set at once.
    """
    per_device = cfg.per_device_batch_size
    if cfg.global_batch_size is not None:
        per_step = per_device * world_size
        if cfg.global_batch_size % per_step:
            lower = max(per_step, cfg.global_batch_size // per_step * per_step)
            raise ValueError(
                f"04_training.global_batch_size: {cfg.global_batch_size} rows is not a multiple of "
                f"per_device_batch_size {per_device} x {world_size} ranks = {per_step}: set it to a multiple of "
                f"{per_step} (e.g. {lower} or {lower + per_step}) or change per_device_batch_size")
        accumulation = cfg.global_batch_size // per_step
    else:
        accumulation = cfg.gradient_accumulation_steps or 1
    return {"global_batch_size": per_device * world_size * accumulation, "per_device_batch_size": per_device,
            "gradient_accumulation_steps": accumulation, "world_size": world_size}


def _fsdp_launched() -> bool:
    """Running under `accelerate launch` with an FSDP config (accelerate sets ACCELERATE_USE_FSDP)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def _packed_rows_kept(cfg: TrainingParams) -> bool:
    """Packed rows go to the model as rows (`PackedRowsCollator`) unless FlashAttention takes them flattened."""
    return cfg.packer in ("paper", "bfd") and _attn_implementation(cfg) != "flash_attention_2"


def _sft_config(cfg: TrainingParams, stage: int, output_dir: Path, world_size: int | None = None):
    from trl import SFTConfig

    scfg = _stage_cfg(cfg, stage)
    plan = batch_plan(cfg, world_size or launched_world_size(cfg))
    packed_here = cfg.packer in ("paper", "bfd")
    return SFTConfig(
        output_dir=str(output_dir), seed=cfg.seed, data_seed=cfg.seed,
        num_train_epochs=scfg.epochs, max_steps=scfg.max_steps, learning_rate=scfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_batch_size, per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=plan["gradient_accumulation_steps"], lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, optim=cfg.optimizer,
        max_grad_norm=cfg.max_grad_norm, bf16=cfg.precision == "bf16", fp16=cfg.precision == "fp16",
        # Under FSDP the plugin checkpoints activations (params/accelerate/fsdp_*.yaml:
        # fsdp_activation_checkpointing), wrapping each decoder layer; the Trainer's own would wrap twice.
        activation_checkpointing=cfg.gradient_checkpointing and not _fsdp_launched(), use_cpu=cfg.device == "cpu",
        logging_steps=cfg.logging_steps, eval_strategy="steps", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        report_to=list(cfg.report_to) or "none",           # TensorBoard: <output_dir>/runs/<time>_<host>
        include_num_input_tokens_seen="non_padding", remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False,
        # Our rows are tokenized and (for paper/bfd) packed already: TRL must not re-process them.
        dataset_kwargs={"skip_prepare_dataset": cfg.packer != "trl_bfd"},
        packing=cfg.packer == "trl_bfd", packing_strategy="bfd",
        padding_free=packed_here and not _packed_rows_kept(cfg),      # TRL's flattening, for FlashAttention only
        max_length=None if packed_here else cfg.max_len_tokens,
    )


def _trainer_class():
    """SFTTrainer that logs which samples each training batch held, per rank (eval batches are not logged)."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class OrcaSFTTrainer(SFTTrainer):
        data_log_path: Path | None = None

        def compute_loss(self, model, inputs, *args, **kwargs):
            # No KV cache in training: transformers derives the block-diagonal (per-sample) mask from the position
            # ids only when no cache is built; with one, packed samples would attend to each other.
            inputs["use_cache"] = False
            return super().compute_loss(model, inputs, *args, **kwargs)

        def get_train_dataloader(self):
            plain = self.data_collator
            self.data_collator = RecordingCollator(plain, self.data_log_path, self.args.process_index)
            try:
                return super().get_train_dataloader()
            finally:
                self.data_collator = plain

    class StepTimer(TrainerCallback):
        """Wall time inside optimizer steps only (no eval, no checkpoint saving): the tokens/s denominator."""

        def __init__(self):
            self.seconds, self.t0, self.tokens0 = 0.0, None, None

        def on_train_begin(self, args, state, control, **kw):
            self.tokens0 = state.num_input_tokens_seen

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.t0 is not None:
                self.seconds += time.perf_counter() - self.t0

    return OrcaSFTTrainer, StepTimer


def _log_file_callback(run: Run, stage: int):
    """Every Trainer log line (losses, learning rate, eval) appended to `train_log_stage<N>.jsonl` by rank 0, as
    it happens: weeks of training are not only in the notebook's JSON."""
    from transformers import TrainerCallback

    path = run.dir / f"train_log_stage{stage}.jsonl"

    class LogFile(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                with open(path, "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, "time": time.time(), **logs}) + "\n")

    return LogFile()


def save_student(trainer, target: Path) -> None:
    """Save the trained model with its tokenizer (`trainer.processing_class`) as a loadable HF directory.

    A tokenizer without a chat template (LLaMA) was trained on the Orca plain format: it is saved with
    `ORCA_PLAIN_TEMPLATE`, the same text as a chat template, so evaluation prompts the student exactly as training
    did. A tokenizer with its own chat template keeps it (training rendered prompts with it).
    """
    from .tokens import attach_orca_plain_template

    if trainer.processing_class is not None:
        attach_orca_plain_template(trainer.processing_class)
    fsdp = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if fsdp is not None:     # checkpoints during training are sharded; the final student is one consolidated model
        fsdp.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(target))          # main process only; FSDP/ZeRO-3 gather the full state dict


def _stage_stamp(cfg: TrainingParams, upstream: Path, stage: int) -> str:
    """What a finished stage was trained from: the params and 02's training table (path, size, mtime)."""
    import hashlib

    table = Path(upstream) / train_file(stage)
    stat = table.stat() if table.exists() else None
    data = f"{table.resolve()}:{stat.st_size}:{stat.st_mtime_ns}" if stat else "missing"
    return hashlib.sha256(f"{params_hash(cfg)}|{data}".encode()).hexdigest()[:16]


def _finished_stage(run: Run, stage: int, stamp: str) -> dict | None:
    """The saved result of this stage when it finished from the same params and data and its student exists.

    Rerunning a finished stage returns it instead of resuming from its last checkpoint: transformers resumes a
    checkpoint taken at `max_steps` by training one step more (measured: a 4-step run came back with 5 steps).
    """
    path = run.dir / stage_result_file(stage)
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    student = run.dir / str(result.get("student_dir", ""))
    if result.get("stamp") != stamp or not (student / "config.json").exists():
        return None
    return result


def train_stage(cfg: TrainingParams, run: Run, stage: int, upstream: Path | None = None, log=print) -> dict:
    """Train one stage in this process (or this rank of an accelerate launch); return its result dict."""
    from transformers.trainer_utils import get_last_checkpoint

    import torch

    seed_everything(cfg.seed)
    upstream = Path(upstream) if upstream else run.upstream("02_augmentation")
    stamp = _stage_stamp(cfg, upstream, stage)
    finished = _finished_stage(run, stage, stamp)
    if finished is not None:
        log(f"stage {stage}: already trained from the same params and data -> {finished['student_dir']} "
            f"(delete {run.dir / stage_result_file(stage)} to train it again)")
        return finished
    out = checkpoint_dir(run, stage, upstream)
    world = launched_world_size(cfg)
    plan = batch_plan(cfg, world)
    args = _sft_config(cfg, stage, out, world)     # creates the distributed state before any weights are loaded
    if args.world_size != world:                    # the launch knows best (e.g. a 1-process launch without WORLD_SIZE)
        world = args.world_size
        plan = batch_plan(cfg, world)
        args = _sft_config(cfg, stage, out, world)
    tokenizer = load_student_tokenizer(cfg, run, stage)
    # No collective around the data: a launch's ranks only open the cache prepared before `accelerate launch`
    # (`prepare_stage`, which launch_stage runs); a single process prepares it itself.
    data = prepare_stage_data(cfg, upstream, stage, tokenizer, cache_dir=data_cache_dir(cfg, run),
                              prepare=args.world_size == 1, hint=f"run `{prepare_command(cfg, run, stage)}` "
                              "before `accelerate launch` (notebook 04's launcher does)",
                              store_root=token_store_dirs(run))
    distributed_at_load = torch.distributed.is_available() and torch.distributed.is_initialized()
    model = load_student_model(cfg, run, stage, tokenizer)
    trainer_cls, timer_cls = _trainer_class()
    timer = timer_cls()
    extra = {"data_collator": PackedRowsCollator(tokenizer.pad_token_id)} if _packed_rows_kept(cfg) else {}
    trainer = trainer_cls(model=model, args=args, processing_class=tokenizer, train_dataset=data["train_dataset"],
                          eval_dataset=data["eval_dataset"], callbacks=[timer, _log_file_callback(run, stage)],
                          **extra)
    rank = trainer.args.process_index
    trainer.data_log_path = run.dir / "data_log" / f"stage{stage}_rank{rank}.jsonl"
    last = get_last_checkpoint(str(out)) if cfg.resume and out.exists() else None
    if last is None and trainer.data_log_path.exists():
        trainer.data_log_path.unlink()
    store = data["stats"].get("token_store")
    how = {True: "tokenized here", False: "reused"}.get(data["stats"].get("token_store_built"), "opened")
    log(f"stage {stage}: {data['stats']['samples']} samples in {data['stats']['rows']} rows "
        f"(packer {cfg.packer}, max_len {cfg.max_len_tokens}" + (f", token store {store} {how}" if store else "")
        + "); " + (f"resuming {last}" if last else "from scratch"))
    t0 = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - t0
    eval_loss = trainer.evaluate()["eval_loss"]
    target = stage_model_dir(run, stage)
    save_student(trainer, target)
    trainer.accelerator.wait_for_everyone()
    history = trainer.state.log_history
    tokens = trainer.state.num_input_tokens_seen - (timer.tokens0 or 0)
    train_losses = [h["loss"] for h in history if "loss" in h]
    result = {
        "stage": stage, "student_dir": target.name, "steps": trainer.state.global_step,
        "train_loss_final": train_losses[-1] if train_losses else None, "train_loss_mean": train_out.training_loss,
        "eval_loss_final": eval_loss, "useful_tokens": tokens, "step_seconds": timer.seconds, "wall_seconds": wall,
        "tokens_per_s": tokens / timer.seconds if timer.seconds else None, "resumed_from": Path(last).name if last
        else None, "world_size": trainer.args.world_size, **{k: plan[k] for k in (
            "global_batch_size", "per_device_batch_size", "gradient_accumulation_steps")},
        "data": data["stats"], "history": history,
        "packer": cfg.packer, "attn_implementation": model.config._attn_implementation,
        "distributed_before_model_load": distributed_at_load, "log_file": f"train_log_stage{stage}.jsonl",
        "stamp": stamp,
        "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
        "fsdp_version": getattr(getattr(trainer.accelerator.state, "fsdp_plugin", None), "fsdp_version", None),
    }
    if trainer.is_world_process_zero():
        (run.dir / stage_result_file(stage)).write_text(json.dumps(result, indent=2, default=str))
    log(f"stage {stage}: {result['steps']} steps, train loss {result['train_loss_final']}, held-out "
        f"{eval_loss:.4f}, {result['tokens_per_s'] or 0:.0f} useful tokens/s -> {target}")
    return result


def read_stage_result(run: Run, stage: int) -> dict:
    path = run.dir / stage_result_file(stage)
    if not path.exists():
        raise FileNotFoundError(f"{path}: stage {stage} has not finished in this run folder")
    return json.loads(path.read_text())


def accelerate_config_path(value: str) -> Path:
    """`04_training.accelerate_config` as a file: absolute, else relative to the checkout, else params/accelerate/."""
    path = Path(value)
    if path.is_absolute():
        return path
    return REPO_ROOT / path if (REPO_ROOT / path).exists() else PARAMS_DIR / "accelerate" / path.name


def _config_kind(config: Path) -> str:
    import yaml

    return str((yaml.safe_load(config.read_text()) or {}).get("distributed_type", "")).upper()


def launch_command(cfg: TrainingParams, run: Run, stage: int, overrides: list[str] | None = None,
                   accelerate_args: list[str] | None = None) -> list[str]:
    """`accelerate launch [--config_file params/accelerate/X] -m orca_utils.train ...` for this run."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    entry = "orca_utils.train"
    if cfg.accelerate_config:
        config = accelerate_config_path(cfg.accelerate_config)
        if not config.exists():
            raise FileNotFoundError(f"accelerate_config {cfg.accelerate_config!r}: not found (looked at {config})")
        cmd += ["--config_file", str(config)]
        if cfg.device == "cpu" and _config_kind(config) == "FSDP":
            entry = "orca_utils.fsdp_cpu"      # accelerate alone would fall back to DDP on CPU ranks
    elif cfg.device == "cpu" and cfg.num_processes > 1:
        # `accelerate launch --cpu` uses accelerate's single-process launcher (accelerate 1.15 spawns several CPU
        # ranks only through mpirun); the torchrun launcher with ACCELERATE_USE_CPU=1 (see `launch_env`) gives
        # N CPU ranks over gloo: the same distributed code path as the GPU profile.
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if not cfg.accelerate_config:        # a config file carries its own num_processes / machines
        cmd += ["--num_processes", str(cfg.num_processes)]
    cmd += list(accelerate_args or [])
    cmd += ["-m", entry, "--profile", cfg.profile, "--stage", str(stage), "--run-dir", str(run.root)]
    for item in overrides or []:
        cmd += ["--params-override", item]
    return cmd


def launch_env(cfg: TrainingParams) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cfg.device == "cpu":
        env["ACCELERATE_USE_CPU"] = "1"
    return env


def prepare_stage(cfg: TrainingParams, run: Run, stage: int, upstream: Path | None = None, log=print) -> dict:
    """Tokenize (`data_num_proc` workers; nothing when the token store 03 built is there) and pack one stage's data
    into the cache, in this process, before any launch: what `launch_stage` runs in the notebook's process and
    `python -m orca_utils.train --prepare-only` runs from a shell. The ranks of the launch then only open the
    finished cache (no rank tokenizes, no rank waits on a barrier while another does: NCCL's default 30-minute
    timeout is shorter than tokenizing FLAN-5M).

    Several nodes: with the run folder (and so `data_cache/` and `token_store/`) on a shared filesystem, prepare
    once, on one node, before launching on any; with a node-local `data_cache_dir`, each node's launcher prepares
    its own copy before its own `accelerate launch`. Never let several nodes prepare the same shared files at once.
    Returns the stage's data counts; `data_storage: memory` has nothing to prepare (each process builds its lists).
    """
    if cfg.data_storage != "arrow":
        log(f"stage {stage}: data_storage={cfg.data_storage}: nothing to prepare (each process builds its own rows)")
        return {}
    upstream = Path(upstream) if upstream else run.upstream("02_augmentation")
    tokenizer = load_student_tokenizer(cfg, run, stage)
    t0 = time.perf_counter()
    data = prepare_stage_data(cfg, upstream, stage, tokenizer, cache_dir=data_cache_dir(cfg, run), prepare=True,
                              store_root=token_store_dirs(run))
    stats = data["stats"]
    how = "tokenized here" if stats.get("token_store_built") else "reused, nothing tokenized"
    log(f"stage {stage}: token store {stats.get('token_store_folder')} ({how})")
    log(f"stage {stage}: training data prepared in {data_cache_dir(cfg, run)} ({stats['samples']} samples, "
        f"{stats['rows']} packed rows, {time.perf_counter() - t0:.1f} s, data_num_proc {cfg.data_num_proc})")
    return stats


def launch_env_and_line(cfg: TrainingParams, run: Run, cmd: list[str]) -> tuple[dict[str, str], str]:
    """The launch's environment and the command line logged before it, which reruns the stage by hand (it
    resumes): a run reading upstream outputs from reused folders passes them on as ORCA_REUSE, in both."""
    env = launch_env(cfg)
    reused = ""
    if run.reuse:
        env[REUSE_ENV] = os.pathsep.join(str(r) for r in run.reuse)
        reused = f"{REUSE_ENV}={shlex.quote(env[REUSE_ENV])} "
    return env, "$ " + reused + " ".join(cmd)


def launch_stage(cfg: TrainingParams, run: Run, stage: int, overrides: list[str] | None = None,
                 accelerate_args: list[str] | None = None, log=print) -> dict:
    """Run one stage under `accelerate launch` as a subprocess, streaming its log; return its result.

    The training data is prepared first, here (`prepare_stage`): the launched ranks only open it."""
    batch_plan(cfg, planned_world_size(cfg, accelerate=True))   # a global batch the launch cannot split: one line
    if _finished_stage(run, stage, _stage_stamp(cfg, run.upstream("02_augmentation"), stage)) is None:
        prepare_stage(cfg, run, stage, log=log)
    cmd = launch_command(cfg, run, stage, overrides, accelerate_args)
    env, line = launch_env_and_line(cfg, run, cmd)
    log(line)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=REPO_ROOT) as proc:
        tail: list[str] = []
        for line in proc.stdout:
            log(line.rstrip())
            tail = (tail + [line])[-40:]
    if proc.returncode != 0:
        raise RuntimeError(f"accelerate launch for stage {stage} exited {proc.returncode}:\n{''.join(tail)}")
    return read_stage_result(run, stage)


def run_stage(cfg: TrainingParams, run: Run, stage: int, overrides: str | list[str] | None = None,
              log=print) -> dict:
    """What the notebook calls: in this process (`launcher: in_process`) or under `accelerate launch`."""
    if cfg.launcher == "accelerate":
        items = [o.strip() for o in overrides.split(";")] if isinstance(overrides, str) else list(overrides or [])
        return launch_stage(cfg, run, stage, [o for o in items if o], log=log)
    return train_stage(cfg, run, stage, log=log)


def _run_for(profile: str, run_dir: str | None, overrides: list[str]) -> tuple[TrainingParams, Run]:
    all_cfgs = load_profile(profile, overrides=overrides)
    cfg = all_cfgs[NOTEBOOK]
    if cfg.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = Run(notebook=NOTEBOOK, cfg=cfg, root=profile_root(cfg, run_dir), all_cfgs=all_cfgs)
    run.dir.mkdir(parents=True, exist_ok=True)
    return cfg, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_utils.train", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--stage", type=int, choices=(1, 2), required=True)
    parser.add_argument("--run-dir", help="outputs folder of the run (default: outputs/<profile>)")
    parser.add_argument("--params-override", action="append", default=[], metavar="KEY=VALUE",
                        help="e.g. 04_training.stage1.max_steps=5; repeatable")
    parser.add_argument("--prepare-only", action="store_true",
                        help="tokenize and pack the stage's data into the cache, then exit (before accelerate launch)")
    args = parser.parse_args(argv)
    from .config import ConfigError
    from .train_data import TrainDataError

    try:
        cfg, run = _run_for(args.profile, args.run_dir, args.params_override)
        if args.prepare_only:
            prepare_stage(cfg, run, args.stage)
            return 0
        batch_plan(cfg, launched_world_size(cfg))
        train_stage(cfg, run, args.stage)
    except ConfigError as exc:
        print(f"params error: {exc}", file=sys.stderr)
        return 2
    except (TrainDataError, ValueError) as exc:
        if isinstance(exc, TrainDataError) or str(exc).startswith("04_training."):
            print(f"stage {args.stage}: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
