"""Evaluation engine: prompt formatting per task, loaders, per-task accuracy with macro/micro averages, both
modes over a scripted backend, the score CLI, and the paper-table builder."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from orca_utils.data import resolve_dataset
from orca_utils.evaluation.engine import evaluate, score_records, summarize
from orca_utils.evaluation.tasks import EvalItem, format_prompt, get_task, load_task, subset_items, task_specs


def _root(name):
    try:
        return resolve_dataset(name, None, offline=True).path
    except FileNotFoundError:
        pytest.skip(f"{name} data not available")


def test_task_lists_match_the_paper():
    assert [s.name for s in task_specs("agieval")] == ["aqua-rat", "logiqa-en", "lsat-ar", "lsat-lr", "lsat-rc",
                                                       "sat-math", "sat-en", "sat-en-without-passage"]
    bbh = task_specs("bbh")
    assert len(bbh) == 27 and len({s.name for s in bbh}) == 27
    assert {s.name for s in bbh if s.kind in ("number", "text", "brackets")} == {
        "multistep_arithmetic_two", "object_counting", "word_sorting", "dyck_languages"}
    assert get_task("bbh", "web_of_lies").labels == ("Yes", "No")
    assert get_task("agieval", "lsat_ar").name == "lsat-ar"
    with pytest.raises(ValueError, match="task 'lsat-xx'"):
        get_task("agieval", "lsat-xx")


def test_agieval_prompt_format():
    spec = get_task("agieval", "sat-math")
    row = {"passage": "", "question": "What is 2+2?", "options": ["(A)3", "(B)4", "(C)5", "(D)6"], "label": "B"}
    assert format_prompt(spec, row) == ("Q: What is 2+2? Answer Choices: (A)3 (B)4 (C)5 (D)6\n"
                                        "A: Among A through D, the answer is")
    row = {"passage": "Passage text. ", "question": "Q1?", "options": ["(A)x", "(B)y", "(C)z", "(D)w", "(E)v"]}
    assert format_prompt(get_task("agieval", "lsat-rc"), row).startswith("Passage text. Q: Q1? Answer Choices:")
    assert format_prompt(get_task("agieval", "lsat-rc"), row).endswith("Among A through E, the answer is")


@pytest.mark.parametrize("task", ["boolean_expressions", "date_understanding", "word_sorting", "navigate"])
def test_bbh_prompt_format(task):
    spec = get_task("bbh", task)
    prompt = format_prompt(spec, {"input": "INPUT TEXT", "target": "x"})
    assert prompt == f"{spec.description}\n\nQ: INPUT TEXT\nA:"
    assert spec.description and not spec.description.endswith("\n")


def test_local_loaders_read_every_task():
    agi = _root("agieval")
    sizes = {s.name: len(load_task(agi, "agieval", s.name)) for s in task_specs("agieval")}
    assert sizes == {"aqua-rat": 254, "logiqa-en": 651, "lsat-ar": 230, "lsat-lr": 510, "lsat-rc": 269,
                     "sat-math": 220, "sat-en": 206, "sat-en-without-passage": 206}
    item = load_task(agi, "agieval", "sat-math")[0]
    assert item.target in "ABCD" and len(item.continuations) == 4 and item.continuations[0].startswith(" (A)")
    bbh = _root("bbh")
    # three upstream rows give option text instead of a letter: one maps, the paper's n (249, 248) results
    assert len(load_task(bbh, "bbh", "movie_recommendation")) == 249
    assert len(load_task(bbh, "bbh", "ruin_names")) == 248
    dates = load_task(bbh, "bbh", "date_understanding")
    assert all(len(it.options) >= 5 and "ABCDEF".index(it.target) < len(it.options) for it in dates)
    assert all(it.options[it.gold_index] and it.continuations[it.gold_index] == f" ({it.target})" for it in dates)


def test_hub_layout_parquet(tmp_path):
    (tmp_path / "navigate").mkdir()
    pd.DataFrame({"input": ["Take 1 step. Return?", "Turn."], "target": ["No", "Yes"]}).to_parquet(
        tmp_path / "navigate" / "test-00000-of-00001.parquet")
    items = load_task(tmp_path, "bbh", "navigate")
    assert [it.target for it in items] == ["No", "Yes"]
    hub_agi = tmp_path / "agi" / "lsat_ar"
    hub_agi.mkdir(parents=True)
    (hub_agi / "test.jsonl").write_text(json.dumps({"query": "Q: x? Answer Choices: (A)a (B)b\nA: Among A through B, "
                                                             "the answer is", "choices": ["(A)a", "(B)b"],
                                                    "gold": [1]}) + "\n")
    got = load_task(tmp_path / "agi", "agieval", "lsat-ar")
    assert got[0].target == "B" and got[0].options == ["a", "b"]


def test_missing_task_data_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="'lsat-ar'"):
        load_task(tmp_path, "agieval", "lsat-ar")


def _item(task, i, target, kind="choice", n_opts=4):
    letters = "ABCDEFG"[:n_opts]
    return EvalItem("bbh", task, f"{task}/{i}", f"prompt {task} {i}", target, kind,
                    options=[f"opt{k}" for k in range(n_opts)], continuations=[f" ({c})" for c in letters],
                    gold_index=letters.index(target))


def test_summarize_macro_and_micro():
    records = pd.DataFrame([
        *[{"task": "a", "correct": c, "failed": False} for c in (True, True, True, False)],   # 75%
        *[{"task": "b", "correct": c, "failed": f} for c, f in ((True, False), (False, True))],  # 50%, 1 failure
        {"task": "c", "correct": False, "failed": True},                                       # 0%
    ])
    per_task, macro, micro = summarize(records)
    assert list(per_task["accuracy"]) == [75.0, 50.0, 0.0]
    assert list(per_task["failure_rate"]) == [0.0, 50.0, 100.0]
    assert macro == pytest.approx(125 / 3)          # the paper's average: mean over tasks
    assert micro == pytest.approx(100 * 4 / 7)      # over items


class Scripted:
    """A backend answering from a table; log-likelihoods favour a chosen continuation."""

    label = "scripted"

    def __init__(self, answers, favour):
        self.answers, self.favour, self.calls = answers, favour, []

    def generate(self, conversations, max_new_tokens=256, stop=None, system_message=None):
        self.calls.append(("generate", len(conversations), system_message))
        return [self.answers[c] for c in conversations]

    def loglikelihood(self, requests, system_message=None):
        self.calls.append(("loglikelihood", len(requests), system_message))
        return [0.0 if cont == self.favour.get(ctx) else -5.0 for ctx, cont in requests]


def test_evaluate_both_modes():
    items = {"t1": [_item("t1", 0, "A"), _item("t1", 1, "B")], "t2": [_item("t2", 0, "C")]}
    answers = {"prompt t1 0": "So the answer is (A).", "prompt t1 1": "I am not sure.", "prompt t2 0": "(D)"}
    backend = Scripted(answers, {"prompt t1 0": " (A)", "prompt t1 1": " (B)", "prompt t2 0": " (D)"})
    gen = evaluate(backend, items, mode="generate", system_message="Be brief.")
    assert list(gen.per_task["accuracy"]) == [50.0, 0.0]
    assert list(gen.per_task["failure_rate"]) == [50.0, 0.0]
    assert gen.macro == 25.0 and gen.micro == pytest.approx(100 / 3)
    assert backend.calls[0] == ("generate", 3, "Be brief.")          # one batched call for all tasks
    assert gen.errors(per_task=5)["id"].tolist() == ["t1/1", "t2/0"]
    ll = evaluate(backend, items, mode="loglikelihood")
    assert list(ll.per_task["accuracy"]) == [100.0, 0.0] and ll.records["failed"].sum() == 0
    assert backend.calls[-1] == ("loglikelihood", 12, None)          # 3 items x 4 options
    metrics = gen.metrics("bbh/base")
    assert metrics["bbh/base/t1/accuracy"] == 50.0 and metrics["bbh/base/macro_accuracy"] == 25.0
    with pytest.raises(ValueError, match="mode 'sample'"):
        evaluate(backend, items, mode="sample")


def test_subset_is_fixed_and_ordered():
    items = [_item("t", i, "A") for i in range(20)]
    a, b = subset_items(items, 5, seed=3), subset_items(items, 5, seed=3)
    assert [x.id for x in a] == [x.id for x in b] and len(a) == 5
    assert [x.id for x in a] == sorted((x.id for x in a), key=lambda s: int(s.split("/")[1]))
    assert subset_items(items, None) == items


def test_score_records_and_cli(tmp_path):
    rows = [{"prediction": "Let's think step by step. Alice has the ball.\nSo the answer is (B).", "target": "(B)"},
            {"prediction": "(B)", "target": "(B)"}, {"prediction": "(A)", "target": "(B)"},
            {"prediction": "no idea", "target": "(C)"}]
    res = score_records(rows, "bbh", "date_understanding")
    assert (res["accuracy"], res["extraction_failure_rate"], res["n"]) == (50.0, 25.0, 4)
    path = tmp_path / "out.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cmd = [sys.executable, "-m", "orca_utils", "score", "--benchmark", "bbh", "--task", "date_understanding",
           str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["accuracy"] == 50.0
    path.write_text('{"prediction": "(A)"}\n')
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "line 1" in bad.stderr and "target" in bad.stderr


def test_paper_table_marks_status():
    from orca_utils.evaluation.engine import EvalResult
    from orca_utils.evaluation.zero_shot import ZeroShotRun, accuracy_table

    items = {"boolean_expressions": [_item("boolean_expressions", 0, "A")],
             "word_sorting": [_item("word_sorting", 0, "A")]}
    recs = pd.DataFrame([{"task": t, "id": f"{t}/0", "correct": t == "word_sorting", "failed": False}
                         for t in items])
    per_task, macro, micro = summarize(recs)
    zs = ZeroShotRun("bbh", items, results={"m": EvalResult(recs, per_task, macro, micro, 1.0, "m")})
    table = accuracy_table(zs).set_index("task")
    assert table.loc["Boolean Expressions", "paper Orca-13B"] == "72.0"
    assert table.loc["Word Sorting", "paper Orca-13B"] == "not available"   # not in the paper's table
    assert table.loc["Word Sorting", "m: acc %"] == 100.0 and table.loc["Word Sorting", "items"] == 1
    paper_subset = "macro average (paper's 23 tasks, 1 of them run; paper columns: all 23)"
    assert table.loc[paper_subset, "paper Orca-13B"] == "49.7"
    assert table.loc[paper_subset, "m: acc %"] == 0.0   # word_sorting left out
    assert table.loc["macro average (all 2 tasks run, ours)", "paper Orca-13B"] == "not available"
    assert table.loc["macro average (all 2 tasks run, ours)", "m: acc %"] == 50.0
    agi = accuracy_table(ZeroShotRun("agieval", {"sat-math": [_item("sat-math", 0, "A")]},
                                     results={"m": EvalResult(recs.iloc[:1].assign(task="sat-math"),
                                                              *summarize(recs.iloc[:1].assign(task="sat-math")),
                                                              1.0, "m")})).set_index("task")
    assert agi.loc["SAT-Math", "paper Orca-13B"] == "32.3"                 # single-source cell, shown as is
    assert "(unverified)" in agi.loc["SAT-Math", "paper GPT-4"]            # recalled cell, marked


def test_relative_improvement_table():
    from orca_utils.evaluation.engine import EvalResult
    from orca_utils.evaluation.zero_shot import ZeroShotRun, relative_improvement

    items = {"boolean_expressions": [_item("boolean_expressions", i, "A") for i in range(4)],
             "word_sorting": [_item("word_sorting", 0, "A")]}

    def result(correct_be):
        recs = pd.DataFrame([{"task": "boolean_expressions", "id": f"b{i}", "correct": i < correct_be,
                              "failed": False} for i in range(4)] +
                            [{"task": "word_sorting", "id": "w0", "correct": False, "failed": False}])
        return EvalResult(recs, *summarize(recs), 1.0, "")

    zs = ZeroShotRun("bbh", items, results={"before": result(2), "after": result(3)})
    rel = relative_improvement(zs, "before", "after").set_index("task")
    assert rel.loc["boolean_expressions", "ours: after over before (%)"] == 50.0      # 75% over 50%
    assert pd.isna(rel.loc["word_sorting", "ours: after over before (%)"])           # 0% before: undefined
    assert rel.loc["boolean_expressions", "paper: Orca-13B over Vicuna-13B (%)"] == 76.5
    assert rel.loc["word_sorting", "paper status"] == "not available"
