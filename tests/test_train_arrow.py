"""Training data on disk: tokenized once into Arrow, packed from the length column, read back as packed rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orca_utils import tokens, train_data


@pytest.fixture(scope="module")
def tokenizer():
    return tokens.load_padded_tokenizer("shared:tokenizers/llama")


def _table(folder, n=40, empty_at=None):
    rng = np.random.default_rng(0)
    words = "alpha beta gamma delta step answer reason so the therefore".split()
    rows = [{"id": f"r{i}", "system": "" if i % 3 else "Think step by step.",
             "user": " ".join(rng.choice(words, 20 + i % 30)), "response": " ".join(rng.choice(words, 5 + i % 50)),
             "status": "ok" if i % 7 else "truncated"} for i in range(n)]
    if empty_at is not None:
        rows[empty_at]["response"] = "  "
    pd.DataFrame(rows).to_parquet(folder / "train_stage1.parquet", index=False)


def test_arrow_path_holds_the_same_samples_as_the_in_memory_path(tmp_path, tokenizer):
    _table(tmp_path)
    out = train_data.prepare_arrow_stage(tmp_path, 1, tokenizer, 64, "paper", 0, 0.1, 4, tmp_path / "cache")
    rows = [out["train_dataset"][i] for i in range(len(out["train_dataset"]))]
    held = set(out["stats"]["heldout_ids"])
    got = {sid: None for r in rows for sid in r["sample_ids"]}
    assert len(got) == sum(len(r["sample_ids"]) for r in rows), "a sample appears in two packed rows"
    df = train_data.read_stage_table(tmp_path, 1)
    expected, _ = train_data.tokenize_rows(df[~df["id"].isin(held)], tokenizer, 64)
    assert set(got) == {s.id for s in expected}
    by_id = {s.id: s for s in expected}
    for r in rows:
        assert sum(r["seq_lengths"]) == len(r["input_ids"]) == len(r["labels"]) <= 64
        start = 0
        for sid, n in zip(r["sample_ids"], r["seq_lengths"]):     # the one serialization, token for token
            assert r["input_ids"][start:start + n] == by_id[sid].input_ids
            assert r["labels"][start:start + n] == by_id[sid].labels
            start += n
    stats = out["stats"]
    assert stats["tokens"] == sum(len(s.input_ids) for s in expected) and stats["storage"] == "arrow"
    assert stats["trainable_tokens"] == sum(s.n_trainable for s in expected)


def test_cache_and_plan_are_reused_and_on_disk(tmp_path, tokenizer):
    _table(tmp_path)
    cache = tmp_path / "cache"
    train_data.prepare_arrow_stage(tmp_path, 1, tokenizer, 64, "paper", 0, 0.1, 4, cache)
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert any(p.suffix == ".arrow" for p in files) and any(p.name.startswith("plan_stage1_train") for p in files)
    again = train_data.prepare_arrow_stage(tmp_path, 1, tokenizer, 64, "paper", 0, 0.1, 4, cache)
    now = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert now == files, "a rerun with the same data, tokenizer and max_len must not tokenize or pack again"
    assert len(again["train_dataset"]) > 0


def test_bad_tables_fail_with_one_line(tmp_path, tokenizer):
    _table(tmp_path, empty_at=3)
    with pytest.raises(train_data.TrainDataError, match=r"1 rows with an empty response \(first id 'r3'\)"):
        train_data.prepare_arrow_stage(tmp_path, 1, tokenizer, 64, "paper", 0, 0.1, 4, tmp_path / "c")
    with pytest.raises(train_data.TrainDataError, match="train_stage2.parquet: missing"):
        train_data.prepare_arrow_stage(tmp_path, 2, tokenizer, 64, "paper", 0, 0.1, 4, tmp_path / "c")


def test_heldout_indices_are_seeded_and_disjoint():
    train, held = train_data.split_heldout_indices(100, 0.05, 3, seed=1)
    assert len(held) == 3 and not set(train) & set(held) and len(train) + len(held) == 100
    assert np.array_equal(held, train_data.split_heldout_indices(100, 0.05, 3, seed=1)[1])
    with pytest.raises(train_data.TrainDataError):
        train_data.split_heldout_indices(1, 0.5, 3, seed=1)
