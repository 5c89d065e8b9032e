"""13-gram contamination check: normalisation, planted overlaps found, near misses not."""
from __future__ import annotations

import pandas as pd
import pytest

from orca_utils.sampling.contamination import (build_index, drop_overlapping, load_eval_texts, normalize_tokens,
                                               scan_queries)

EVAL_ITEM = ("The quick brown fox jumps over the lazy dog while seven curious owls watch from the old oak tree "
             "near the river bank at dawn")


def test_normalisation_like_lm_eval():
    assert normalize_tokens("Hello, World!  It's  (fine).") == ["hello", "world", "its", "fine"]


def test_planted_overlap_found_and_near_miss_not():
    toks = EVAL_ITEM.split()
    planted = "Consider this: " + " ".join(toks[3:16]).upper() + "!! What follows?"      # 13 shared tokens
    near_miss = "Consider this: " + " ".join(toks[3:15]) + " zebra what follows?"          # 12 shared tokens
    index = build_index({"evalset": [EVAL_ITEM, "too short to check"], "other": ["nothing in common here at all"]})
    report = scan_queries(index, ["q_planted", "q_near", "q_clean"], [planted, near_miss, "an unrelated query"])
    row = report.summary.set_index("eval_set").loc["evalset"]
    assert row["items_with_overlap"] == 1 and row["items_too_short"] == 1
    assert row["training_queries_overlapping"] == 1
    assert report.overlapping_query_ids == {"q_planted"}
    assert report.examples.iloc[0]["query_id"] == "q_planted"
    assert report.examples.iloc[0]["shared_ngram"] == " ".join(toks[3:16]).lower()
    assert report.summary.set_index("eval_set").loc["other", "items_with_overlap"] == 0
    df = pd.DataFrame({"id": ["q_planted", "q_near", "q_clean"]})
    assert drop_overlapping(df, report)["id"].tolist() == ["q_near", "q_clean"]


def test_many_queries_across_chunks():
    index = build_index({"e": [EVAL_ITEM]})
    ids = [f"q{i}" for i in range(2500)]
    texts = ["filler text " * 10] * 2500
    texts[1777] = "prefix " + EVAL_ITEM + " suffix"
    report = scan_queries(index, ids, texts, chunk_queries=300)
    assert report.overlapping_query_ids == {"q1777"}


def test_real_eval_sets_load():
    try:
        texts = load_eval_texts(["agieval", "bbh", "truthfulqa", "vicuna_bench", "wizardlm", "awesome_prompts"])
    except FileNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")
    assert {k: len(v) for k, v in texts.items()} == {"agieval": 3546, "bbh": 6511, "truthfulqa": 817,
                                                      "vicuna_bench": 80, "wizardlm": 218, "awesome_prompts": 152}
