"""orca_utils.packing: all packers keep every sample exactly once within max_len; inputs keep the content."""
from __future__ import annotations

import numpy as np
import pytest

from orca_utils.packing import (_bfd_sequence_count, _stable_argsort, lower_bound_sequences, pack_best_fit,
                                pack_exact_fit, pack_lengths, pack_paper, packed_inputs)
from orca_utils.tokens import IGNORE_INDEX, load_padded_tokenizer, tokenize_samples


def _brute_force_bfd_rooms(lengths, max_len):
    rooms = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [b for b, r in enumerate(rooms) if r >= lengths[i]]
        if fits:
            best = min(fits, key=lambda b: rooms[b])
            rooms[best] -= lengths[i]
        else:
            rooms.append(max_len - lengths[i])
    return sorted(rooms)


def _check_plan(plan, lengths, max_len):
    assert np.array_equal(np.sort(plan.order), np.arange(len(lengths)))          # each sample exactly once
    assert plan.seq_offsets[0] == 0 and plan.seq_offsets[-1] == len(lengths)
    assert (np.diff(plan.seq_offsets) >= 1).all()                                   # no empty sequence
    assert (plan.sequence_lengths <= max_len).all()
    assert plan.sequence_lengths.sum() == lengths.sum()
    assert plan.n_sequences >= lower_bound_sequences(lengths, max_len)


@pytest.mark.parametrize("seed", range(5))
def test_packers_keep_every_sample_once(seed):
    rng = np.random.default_rng(seed)
    max_len = int(rng.integers(50, 300))
    lengths = rng.integers(1, max_len + 1, size=int(rng.integers(1, 400)))
    for plan in (pack_paper(lengths, max_len, seed=seed), pack_best_fit(lengths, max_len),
                 pack_exact_fit(lengths, max_len)):
        _check_plan(plan, lengths, max_len)


def test_paper_method_is_seeded_shuffle_then_next_fit():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 100, size=300)
    plan = pack_paper(lengths, 100, seed=7)
    assert np.array_equal(plan.order, np.random.default_rng(7).permutation(300))   # order preserved
    fills = plan.sequence_lengths
    first_of_next = lengths[plan.order[plan.seq_offsets[1:-1]]]
    assert (fills[:-1] + first_of_next > 100).all()       # a new sequence only when the next sample did not fit
    assert np.array_equal(pack_paper(lengths, 100, seed=7).order, plan.order)
    assert not np.array_equal(pack_paper(lengths, 100, seed=8).order, plan.order)


def test_best_fit_equals_item_by_item_bfd_and_beats_the_paper():
    rng = np.random.default_rng(0)
    for _ in range(100):
        max_len = int(rng.integers(20, 120))
        lengths = rng.integers(1, max_len + 1, size=int(rng.integers(1, 120)))
        plan = pack_best_fit(lengths, max_len)
        assert sorted((max_len - plan.sequence_lengths).tolist()) == _brute_force_bfd_rooms(lengths.tolist(), max_len)
    lengths = np.clip(rng.lognormal(5.5, 0.8, 20_000).astype(int), 1, 2048)
    bfd, paper = pack_best_fit(lengths, 2048), pack_paper(lengths, 2048)
    assert bfd.n_sequences <= paper.n_sequences and bfd.padding_fraction < paper.padding_fraction
    assert bfd.n_sequences <= 1.01 * bfd.lower_bound


def test_oversize_samples_error_or_drop_counted():
    lengths = np.array([5, 12, 3, 11, 7])
    with pytest.raises(ValueError, match="2 sample.*longer than max_len=10"):
        pack_best_fit(lengths, 10)
    for method in ("paper", "best_fit", "exact_fit"):
        plan = pack_lengths(lengths, 10, method=method, oversize="drop")
        assert plan.dropped.tolist() == [1, 3] and plan.summary()["dropped"] == 2
        assert sorted(plan.order.tolist()) == [0, 2, 4]
    with pytest.raises(ValueError, match="length < 1"):
        pack_paper(np.array([3, 0]), 10)
    with pytest.raises(ValueError, match="integer"):
        pack_paper(np.array([1.5]), 10)


