"""Training (notebook 04): masked loss, EOS kept trainable, packed-batch isolation, data contract errors."""
from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

from orca_utils.train_data import (PackedRowsCollator, Sample, TrainDataError, pack_samples_into_rows,
                                   read_stage_table, tokenize_rows)


def _tiny_model(vocab: int = 61, attn: str = "sdpa", seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


def _collator():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)


def test_masked_loss_equals_hand_computation():
    model = _tiny_model()
    input_ids = torch.tensor([[5, 9, 13, 7, 21, 3], [8, 8, 40, 2, 11, 0]])
    labels = torch.tensor([[-100, -100, 13, 7, 21, 3], [-100, -100, -100, 2, 11, -100]])
    with torch.no_grad():
        out = model(input_ids=input_ids, labels=labels)
        logp = torch.log_softmax(out.logits.double(), dim=-1)
    # by hand: token t+1 is predicted at position t; only labels != -100 count; mean over those tokens
    terms = [-logp[b, t - 1, labels[b, t]] for b in range(2) for t in range(1, 6) if labels[b, t] != -100]
    assert len(terms) == 6
    assert out.loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


def test_eos_label_is_trainable_with_smollm2_tokenizer():
    """SmolLM2: pad == eos == <|im_end|>; after our pad token and serialization, each EOS label survives collation."""
    from orca_utils.config import load_profile
    from orca_utils.models import load_tokenizer
    from orca_utils.tokens import load_padded_tokenizer

    spec = load_profile("smoke")["04_training"].student_model
    raw = load_tokenizer(spec)
    assert raw.pad_token_id == raw.eos_token_id          # the trap this test is about
    tok = load_padded_tokenizer(spec)
    assert tok.pad_token_id != tok.eos_token_id
    df = pd.DataFrame({"id": ["a", "b", "c"], "system": ["", "Think step by step.", "x"],
                       "user": ["2+2?", "Name a colour.", "Say hi."], "response": ["4", "Blue, like the sky.", "hi"]})
    samples, counts = tokenize_rows(df, tok, max_len=128)
    assert counts["truncated"] == 0 and len(samples) == 3
    for s in samples:
        assert s.input_ids[-1] == tok.eos_token_id and s.labels[-1] == tok.eos_token_id
    rows = pack_samples_into_rows(samples, 128, "paper", seed=0)
    batch = _collator()([{k: v for k, v in r.items() if k != "sample_ids"} for r in rows])
    eos_positions = batch["input_ids"][0] == tok.eos_token_id
    # the prompt's own <|im_end|> (end of system and user turns) stays masked; every response EOS is trainable
    trainable_eos = (batch["labels"][0][eos_positions] != -100).sum().item()
    assert trainable_eos == 3


def _random_samples(n: int, vocab: int, seed: int) -> list[Sample]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p, r = int(torch.randint(2, 9, (1,), generator=g)), int(torch.randint(1, 8, (1,), generator=g))
        ids = torch.randint(1, vocab, (p + r,), generator=g).tolist()
        out.append(Sample(f"s{i}", ids, [-100] * p + ids[p:]))
    return out


