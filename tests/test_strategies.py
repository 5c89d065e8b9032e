"""Orca 2's prompt erasure (orca_utils.strategies, 02's `prompt_erasure`): strategy per task for the teacher, the
generic message for the student, both columns in the training tables, and no strategy message in what is trained."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from orca_utils import augmentation
from orca_utils.config import load_profile
from orca_utils.contracts import TRAIN_TABLE_COLUMNS
from orca_utils.data import resolve_shared
from orca_utils.strategies import (CATEGORY_STRATEGY, GENERIC_SYSTEM_MESSAGE, STRATEGIES, STRATEGY_MESSAGES,
                                   holds_strategy_message, strategy_frame, strategy_of, task_categories)
from orca_utils.system_messages import SYSTEM_MESSAGES

TASK_LIST = resolve_shared("data/flan/flan_collection_info.csv")


def _queries() -> pd.DataFrame:
    """Real-shaped 01 queries: the task names of the shared FLAN-v2 CoT and NIv2 data."""
    rows = [("cot", "cot_gsm8k", True, 7), ("niv2", "task288_gigaword_summarization", False, 13),
            ("niv2", "task1147_country_currency", False, 2), ("niv2", "task_unknown_to_the_list", True, 5),
            ("niv2", "task_unknown_to_the_list_2", False, 16), ("t0", "adversarial_qa_dbert_based_on", False, 16)]
    return pd.DataFrame({"id": [f"q{i}" for i in range(len(rows))], "collection": [r[0] for r in rows],
                         "task": [r[1] for r in rows], "template_type": "zs_opt", "inputs": [f"query {i}" for i in
                                                                                               range(len(rows))],
                         "targets": "t", "rationale": "", "is_multiple_choice": [r[2] for r in rows],
                         "system_message_id": [r[3] for r in rows],
                         "system_message": [SYSTEM_MESSAGES[r[3]] for r in rows]})


def test_task_categories_read_the_real_task_list():
    categories = task_categories(TASK_LIST)
    assert categories["task288_gigaword_summarization"] == "Title Generation"   # NIv2: by task name
    assert categories["cot_gsm8k"] == "Grade School Math Word Problems"           # CoT: our name of the dataset
    with pytest.raises(ValueError, match="missing columns"):
        task_categories(pd.DataFrame({"Source": ["NIv2"]}))


def test_strategy_per_query_follows_category_then_collection():
    categories = task_categories(TASK_LIST)
    assert strategy_of("cot", "cot_gsm8k", True, categories)[0] == "step_by_step"
    assert strategy_of("niv2", "task288_gigaword_summarization", False, categories)[0] == "extract_generate"
    assert strategy_of("niv2", "task1147_country_currency", False, categories)[0] == "recall_then_generate"
    assert strategy_of("niv2", "task_unknown_to_the_list", True, categories) == ("recall_reason_generate",
                                                                                  "multiple choice")
    assert strategy_of("niv2", "task_unknown_to_the_list", False, categories)[0] == "direct_answer"
    overridden = strategy_of("niv2", "task288_gigaword_summarization", False, categories,
                             {"Title Generation": "direct_answer"})
    assert overridden[0] == "direct_answer"
    with pytest.raises(ValueError, match="collection 'dialog'"):
        strategy_of("dialog", "x", False, {})
    assert set(CATEGORY_STRATEGY.values()) <= set(STRATEGIES) == set(STRATEGY_MESSAGES)


def test_without_erasure_teacher_and_student_see_01s_message():
    q = _queries()
    f = strategy_frame(q, enabled=False)
    assert (f["teacher_system_message"] == q["system_message"]).all()
    assert (f["system_message"] == q["system_message"]).all() and (f["strategy"] == "").all()


def _cfg(enabled: bool):
    cfg = load_profile("smoke", overrides=[f"02_augmentation.prompt_erasure.enabled={str(enabled).lower()}"])
    return cfg["02_augmentation"]


@pytest.mark.parametrize("enabled", [False, True])
def test_training_tables_carry_both_messages(enabled):
    cfg = _cfg(enabled)
    queries = augmentation.with_strategies(cfg, {"stage1": _queries()})
    q = queries["stage1"]
    requests = augmentation.build_requests(q, cfg.stage1)
    sent = [next((m["content"] for m in r.messages if m["role"] == "system"), "") for r in requests]
    assert sent == q["teacher_system_message"].tolist()                      # the teacher gets the teacher's
    results = SimpleNamespace(to_frame=lambda: pd.DataFrame({
        "id": q["id"], "text": [f"answer {i}" for i in range(len(q))], "status": "ok", "finish_reason": "stop",
        "prompt_tokens": 1, "completion_tokens": 1, "error": None, "attempts": 1, "from_cache": False}))
    train = augmentation.train_frame(augmentation.responses_frame(q, results, cfg.stage1))
    assert list(train.columns) == list(TRAIN_TABLE_COLUMNS)
    assert (train["system"] == train["system_message"]).all()               # the student trains with system_message
    if enabled:
        assert (train["teacher_system_message"] != train["system_message"]).all()
        assert (train["system_message"] == GENERIC_SYSTEM_MESSAGE).all()
        assert set(train["teacher_system_message"]) <= set(STRATEGY_MESSAGES.values())
    else:
        assert (train["teacher_system_message"] == train["system_message"]).all()


def test_erased_training_text_holds_no_strategy_message():
    """What 04 tokenizes (the one serialization, orca_utils.tokens) holds the generic message and no strategy."""
    from orca_utils.tokens import load_padded_tokenizer
    from orca_utils.train_data import tokenize_rows

    cfg = _cfg(True)
    q = augmentation.with_strategies(cfg, {"stage1": _queries()})["stage1"]
    results = SimpleNamespace(to_frame=lambda: pd.DataFrame({
        "id": q["id"], "text": "The answer is 4.", "status": "ok", "finish_reason": "stop", "prompt_tokens": 1,
        "completion_tokens": 1, "error": None, "attempts": 1, "from_cache": False}))
    train = augmentation.train_frame(augmentation.responses_frame(q, results, cfg.stage1))
    tokenizer = load_padded_tokenizer(str(resolve_shared("tokenizers/llama")))
    samples, _ = tokenize_rows(train, tokenizer, max_len=512)
    texts = [tokenizer.decode(s.input_ids) for s in samples]
    assert len(texts) == len(train)
    assert all(holds_strategy_message(t) is None for t in texts)
    assert all("cautious assistant" in t for t in texts)
    # the same rows without erasure would have carried 01's messages, and a strategy message is detected
    assert holds_strategy_message("### System:\n" + STRATEGY_MESSAGES["step_by_step"]) == "step_by_step"


def test_orca2_profile_turns_erasure_on_and_evaluates_under_the_generic_message():
    cfgs = load_profile("orca2")
    assert cfgs["02_augmentation"].prompt_erasure.enabled
    assert not load_profile("paper")["02_augmentation"].prompt_erasure.enabled   # paper follows Orca 1
    assert cfgs["05_agieval"].eval_system_message == cfgs["06_bbh"].eval_system_message == "generic"


def test_eval_system_message_names_what_the_tables_used():
    from orca_utils.evaluation.zero_shot import eval_system_message

    cfgs = load_profile("smoke", overrides=["05_agieval.system_message_id=7"])
    assert eval_system_message(cfgs["05_agieval"]) == (SYSTEM_MESSAGES[7], "paper's message 7")
    generic = load_profile("smoke", overrides=["05_agieval.eval_system_message=generic"])["05_agieval"]
    assert eval_system_message(generic) == (GENERIC_SYSTEM_MESSAGE, "generic (Orca 2's cautious message)")
    empty = load_profile("smoke", overrides=["05_agieval.system_message_id=7",
                                             "05_agieval.eval_system_message=empty"])["05_agieval"]
    assert eval_system_message(empty) == (None, "empty")


@pytest.mark.parametrize("benchmark, expected", [
    ("agieval", {("Orca-2-7B", "empty"): "45.10", ("Orca-2-7B", "cautious (generic)"): "43.97",
                 ("Orca-2-13B", "empty"): "49.93", ("Orca-2-13B", "cautious (generic)"): "48.18"}),
    ("bbh", {("Orca-2-7B", "not stated in the source"): "45.93", ("Orca-2-13B", "not stated in the source"): "50.18"}),
])
def test_orca2_stretch_rows_beside_orca1(benchmark, expected):
    from orca_utils.evaluation.result_tables import ZeroShotRun, orca2_reference_table

    table = orca2_reference_table(ZeroShotRun(benchmark, items={}))
    stretch = table[table["source"].str.contains("Orca 2")]
    assert {(m, sm): v for m, sm, v in zip(stretch["model"], stretch["system message"],
                                            stretch["macro accuracy %"])} == expected
    assert set(stretch["status"]) <= {"verified", "single-source"}
    orca1 = table[table["model"] == "Orca-13B"]["macro accuracy %"].iloc[0]
    assert orca1 == {"agieval": "41.7", "bbh": "49.7"}[benchmark]     # Orca 1's average stays beside them