def test_exact_fit_is_valid_and_never_worse_than_bfd():
    rng = np.random.default_rng(3)
    for case in range(200):
        max_len = int(rng.integers(10, 300))
        n = int(rng.integers(1, 400))
        lengths = (rng.integers(1, max_len + 1, size=n) if case % 2 else
                   np.clip(rng.lognormal(np.log(max_len / 4), 0.8, n).astype(int), 1, max_len))
        plan = pack_lengths(lengths, max_len, method="exact_fit")
        _check_plan(plan, lengths, max_len)
        assert plan.n_sequences <= pack_best_fit(lengths, max_len).n_sequences


def test_exact_fit_completes_rooms_that_bfd_leaves_open():
    # BFD: 6 | 5 | 3 -> room 4 of the 6 | 2, 2 -> the 5 | the last 2 opens a third sequence.
    lengths = np.array([6, 5, 3, 2, 2, 2])
    assert pack_best_fit(lengths, 10).n_sequences == 3
    plan = pack_exact_fit(lengths, 10)
    assert plan.n_sequences == 2 == plan.lower_bound and plan.padding_fraction == 0.0
    assert sorted(sorted(lengths[plan.sequence(s)].tolist()) for s in range(2)) == [[2, 2, 6], [2, 3, 5]]
    assert lengths[plan.sequence(0)][0] == 6   # each sequence starts with the sample it was opened for


def test_exact_fit_within_a_tenth_of_a_percent_of_the_bound_on_augmented_like_lengths():
    rng = np.random.default_rng(3)                                # the benchmark's synthetic shape, 50k samples
    lengths = np.clip((rng.lognormal(np.log(160), 0.7, 50_000) + rng.lognormal(np.log(280), 0.9, 50_000))
                      .astype(np.int64), 8, 2048)
    bound = lower_bound_sequences(lengths, 2048)
    plan, bfd = pack_exact_fit(lengths, 2048), pack_best_fit(lengths, 2048)
    _check_plan(plan, lengths, 2048)
    assert plan.n_sequences <= bound * 1.001 < bfd.n_sequences


def test_bfd_sequence_count_and_radix_argsort_match_the_reference():
    rng = np.random.default_rng(5)
    for _ in range(100):
        max_len = int(rng.integers(5, 400))
        lengths = rng.integers(1, max_len + 1, size=int(rng.integers(1, 300)))
        counts = np.bincount(lengths, minlength=max_len + 1)
        assert _bfd_sequence_count(counts, max_len) == pack_best_fit(lengths, max_len).n_sequences
    for high in (50, 70_000, 1 << 40):
        keys = rng.integers(0, high, size=5000)
        assert np.array_equal(_stable_argsort(keys), np.argsort(keys, kind="stable"))
    assert len(_stable_argsort(np.zeros(0, dtype=np.int64))) == 0


def test_metrics():
    plan = pack_best_fit(np.array([6, 4, 5, 5]), 10)
    assert plan.n_sequences == 2 == plan.lower_bound
    assert plan.packing_factor == 2.0 and plan.padding_fraction == 0.0
    paper = pack_paper(np.array([6, 5, 4, 5]), 10, seed=0)     # order 6,5 | 4,5 | ... never pairs 6 with 4
    assert paper.total_tokens == 20 and paper.padding_fraction == 1 - 20 / (10 * paper.n_sequences)


@pytest.fixture(scope="module")
def samples():
    tok = load_padded_tokenizer("shared:tokenizers/llama")
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "42", "delta", "step", "answer"]
    users = [" ".join(rng.choice(words, int(rng.integers(1, 40)))) for _ in range(60)]
    responses = [" ".join(rng.choice(words, int(rng.integers(1, 60)))) for _ in range(60)]
    return tokenize_samples(tok, [""] * 60, users, responses, max_len_tokens=128)


