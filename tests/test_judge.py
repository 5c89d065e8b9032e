"""Judge prompts, strict score parsing, position-swap aggregation, and the open-ended prompt-set loaders."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from orca_utils.data import resolve_dataset
from orca_utils.judge import (VICUNA_V1, VerdictParseError, aggregate_verdicts, build_judge_messages, judge_pairs,
                              list_fastchat_templates, parse_scores)
from orca_utils.open_ended import load_prompt_set, load_prompt_sets, select_subset

# (reply, expected scores or None for "must be rejected")
VERDICTS = [
    ("8 7\nAssistant 1 provided a more detailed answer ...", (8.0, 7.0)),
    ("9 6\n\nBoth assistants answered, but Assistant 2 missed the second part.", (9.0, 6.0)),
    ("10 8\nAssistant 1's answer is complete and accurate.", (10.0, 8.0)),
    ("7.5 8.5\nAssistant 2 was slightly more precise.", (7.5, 8.5)),
    ("8, 9\nAssistant 2 explained the steps.", (8.0, 9.0)),
    ("  6 6  \nBoth answers are equally helpful.", (6.0, 6.0)),
    ("\n\n4 9\nAssistant 1 misread the question.", (4.0, 9.0)),
    ("**8 5**\nAssistant 1 is clearer.", (8.0, 5.0)),
    ("1 10\nAssistant 1 refused to answer.", (1.0, 10.0)),
    ("10.0 9.0\nExcellent answers from both.", (10.0, 9.0)),
    ("3 2", (3.0, 2.0)),
    ("0 7\nAssistant 1's answer is empty.", (0.0, 7.0)),
    # malformed: must be rejected, never guessed
    ("Assistant 1: 8\nAssistant 2: 7", None),
    ("Assistant 1 receives a score of 8 and Assistant 2 receives 7.", None),
    ("Scores: 8 7\nExplanation ...", None),
    ("8/10 7/10\nAssistant 1 was better.", None),
    ("11 7\nOut of range.", None),
    ("8 7 6\nThree numbers.", None),
    ("8\nOnly one score.", None),
    ("", None),
    ("   \n  ", None),
    (None, None),
    ("I think both assistants did well.\n8 7", None),
    ("[[A]]", None),
    ("Rating: [[7]]", None),
    ("eight seven", None),
    ("-1 5\nnegative", None),
    ("8.7.1 5", None),
    ("<|im_start|>assistant\n8 7", None),
]


@pytest.mark.parametrize("reply,expected", VERDICTS)
def test_parse_scores(reply, expected):
    if expected is None:
        with pytest.raises(VerdictParseError):
            parse_scores(reply)
    else:
        assert parse_scores(reply) == expected


def test_judge_messages_follow_the_vicuna_template():
    msgs = build_judge_messages("Q?", "first answer", "second answer")
    assert msgs[0] == {"role": "system", "content": VICUNA_V1.system}
    user = msgs[1]["content"]
    assert user.startswith("[Question]\nQ?\n\n[The Start of Assistant 1's Answer]\nfirst answer")
    assert user.index("first answer") < user.index("second answer")
    assert "two values indicating the scores for Assistant 1 and 2" in user


def _pairs(n_per_set=2):
    rows = []
    for s in ("a", "b"):
        for i in range(n_per_set):
            rows.append({"id": f"{s}{i}", "set": s, "prompt": f"question {s}{i}",
                         "candidate": "short cand", "reference": "a much longer reference answer here"})
    return pd.DataFrame(rows)


def _scripted(table):
    """A fake judge: looks up the reply by (question, which answer is shown first); records every request."""
    calls = []

    def chat(requests):
        out = []
        for msgs in requests:
            calls.append(msgs)
            user = msgs[1]["content"]
            q = user.split("\n")[1]
            first_is_cand = user.index("short cand") < user.index("a much longer")
            key = (q, "cand_first" if first_is_cand else "ref_first", len(msgs) > 2)
            value = table.get(key, table.get(key[:2]))
            out.append(value if isinstance(value, tuple) else (value, "ok"))
        return out

    return chat, calls


def test_position_swap_aggregation_by_hand():
    # set a: q a0: cand first 8 4 (cand wins), ref first 6 6 (tie)     -> flip
    #        q a1: cand first 5 5 (tie),      ref first 9 3 (ref wins) -> flip
    # set b: q b0: cand first 7 7, ref first 7 7 (ties)                -> no flip
    #        q b1: cand first "garbage" then "garbage" -> unparseable; ref first 8 4 (ref wins, cand 4)
    table = {("question a0", "cand_first"): "8 4\n..", ("question a0", "ref_first"): "6 6\n..",
             ("question a1", "cand_first"): "5 5\n..", ("question a1", "ref_first"): "9 3\n..",
             ("question b0", "cand_first"): "7 7", ("question b0", "ref_first"): "7 7",
             ("question b1", "cand_first"): "Assistant 1: 9", ("question b1", "ref_first"): "8 4"}
    chat, calls = _scripted(table)
    verdicts = judge_pairs(_pairs(), chat)
    assert len(verdicts) == 8
    b1 = verdicts[(verdicts["id"] == "b1") & (verdicts["order"] == "candidate_first")].iloc[0]
    assert b1["status"] == "unparseable" and b1["attempts"] == 2 and math.isnan(b1["candidate_score"])
    assert b1["raw"] == "Assistant 1: 9"           # kept, not guessed
    assert len(calls) == 9                          # 8 first asks + 1 retry
    retry = calls[-1]
    assert retry[-2]["role"] == "assistant" and retry[-1]["role"] == "user" and "two scores" in retry[-1]["content"]

    agg = aggregate_verdicts(verdicts, _pairs()).set_index("set")
    # set a, candidate first: cand 8+5=13, ref 4+5=9 -> 144.4%; reference first: cand 6+3=9, ref 6+9=15 -> 60%
    assert agg.loc["a", "relative_candidate_first_pct"] == pytest.approx(100 * 13 / 9)
    assert agg.loc["a", "relative_reference_first_pct"] == pytest.approx(60.0)
    assert agg.loc["a", "relative_mean_pct"] == pytest.approx((100 * 13 / 9 + 60) / 2)
    assert agg.loc["a", "flip_rate"] == 1.0
    # first position won a0 (cand first) and a1 (ref first) of 4 verdicts; the other two were ties
    assert agg.loc["a", "first_position_win_rate"] == 0.5
    # set b: candidate first only b0 parsed (7/7); reference first: b0 7/7, b1 cand 4 / ref 8 -> 11/15
    assert agg.loc["b", "relative_candidate_first_pct"] == pytest.approx(100.0)
    assert agg.loc["b", "relative_reference_first_pct"] == pytest.approx(100 * 11 / 15)
    assert agg.loc["b", "n_paired"] == 1 and agg.loc["b", "flip_rate"] == 0.0
    assert agg.loc["b", "n_unparseable"] == 1 and agg.loc["b", "n_retried"] == 1
    assert agg.loc["all", "n_prompts"] == 4 and agg.loc["all", "n_paired"] == 3
    assert agg.loc["all", "candidate_len_words"] == 2 and agg.loc["all", "reference_len_words"] == 6


def test_retry_recovers_and_errors_are_recorded():
    table = {("question a0", "cand_first", False): "Sure! Here are the scores", ("question a0", "cand_first", True):
             "7 9", ("question a0", "ref_first"): (None, "rate_limited"), ("question a1", "cand_first"): "6 8",
             ("question a1", "ref_first"): "8 6"}
    chat, _ = _scripted(table)
    pairs = _pairs()[lambda d: d["set"] == "a"]
    verdicts = judge_pairs(pairs, chat).set_index(["id", "order"])
    assert verdicts.loc[("a0", "candidate_first"), "status"] == "ok"
    assert verdicts.loc[("a0", "candidate_first"), "candidate_score"] == 7
    assert verdicts.loc[("a0", "reference_first"), "status"] == "error: rate_limited"
    agg = aggregate_verdicts(verdicts.reset_index(), pairs).set_index("set")
    assert agg.loc["a", "n_errors"] == 1 and agg.loc["a", "n_paired"] == 1


def test_all_unparseable_gives_nan_not_a_number():
    chat_bad = lambda reqs: [("I cannot judge this.", "ok")] * len(reqs)  # noqa: E731
    verdicts = judge_pairs(_pairs(1), chat_bad)
    agg = aggregate_verdicts(verdicts, _pairs(1))
    assert agg["relative_mean_pct"].isna().all() and (agg.set_index("set").loc["all", "n_unparseable"] == 4)


def test_fastchat_templates_give_no_two_score_format():
    loc = resolve_dataset("fastchat_judge", offline=True)
    templates = list_fastchat_templates(loc.path / "judge_prompts.jsonl")
    assert len(templates) == 8 and "pair-v2" in set(templates["name"])
    assert not templates["gives_two_scores"].any()


@pytest.mark.parametrize("name,n,first_prompt_start", [
    ("vicuna_bench", 80, "How can I improve my time management skills?"),
    ("awesome_prompts", 152, "I want you to act as a linux terminal."),
    ("wizardlm", 218, "If a car travels 120 miles in 2 hours"),
])
def test_prompt_sets_on_the_real_files(name, n, first_prompt_start):
    df = load_prompt_set(name, offline=True)
    assert len(df) == n and list(df.columns) == ["id", "set", "category", "prompt"]
    assert df["id"].is_unique and (df["prompt"].str.strip() != "").all() and (df["set"] == name).all()
    assert df["prompt"].iloc[0].startswith(first_prompt_start)


def test_subset_is_fixed_and_ordered():
    df = load_prompt_set("wizardlm", offline=True)
    a, b = select_subset(df, 5, seed=0), select_subset(df, 5, seed=0)
    assert a.equals(b) and len(a) == 5
    assert list(a["id"]) == sorted(a["id"], key=lambda s: int(s.split("-")[1]))
    assert not a.equals(select_subset(df, 5, seed=1))
    stacked = load_prompt_sets(["vicuna_bench", "wizardlm"], 3, seed=0, offline=True)
    assert list(stacked.groupby("set", sort=False).size()) == [3, 3]
    with pytest.raises(ValueError, match="expected one of"):
        load_prompt_set("nope", offline=True)