@pytest.mark.parametrize("collator", ["trl_flat", "rows"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_per_sample_losses(attn, collator):
    """Both layouts: TRL's flattened padding-free batch, and our rows (one square attention mask per row)."""
    vocab = 61
    model = _tiny_model(vocab, attn=attn)
    samples = _random_samples(9, vocab, seed=1)
    rows = pack_samples_into_rows(samples, 40, "paper", seed=0)
    assert any(len(r["seq_lengths"]) > 1 for r in rows), "the test needs rows holding several samples"
    assert len({len(r["input_ids"]) for r in rows}) > 1, "the test needs rows of different lengths (a padded tail)"
    collate = _collator() if collator == "trl_flat" else PackedRowsCollator(pad_token_id=0)
    batch = collate([{k: v for k, v in r.items() if k != "sample_ids"} for r in rows])
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape[0] == (1 if collator == "trl_flat" else len(rows))
    with torch.no_grad():
        # use_cache=False as SFTTrainer.compute_loss passes it: transformers only derives the block-diagonal mask from
        # position ids when no KV cache is built (with a cache the samples silently attend to each other)
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                       use_cache=False).loss
        sums, counts = 0.0, 0
        for s in samples:       # one by one: the token-weighted mean of the samples' own losses
            n = sum(1 for t in s.labels[1:] if t != -100)
            loss = model(input_ids=torch.tensor([s.input_ids]), labels=torch.tensor([s.labels])).loss
            sums, counts = sums + loss.item() * n, counts + n
        # without the position ids samples attend to each other: the loss must change (the test can fail)
        leaky = model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss
    assert counts == int((batch["labels"] != -100).sum())
    assert packed.item() == pytest.approx(sums / counts, rel=1e-5, abs=1e-6)
    assert abs(leaky.item() - sums / counts) > 1e-4


def test_every_sample_keeps_a_trainable_token():
    from orca_utils.tokens import load_padded_tokenizer

    tok = load_padded_tokenizer("shared:tokenizers/llama")
    df = pd.DataFrame({"id": ["long", "ok"], "system": ["", ""], "user": ["word " * 200, "hi"],
                       "response": ["answer", "hello"]})
    samples, counts = tokenize_rows(df, tok, max_len=32)
    assert [s.id for s in samples] == ["ok"] and counts["dropped"] == 1
    assert all(s.n_trainable > 0 for s in samples)


def test_stage_table_errors_name_file_and_column(tmp_path):
    pd.DataFrame({"id": ["a"], "system": [""], "user": ["u"]}).to_parquet(tmp_path / "train_stage1.parquet")
    with pytest.raises(TrainDataError, match=r"train_stage1.parquet: missing columns \['response'\]"):
        read_stage_table(tmp_path, 1)
    with pytest.raises(TrainDataError, match="train_stage2.parquet: missing"):
        read_stage_table(tmp_path, 2)
    pd.DataFrame({"id": ["a", "b"], "system": ["", ""], "user": ["u", "v"], "response": ["r", " "],
                  "status": ["ok", "ok"]}).to_parquet(tmp_path / "train_stage1.parquet")
    with pytest.raises(TrainDataError, match="1 rows with an empty response"):
        read_stage_table(tmp_path, 1)


@pytest.mark.parametrize("name", ["fsdp_1node_8gpu", "fsdp_multinode", "zero3_1node_8gpu", "zero3_multinode"])
def test_accelerate_configs_parse(repo, name):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(repo / "params" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type in ("FSDP", "DEEPSPEED")
    assert cfg.num_processes == 8 * cfg.num_machines and cfg.mixed_precision == "bf16"


def test_paper_profile_launches_accelerate_with_its_config(tmp_path):
    from orca_utils.train import _run_for, launch_command

    cfg, run = _run_for("paper", str(tmp_path), [])
    cmd = launch_command(cfg, run, 2)
    assert cmd[cmd.index("--config_file") + 1].endswith("params/accelerate/fsdp_1node_8gpu.yaml")
    assert cmd[-6:] == ["--profile", "paper", "--stage", "2", "--run-dir", str(run.root)]
    assert cfg.max_len_tokens == 2048 and cfg.stage1.epochs == cfg.stage2.epochs == 4


def test_a_launch_from_a_run_that_reuses_another_passes_the_folders_on(tmp_path, monkeypatch):
    """The ranks and the logged rerun line both carry ORCA_REUSE, so a hand rerun reads 02 where the run did."""
    from orca_utils.train import _run_for, launch_command, launch_env_and_line

    monkeypatch.delenv("ORCA_REUSE", raising=False)
    cfg, run = _run_for("paper", str(tmp_path / "own"), [])
    env, line = launch_env_and_line(cfg, run, launch_command(cfg, run, 1))
    assert "ORCA_REUSE" not in env and line.startswith("$ ") and "ORCA_REUSE" not in line
    run.reuse = (tmp_path / "first run", tmp_path / "second")
    env, line = launch_env_and_line(cfg, run, launch_command(cfg, run, 1))
    joined = f"{tmp_path / 'first run'}{os.pathsep}{tmp_path / 'second'}"
    assert env["ORCA_REUSE"] == joined
    assert line.startswith(f"$ ORCA_REUSE='{joined}' ") and "--stage 1" in line


def test_the_training_driver_gathers_both_stages_metrics_in_one_call():
    """Notebook 04 saves `training.summary_metrics`: stage 1's entries, stage 2's, then where the student is."""
    from orca_utils import training
    from orca_utils.config import load_profile
    from orca_utils.train_report import stage_metrics

    cfg = load_profile("smoke")["04_training"]
    results = [{"stage": s, "train_loss_final": 1.0 / s, "eval_loss_final": 1.1 / s, "steps": 3 * s,
                "tokens_per_s": 9.0, "useful_tokens": 90, "data": {"samples_per_row": 2.5}} for s in (1, 2)]
    metrics, provenance = training.summary_metrics(cfg, results, "stage 1: T1; stage 2: T2")
    assert metrics == {**stage_metrics(results[0]), **stage_metrics(results[1]), "student/dir": "student"}
    assert list(metrics)[-1] == "student/dir" and list(metrics)[0] == "stage1/train_loss"
    assert provenance == {"student": f"tuned from {cfg.base_model_label}", "data": "notebook 02 (stage 1: T1; "
                          "stage 2: T2)", "packer": cfg.packer, "engine": "TRL SFTTrainer"}
