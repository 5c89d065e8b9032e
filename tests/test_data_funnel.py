"""The data funnel of 02's teacher responses (orca_utils.funnel): each filter's hits and near misses, on frames with
02's response columns and, where the shared data is there, real FLAN-v2 CoT and NIv2 queries."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest
from pydantic import ValidationError

from orca_utils.contracts import RESPONSE_TABLE_COLUMNS, ContractError
from orca_utils.data import resolve_dataset
from orca_utils.flan import load_cot_dir, load_niv2_dir
from orca_utils.funnel.checks import label_check, parse_options, refusal_reason
from orca_utils.funnel.core import COUNT_COLUMNS, REJECT_COLUMNS, funnel_figure, run_funnel
from orca_utils.funnel.dedup import find_duplicates, jaccard, shingles
from orca_utils.funnel.params import FILTERS, DedupParams, FunnelParams

LONG_ANSWER = ("Reproduction is the process by which living things give rise to offspring, and sex is the process "
               "that produces offspring in most animals, so sex is how living things give rise to offspring. "
               "So the answer is (D).")


def responses(rows: list[dict]) -> pd.DataFrame:
    """02's responses table (every column of the contract) from a few rows; unset columns get 02's usual values."""
    base = {"system": "You are an AI assistant. Think step-by-step and justify your steps.", "teacher": "GPT-4",
            "teacher_model": "gpt-4-0613", "collection": "cot", "task": "cot_qasc", "system_message_id": 7,
            "status": "ok", "finish_reason": "stop", "prompt_tokens": 40, "completion_tokens": 60, "error": None,
            "attempts": 1, "from_cache": False}
    full = [{**base, **row} for row in rows]
    return pd.DataFrame(full).reindex(columns=list(RESPONSE_TABLE_COLUMNS), fill_value="")


def queries(rows: list[dict]) -> pd.DataFrame:
    base = {"collection": "cot", "task": "cot_qasc", "template_type": "zs_opt", "rationale": "",
            "is_multiple_choice": True, "system_message_id": 7, "system_message": ""}
    return pd.DataFrame([{**base, **row} for row in rows])


@pytest.fixture(scope="module")
def cot():
    try:
        folder = resolve_dataset("flan_cot", None, True).path
    except FileNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")
    return load_cot_dir(folder)[0].groupby("task").head(200).reset_index(drop=True)


@pytest.fixture(scope="module")
def niv2():
    try:
        folder = resolve_dataset("niv2", None, True).path
    except FileNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")
    return load_niv2_dir(folder)[0]


# ---------------------------------------------------------------- params
def test_params_defaults_one_block_per_filter_and_bad_input_named():
    p = FunnelParams()
    assert set(FILTERS) <= set(FunnelParams.model_fields)
    assert p.duplicate_query.threshold == 0.9 and p.duplicate_query.shingle_words == 5
    assert p.duplicate_response.min_words == 20 and p.duplicate_query.min_words == 0
    assert p.label_agreement.drop_disagreeing is False and p.too_long.max_len_tokens == 2048
    with pytest.raises(ValidationError, match=r"extra_patterns\[1\] = '\(unclosed': not a regular expression"):
        FunnelParams.model_validate({"refusal": {"extra_patterns": ["fine", "(unclosed"]}})
    with pytest.raises(ValidationError, match="treshold"):
        FunnelParams.model_validate({"duplicate_query": {"treshold": 0.8}})
    with pytest.raises(ValidationError, match="threshold"):
        DedupParams(threshold=1.5)


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("text, reason", [
    ("As an AI language model, I cannot browse the internet.", "refusal"),
    ("I cannot fulfill this request.", "refusal"),
    ("I\u2019m sorry, but I can\u2019t help with that.", "refusal"),              # curly apostrophes
    ("i am unable to determine the answer from the given text.", "refusal"),
    ("Sure! However, as an AI language model I do not have opinions.", "refusal"),
    ("   \n\t ", "empty"),
    ("", "empty"),
    ("I don't know.", "non_answer"),
])
def test_refusals_and_non_answers_are_caught(text, reason):
    hit = refusal_reason(text)
    assert hit is not None and hit[0] == reason


@pytest.mark.parametrize("text", [
    LONG_ANSWER + " A chatbot that replies 'I cannot fulfill that request' gives no such explanation.",
    "Sex gives rise to offspring. " * 5 + "As an AI language model would say, (D) is right.",
    "I don't know why the others fail, but the answer is (D).",                   # not the whole response
    "None",                                                                      # a legitimate short answer
    "(D)",
])
def test_a_refusal_phrase_quoted_later_or_a_real_answer_is_kept(text):
    assert refusal_reason(text) is None


def test_extra_patterns_and_the_head_limit():
    assert refusal_reason("Regrettably, this is out of scope.", extra_patterns=[r"regrettably"])[0] == "refusal"
    text = "The answer is (D). I cannot fulfill the rest."
    assert refusal_reason(text, head_chars=10) is None and refusal_reason(text, head_chars=100)[0] == "refusal"


# ---------------------------------------------------------------- duplicates
def test_exact_duplicates_ignore_case_and_whitespace_and_keep_the_first():
    texts = ["What is the capital of France?", "what is  the capital\nof France?", "Name the capital of Spain.",
             "WHAT IS THE CAPITAL OF FRANCE?"]
    found = find_duplicates(texts, ["t"] * 4, DedupParams(threshold=1.0))
    assert [(d.position, d.of, d.reason) for d in found] == [(1, 0, "exact_duplicate"), (3, 0, "exact_duplicate")]


def test_near_duplicate_above_the_threshold_is_found_and_one_below_is_kept():
    base = LONG_ANSWER.split()
    near = " ".join(base[:-1] + ["(E)."])                       # the last word changed: most shingles shared
    below = " ".join(base[:20] + ["so", "it", "follows", "that"] + base[24:])  # four words changed mid-text
    j_near = jaccard(shingles(LONG_ANSWER, 5), shingles(near, 5))
    j_below = jaccard(shingles(LONG_ANSWER, 5), shingles(below, 5))
    assert j_near >= 0.9 > j_below > 0.5
    found = find_duplicates([LONG_ANSWER, below, near], ["a", "b", "c"], DedupParams())
    assert [(d.position, d.of, d.reason) for d in found] == [(2, 0, "near_duplicate")]
    assert found[0].jaccard == pytest.approx(j_near, abs=1e-4)
    # at a lower threshold the one below is caught too
    assert {d.position for d in find_duplicates([LONG_ANSWER, below, near], ["a", "b", "c"],
                                                DedupParams(threshold=0.5))} == {1, 2}


def test_short_texts_under_min_words_are_never_compared():
    found = find_duplicates(["yes", "Yes", "(B)", "(B)"], ["t"] * 4, DedupParams(min_words=20))
    assert found == []
    assert len(find_duplicates(["yes", "Yes"], ["t"] * 2, DedupParams())) == 1


def test_a_task_definition_shared_by_niv2_queries_is_not_a_near_duplicate(niv2):
    """Whole NIv2 queries of one task share a long definition; only the boilerplate-free part is compared."""
    task = niv2[niv2["task"] == "task1418_bless_semantic_relation_classification"]
    texts, groups = list(task["inputs"]), list(task["task"])
    whole = find_duplicates(texts, groups, DedupParams(boilerplate_share=None))
    assert len(whole) > len(texts) // 3                          # most rows would go without boilerplate removal
    assert find_duplicates(texts, groups, DedupParams()) == []
    # a near duplicate is still found where the instance is long enough to compare: a Winogrande query repeated
    # with a cue appended (its bless instances are a few words: there, only exact repeats are found)
    task = niv2[niv2["task"] == "task033_winogrande_answer_generation"]
    texts, groups = list(task["inputs"]), list(task["task"])
    assert find_duplicates(texts, groups, DedupParams()) == []
    found = find_duplicates(texts + [texts[5].rstrip() + " Please answer."], groups + groups[:1], DedupParams())
    assert [(d.position, d.of, d.reason) for d in found] == [(len(texts), 5, "near_duplicate")]


# ---------------------------------------------------------------- label agreement
def _row(cot, task: str, k: int = 0):
    return cot[cot["task"] == task].iloc[k]


def test_every_cot_source_agrees_with_its_own_rationale_and_answer(cot):
    for task, group in cot.groupby("task"):
        for r in group.head(50).itertuples():
            for response in (f"{r.rationale}\n\nSo the answer is: {r.targets}", r.targets,
                             f"Answer: {r.targets}\n\n{r.rationale}"):
                check = label_check(response, r.inputs, r.targets, r.rationale, "cot", r.is_multiple_choice)
                assert check["outcome"] in ("agrees", "label_disagrees", "no_answer"), (task, check)
                if task != "cot_gsm8k":      # a few gsm8k rationales end on another number than their target
                    assert check["outcome"] == "agrees", (task, response, check)


def test_letter_answers_phrased_differently_agree_and_another_letter_disagrees(cot):
    r = _row(cot, "cot_aqua")                                    # target "(C)", options "(A) 300" ...
    assert r["targets"] == "(C)" and parse_options(r["inputs"])[2] == "(C) 1120"
    for response in ("C", "(C)", "C.", "The answer is C.", "So the answer is: 1120", "Answer: (C) 1120"):
        assert label_check(response, r["inputs"], r["targets"], r["rationale"], "cot", True)["outcome"] == "agrees"
    wrong = label_check("1/7:1/7:1/14 = 2:2:1. So the answer is (B).", r["inputs"], r["targets"], "", "cot", True)
    assert wrong["outcome"] == "label_disagrees" and (wrong["gold"], wrong["answer"]) == ("C", "B")
    assert label_check("It is (A) or (C).", r["inputs"], r["targets"], "", "cot", True)["outcome"] == "no_answer"


def test_option_text_yes_no_number_and_sentence_targets(cot):
    ecqa = _row(cot, "cot_ecqa")                                 # target "bloody mess" among 5 option texts
    options = parse_options(ecqa["inputs"])
    other = next(o for o in options if o != ecqa["targets"])
    assert label_check(f"So the answer is {ecqa['targets']}.", ecqa["inputs"], ecqa["targets"])["outcome"] == \
        "agrees"
    assert label_check(f"So the answer is {other}.", ecqa["inputs"], ecqa["targets"])["outcome"] == "label_disagrees"
    qa = _row(cot, "cot_strategyqa")                             # target "yes"
    assert label_check("Yes. Genghis Khan had many more children.", qa["inputs"], qa["targets"])["outcome"] == \
        "agrees"
    assert label_check("No, Julius Caesar had more.", qa["inputs"], qa["targets"])["outcome"] == "label_disagrees"
    gsm = _row(cot, "cot_gsm8k")                                 # target "72"
    assert label_check("48 + 24 = 72. The answer is 72 clips.", gsm["inputs"], gsm["targets"])["outcome"] == "agrees"
    assert label_check("The answer is 96.", gsm["inputs"], gsm["targets"])["outcome"] == "label_disagrees"
    sense = _row(cot, "cot_sensemaking")                         # target "Sentence A", options "Sentence A: ..."
    first = f"Answer: {sense['targets']}\n\n{sense['rationale']} Thus it is odd."
    assert label_check(first, sense["inputs"], sense["targets"])["outcome"] == "agrees"
    other = "Sentence B" if sense["targets"] == "Sentence A" else "Sentence A"
    assert label_check(f"So the answer is {other}.", sense["inputs"], sense["targets"])["outcome"] == \
        "label_disagrees"


def test_a_cot_target_holding_its_rationale_is_read_for_its_final_answer():
    query = "Which is a fruit?\nOptions:\n(A) carrot\n(B) apple\n(C) potato"
    target = "A carrot and a potato are vegetables. An apple grows on a tree. So the answer is (B)."
    assert label_check("Apples are fruits. The answer is B.", query, target, "", "cot", True)["outcome"] == "agrees"
    assert label_check("The answer is (C).", query, target, "", "cot", True)["outcome"] == "label_disagrees"


def test_targets_that_cannot_be_compared_are_not_comparable():
    summary = "The council approved the new budget after a long debate about school funding and road repairs."
    check = label_check("The council passed the budget.", "Summarize: ...", summary, "", "flan2021", False)
    assert check["outcome"] == "not_comparable"
    assert label_check("anything", "query", "", "", "niv2")["outcome"] == "not_comparable"


# ---------------------------------------------------------------- the funnel
def funnel_fixture():
    """Ten requests of one stage, each built to meet one filter (or none)."""
    q_text = "What is the process by which living things give rise to offspring?\nOptions:\n- (A) DNA\n- (B) " \
             "photosynthesis\n- (C) bird\n- (D) sex\n- (E) subtraction Let's think first. Stream of consciousness:"
    other = q_text.replace("living things", "animals")
    rows = [
        {"id": "q0", "user": q_text, "response": LONG_ANSWER},                                  # kept
        {"id": "q1", "user": other, "response": "Animals reproduce. " * 3 + "So the answer is (D)."},   # kept
        {"id": "q2", "user": "Q2?", "response": "", "status": "error", "error": "HTTP 500"},     # not answered
        {"id": "q3", "user": "Q3?", "response": "As an AI language model, I cannot answer."},   # refusal
        {"id": "q4", "user": "Q4?", "response": "Sex is how", "finish_reason": "length"},        # truncated
        {"id": "q5", "user": "Q5?", "response": "word " * 2100},                                  # too long
        {"id": "q6", "user": q_text.upper(), "response": "(D)"},                                 # duplicate query
        {"id": "q7", "user": "Q7?", "response": LONG_ANSWER.replace("(D)", "(D)!"), "collection": "niv2",
         "task": "task1"},                                                                       # near dup response
        {"id": "q8", "user": "Q8?\nOptions:\n(A) DNA\n(B) sex", "response": "So the answer is (A)."},  # disagrees
        {"id": "q9", "user": "Q9?", "response": "The answer is 42.", "collection": "niv2", "task": "task1"},
    ]
    qs = queries([{"id": r["id"], "inputs": r["user"], "targets": t} for r, t in
                  zip(rows, ["(D)", "(D)", "(D)", "(D)", "(D)", "(D)", "(D)", "(D)", "(B)", "a long free answer "
                                                                                            "nobody can compare"])])
    return responses(rows), qs


def count(text: str) -> int:
    return len(text.split())


def test_each_request_is_kept_or_rejected_once_with_its_reason():
    resp, qs = funnel_fixture()
    res = run_funnel(resp, qs, FunnelParams(), "stage1", token_count=count)
    assert list(res.kept["id"]) == ["q0", "q1", "q8", "q9"]
    assert list(res.rejects.columns) == list(REJECT_COLUMNS)
    assert sorted(list(res.rejects["id"]) + list(res.kept["id"])) == sorted(resp["id"])
    assert (res.kept["finish_reason"] == "stop").all()          # the near miss of `truncated`: kept
    why = res.rejects.set_index("id")
    assert why.loc["q2", ["filter", "reason", "detail"]].tolist() == ["answered", "error", "HTTP 500"]
    assert why.loc["q3", ["filter", "reason"]].tolist() == ["refusal", "refusal"]
    assert why.loc["q4", ["filter", "reason"]].tolist() == ["truncated", "finish_reason_length"]
    assert why.loc["q5", ["filter", "reason"]].tolist() == ["too_long", "over_max_len"]
    assert why.loc["q6", ["filter", "reason", "duplicate_of"]].tolist() == ["duplicate_query", "exact_duplicate",
                                                                            "q0"]
    assert why.loc["q7", ["filter", "reason", "duplicate_of"]].tolist() == ["duplicate_response", "near_duplicate",
                                                                            "q0"]
    assert "Jaccard" in why.loc["q7", "detail"] and (why["stage"] == "stage1").all()
    assert why.loc["q7", "collection"] == "niv2"
    labels = res.labels.set_index("id")["outcome"]
    assert labels.to_dict() == {"q0": "agrees", "q1": "agrees", "q8": "label_disagrees", "q9": "not_comparable"}


def test_drop_disagreeing_drops_only_the_disagreeing_row():
    resp, qs = funnel_fixture()
    p = FunnelParams(too_long={"max_len_tokens": 200}, label_agreement={"drop_disagreeing": True})
    res = run_funnel(resp, qs, p, "stage1", token_count=count)
    assert list(res.kept["id"]) == ["q0", "q1", "q9"]
    row = res.rejects.set_index("id").loc["q8"]
    assert (row["filter"], row["reason"]) == ("label_agreement", "label_disagrees") and "'A'" in row["detail"]


def test_counts_are_tidy_and_never_grow_along_the_funnel():
    resp, qs = funnel_fixture()
    res = run_funnel(resp, qs, FunnelParams(), "stage2", token_count=count)
    counts = res.counts
    assert list(counts.columns) == list(COUNT_COLUMNS)
    steps = ["requests", "answered"] + [f"after_{f}" for f in FILTERS]
    for collection, group in counts.groupby("collection"):
        assert list(group["step"]) == steps
        assert group["rows"].is_monotonic_decreasing, (collection, group["rows"].tolist())
    total = counts.groupby("step", sort=False)["rows"].sum()
    assert total.tolist() == [10, 9, 8, 7, 6, 5, 4, 4]
    assert total["after_label_agreement"] == len(res.kept)


def test_a_filter_switched_off_removes_nothing_and_has_no_step():
    resp, qs = funnel_fixture()
    p = FunnelParams(truncated={"enabled": False}, too_long={"enabled": False}, label_agreement={"enabled": False})
    res = run_funnel(resp, None, p, "stage1")
    assert "after_truncated" not in set(res.counts["step"]) and "after_too_long" not in set(res.counts["step"])
    assert {"q4", "q5", "q8"} <= set(res.kept["id"]) and res.labels.empty


def test_token_counts_from_a_column_and_answered_statuses():
    resp, qs = funnel_fixture()
    resp["n_tokens"] = [10] * 9 + [5000]
    p = FunnelParams(answered_statuses=["ok", "error"], refusal={"enabled": False})
    res = run_funnel(resp, qs, p, "stage1", token_count="n_tokens")
    why = res.rejects.set_index("id")
    assert why.loc["q9", "reason"] == "over_max_len" and "5000 tokens" in why.loc["q9", "detail"]
    assert {"q2", "q3", "q5"} <= set(res.kept["id"])            # answered as "error"; refusals off; 10 tokens


def test_bad_input_is_one_line_naming_what_is_wrong():
    resp, qs = funnel_fixture()
    with pytest.raises(ValueError, match=r"funnel.too_long is on: pass run_funnel\(token_count=...\)"):
        run_funnel(resp, qs, FunnelParams(), "stage1")
    with pytest.raises(ValueError, match="funnel.label_agreement is on: pass run_funnel"):
        run_funnel(resp, None, FunnelParams(too_long={"enabled": False}), "stage1")
    with pytest.raises(ContractError, match=r"responses \(stage1\): no column 'finish_reason'"):
        run_funnel(resp.drop(columns=["finish_reason"]), qs, FunnelParams(), "stage1", token_count=count)
    with pytest.raises(ContractError, match=r"queries \(stage1\): no column 'targets'"):
        run_funnel(resp, qs.drop(columns=["targets"]), FunnelParams(), "stage1", token_count=count)
    with pytest.raises(ValueError, match="duplicated id 'q0'"):
        run_funnel(pd.concat([resp, resp.head(1)]), qs, FunnelParams(), "stage1", token_count=count)


def test_funnel_on_real_cot_rows_answered_by_their_own_data(cot):
    """The data teacher's answers (rationale, then the target) pass every filter but the duplicate ones."""
    qs = cot.assign(system_message_id=1, system_message="Think step-by-step and justify your steps.")
    resp = responses([{"id": r.id, "user": r.inputs, "task": r.task,
                       "response": f"{r.rationale}\n\nSo the answer is: {r.targets}"} for r in qs.itertuples()])
    res = run_funnel(resp, qs, FunnelParams(), "stage1", token_count=count)
    assert set(res.rejects["filter"]) <= {"duplicate_query", "duplicate_response"}
    assert (res.labels["outcome"] == "agrees").mean() > 0.99
    assert res.rejects["duplicate_of"].isin(set(res.kept["id"])).all()


def test_funnel_figure_one_panel_per_stage_labelled_with_counts():
    import matplotlib

    matplotlib.use("Agg")
    resp, qs = funnel_fixture()
    counts = pd.concat([run_funnel(resp, qs, FunnelParams(), s, token_count=count).counts for s in ("stage1",
                                                                                                   "stage2")])
    fig = funnel_figure(counts)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["stage1", "stage2"]
    labels = [t.get_text().strip() for t in fig.axes[0].texts]
    assert labels[0] == "10 (100.0%)" and labels[-1] == "4 (40.0%)"
    ticks = {t.get_text(): t.get_position()[1] for t in fig.axes[0].get_yticklabels()}
    assert ticks["requests"] == max(ticks.values()) and "after label agreement" in ticks


@pytest.mark.parametrize("response, target", list(itertools.product(["(B)", "B", "B.", "(b)", "The answer is b.",
                                                                     "blue"], ["(B)", "B", "b)", "B."])))
def test_letter_forms_agree_with_each_other(response, target):
    query = "Pick one.\nOptions:\n(A) red\n(B) blue"
    check = label_check(response, query, target, "", "t0", True)
    assert (check["outcome"], check["gold"], check["answer"]) == ("agrees", "B", "B")