def test_packed_inputs_preserve_content_and_restart_positions(samples):
    plan = pack_best_fit(samples.lengths, 256)
    batch = packed_inputs(plan, samples)
    labels_all = samples.labels_flat()
    seen = []
    for row in range(plan.n_sequences):
        cu = batch["cu_seqlens"][row]
        for k, sid in enumerate(plan.sequence(row)):
            lo, hi = int(cu[k]), int(cu[k + 1])
            a, b = samples.offsets[sid], samples.offsets[sid + 1]
            assert batch["input_ids"][row, lo:hi].tolist() == samples.input_ids[a:b].tolist()
            assert batch["labels"][row, lo:hi].tolist() == labels_all[a:b].tolist()
            assert batch["position_ids"][row, lo:hi].tolist() == list(range(hi - lo))
            seen.append(int(sid))
        n = int(cu[-1])
        assert (batch["input_ids"][row, n:] == samples.pad_token_id).all()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][row].sum() == n and batch["position_ids"][row, n:n + 1].tolist() in ([0], [])
    assert sorted(seen) == list(range(len(samples)))
    with pytest.raises(ValueError, match="not made from these samples"):
        packed_inputs(pack_best_fit(samples.lengths[:-1], 256), samples)


def test_position_ids_isolate_packed_samples_in_transformers(samples):
    """Packed logits equal per-sample logits: position_ids restart, no attention_mask, no cache (training)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32001, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)).eval()
    plan = pack_paper(samples.lengths, 256, seed=0)
    batch = packed_inputs(plan, samples, seqs=[0], pad_to_max_len=False)
    with torch.no_grad():
        packed = model(input_ids=torch.tensor(batch["input_ids"]),
                       position_ids=torch.tensor(batch["position_ids"]), use_cache=False).logits[0]
        cu = batch["cu_seqlens"][0]
        for k, sid in enumerate(plan.sequence(0)):
            alone = model(input_ids=torch.tensor([samples.sample(int(sid))["input_ids"]])).logits[0]
            torch.testing.assert_close(packed[int(cu[k]):int(cu[k + 1])], alone, atol=1e-4, rtol=1e-4)


def test_length_measurement_in_chunks_equals_one_pass():
    """03 measures lengths a chunk of rows at a time (memory grows with rows, not tokens): same numbers as one pass."""
    import pandas as pd

    from orca_utils.packing_analysis import measure_lengths
    from orca_utils.tokens import load_padded_tokenizer, tokenize_frame

    tok = load_padded_tokenizer("shared:tokenizers/llama")
    words = "the cat sat on a mat because it was warm and then it slept".split()
    rows = [{"system": " ".join(words[: i % 5]), "user": " ".join(words[: 3 + i % 11]) * (1 + i % 4),
             "response": " ".join(words[: 1 + i % 13]) * (1 + i % 7), "collection": "cot",
             "system_message_id": 1 + i % 16, "stage": 1} for i in range(23)]
    frame = pd.DataFrame(rows)
    one = measure_lengths(frame, tok, 64, "truncate_response", chunk_rows=1000)
    chunked = measure_lengths(frame, tok, 64, "truncate_response", chunk_rows=4)
    pd.testing.assert_frame_equal(one, chunked)
    whole = tokenize_frame(tok, frame, max_len_tokens=64, overflow="truncate_response")
    assert list(one["prompt_tokens"]) == list(whole.prompt_tokens_all)
    assert list(one["status"]) == list(whole.status_all) and {"ok", "truncated"} <= set(one["status"])


def test_length_tables_are_the_three_summaries_notebook_03_saves():
    import pandas as pd

    from orca_utils.packing_analysis import length_summary, length_tables

    def frame(shift):
        return pd.DataFrame({"collection": ["cot", "niv2", "cot"], "system_message_id": [1, 2, 1],
                             "prompt_tokens": [3 + shift, 5, 7], "response_tokens": [2, 4, 6 + shift],
                             "total_tokens": [5 + shift, 9, 13 + shift]})
    lengths = {"LLaMA": frame(0), "student": frame(1)}
    tables = length_tables(lengths)
    assert list(tables) == ["tab_lengths", "tab_lengths_by_collection", "tab_lengths_by_system_message"]
    pd.testing.assert_frame_equal(tables["tab_lengths"], pd.concat(
        [length_summary(df).assign(tokenizer=n) for n, df in lengths.items()]))
    pd.testing.assert_frame_equal(tables["tab_lengths_by_collection"], pd.concat(
        [length_summary(df, "collection").assign(tokenizer=n) for n, df in lengths.items()]))
    pd.testing.assert_frame_equal(tables["tab_lengths_by_system_message"],
                                  length_summary(lengths["LLaMA"], "system_message_id").assign(tokenizer="LLaMA"))
