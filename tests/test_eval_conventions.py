"""The two scoring conventions on real-shaped outputs: `published` (the benchmark authors' own rule) and `robust`
(ours: a hedge, an answer naming no option or an output cut off before its answer is a failure, never a guess).

Cases marked "released" are lines of BBH's released Codex outputs (suzgunmirac/BIG-Bench-Hard, commit 9ee07bd,
`code-davinci-002-outputs/code-davinci-002-{cot,direct}/<task>_few_shot_template_0-255000.json`, item index given):
the prediction's final sentences and the target verbatim, the long reasoning before them shortened to "...", the
input cut to the last question. Applied to those files whole, the published rule reproduces the released
accuracy of all 54 files (`benchmarks/lm_eval_peer.py --released-dir` reads them; see docs/05_06_agieval_bbh.md).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from orca_utils.evaluation.engine import score_records
from orca_utils.evaluation.extract import (extract_answer, extract_published, normalize_target, score_prediction,
                                           score_published)

DATES = ["12/11/1937", "12/25/1937", "01/04/1938", "12/04/1937", "12/25/2006", "07/25/1937"]
SHAPES = ["circle", "heptagon", "hexagon", "kite", "line", "octagon"]
TF, YN, VALID = ("True", "False"), ("Yes", "No"), ("valid", "invalid")
MOVIES = ["Monsters", "Inc", "Children of the Night", "The Incredible Shrinking Man", "Town & Country"]

# (case id, kind, prediction, BBH target string, options or labels,
#  robust answer (None: extraction failure), robust correct?, published correct?)
CASES = [
    # --- a hedge between options: never credited
    ("released hyperbaton 23", "choice",
     '... Option (B): "mysterious ancient yellow walking cat". Option (B) has the following adjective order: '
     "[1. opinion] [3. age] [5. color] [8. purpose] (or, in numeric terms, 1 3 5 8). Because 1 < 3 < 5 < 8 is "
     "correct, (B) has the correct ordering. So the answer is (A) or (B).", "(B)", None, None, False, False),
    ("released hyperbaton 1", "choice",
     "... Because 2 < 5 < 6 < 7 < 8 is correct, (B) has the correct ordering. So the answer is (A) and (B).",
     "(B)", None, None, False, False),
    ("hedge bare letters", "choice", "Both dates fit the clue. So the answer is B or C.", "(B)", DATES, None,
     False, False),
    ("hedge possibly", "choice", "The answer is (C), or possibly (D).", "(C)", None, None, False, False),
    ("hedge option text", "choice", "Its path closes on itself with four sides. The answer is kite or hexagon.",
     "(D)", SHAPES, None, False, False),
    ("hedge boolean", "boolean", "Sam's claim cannot be checked from what we know. So the answer is Yes or No.",
     "Yes", YN, None, False, False),
    ("hedge number", "number", "I count the fruits twice and get different totals. So the answer is 7 or 8.",
     "8", None, None, False, False),
    # --- an answer that names no option: a failure, not the last letter of the reasoning
    ("none of the above", "choice",
     "If we look at (B), 12/25/1937 is the day after Christmas Eve, but the question asks for ten days "
     "before. So the answer is (None of the above).", "(B)", DATES, None, False, False),
    ("none of the options", "choice",
     "Let's think step by step. (A) is too early and (C) is in the wrong year. So the answer is none of the "
     "options.", "(C)", DATES, None, False, False),
    ("answer names no option", "choice", "Checking (A) 12/11/1937 first. Answer: it cannot be determined.",
     "(A)", DATES, None, False, False),
    ("boolean names no label", "boolean", "not ( True ) is False. The answer is: it depends on the operator.",
     "False", TF, None, False, False),
    ("number names no number", "number", "We have 3 apples and 4 pears. So the answer is unknown.", "7", None,
     None, False, False),
    # --- reasoning cut off before any final answer
    ("released date_understanding 105", "choice",
     "If on May 9th, 2017 Jane bought 40 eggs, then on May 9th, 2017 she had 40 eggs. ... If she ate one per "
     "day, then on June 3rd, 2017 she had 15 eggs. If she ate one per day, then on June 4", "(C)",
     ["06/18/2030", "09/18/2016", "06/18/2016", "07/18/2015", "06/22/2016", "06/25/2016"], None, False, False),
    ("truncated after an option", "choice",
     "Let's think step by step.\nOption (A) is 12/11/1937, two weeks too early.\nIf we look at (B), the date",
     "(B)", DATES, None, False, False),
    ("truncated mid-list", "choice", "(A) is ruled out since the year is wrong. Now (C", "(C)", None, None,
     False, False),
    ("truncated boolean", "boolean", "Let's think step by step. not False is True. True and False is", "False",
     TF, None, False, False),
    ("truncated number", "number",
     "Let's count the instruments: flute (1), piano (2), trombone (3). Then violin (4), accordion", "8", None,
     None, False, False),
    # --- the reasoning says one thing, the conclusion another: only the conclusion counts
    ("conclusion over reasoning", "choice",
     "(A) looks right at first: 12/11/1937. Rechecking, tomorrow is 12/25/1937. So the answer is (B).", "(B)",
     DATES, "B", True, True),
    ("two stated answers, last wins", "choice",
     "The answer is (B). Wait: re-reading, Sam moved first, so the answer is (D).", "(D)", None, "D", True,
     False),
    ("afterthought not read", "choice", "So the answer is (C). However, (A) is also plausible.", "(C)", None,
     "C", True, False),
    ("boolean conclusion", "boolean",
     "True and False is False, so one might first say True. So the answer is False.", "False", TF, "False",
     True, True),
    ("released date_understanding 1", "choice",
     "If today is 02/01/1987 to them, then today's date is February 1, 1987. The date a month ago is January 1, "
     "1987, that is 01/01/1987. So the answer is (B).", "(A)", None, "B", False, False),
    ("released navigate 0", "boolean",
     "... (8) Take 3 steps right: (3, -6), facing the positive y-axis.\nSince (3, -6) is not (0, 0), we are not "
     "where we started. So the answer is No.", "No", YN, "No", True, True),
    # --- direct answers with trailing text
    ("direct letter and text", "choice", "(B) 12/25/1937", "(B)", DATES, "B", True, False),
    ("direct label with period", "boolean", "True.", "True", TF, "True", True, False),
    ("direct letter then reason", "choice", "B. Because the train leaves at noon, (A) is too early.", "(B)",
     None, "B", True, False),
    ("direct label then reason", "boolean", "No, the player cannot score a touchdown in hockey.", "No", YN,
     "No", True, False),
    ("direct letter alone", "choice", "(B)", "(B)", DATES, "B", True, True),
    ("released direct sports_understanding 0", "boolean", "yes", "no", ("yes", "no"), "yes", False, False),
    ("released direct boolean_expressions 0", "boolean", "False", "False", TF, "False", True, True),
    ("released direct object_counting 0", "number", "6", "8", None, "6", False, False),
    ("released direct word_sorting 0", "text", "syndrome therefrom", "syndrome therefrom", None,
     "syndrome therefrom", True, True),
    ("released multistep_arithmetic_two 0", "number",
     "... Then, the final equation is A - B = 46 - 22 = 24. So the answer is 24.", "24", None, "24", True, True),
    ("released dyck_languages 93", "brackets",
     'Now, we have reached the end. The final stack is "[ [".\nWe will need to pop out "[", "[" one by one in '
     'that order.\nSo, we need "]", "]". So the answer is ] ]', "] ]", None, "] ]", True, True),
    ("released sports_understanding 0", "boolean",
     "Elias Lindholm is a Swedish ice hockey player. Beating the buzzer is part of ice hockey. So the answer is "
     "yes.", "no", ("yes", "no"), "yes", False, False),
    ("released date_understanding 0", "choice",
     "If today is Christmas Eve of 1937, then today's date is December 24, 1937. The date tomorrow is December "
     "25, 1937, that is 12/25/1937. So the answer is (B).", "(B)", DATES, "B", True, True),
]


def _split(kind, extra):
    return (extra if kind == "choice" else None), (extra if kind == "boolean" else None)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_robust_convention(case):
    _, kind, prediction, target, extra, answer, robust_ok, _ = case
    options, labels = _split(kind, extra)
    ex = extract_answer(prediction, kind, options=options, labels=labels)
    assert ex.answer == answer, f"{prediction[-80:]!r}: read {ex}"
    assert ex.failed == (answer is None)
    ok, _ = score_prediction(prediction, target, kind, options=options, labels=labels)
    assert ok == robust_ok


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_published_bbh_convention(case):
    _, _, prediction, target, _, _, _, published_ok = case
    ok, _ = score_published(prediction, target, "bbh")
    assert ok == published_ok


def test_table_covers_every_failure_class():
    assert len(CASES) >= 30
    names = " ".join(c[0] for c in CASES)
    for word in ("hedge", "none of", "truncated", "conclusion", "direct", "released"):
        assert word in names, word
    assert sum(c[5] is None for c in CASES) >= 15          # extraction failures, never guesses
    assert sum(c[6] != c[7] for c in CASES) >= 5            # the conventions differ, both reported
    assert sum(c[0].startswith("released") for c in CASES) >= 8


def test_published_bbh_rule_details():
    # the text after the LAST marker, one trailing period dropped; direct outputs whole (stripped), exact case
    assert extract_published("So the answer is (A). Hmm. So the answer is (C).", "bbh").answer == "(C)"
    assert extract_published("So the answer is ] ]", "bbh").answer == "] ]"
    assert extract_published("  (B)\n", "bbh").answer == "(B)"
    assert extract_published("So the answer is (B)..", "bbh").answer == "(B)."
    assert not score_published("So the answer is yes.", "Yes", "bbh")[0]          # case counts
    assert score_published("So the answer is Monsters, Inc.", "Monsters, Inc", "bbh")[0]
    assert extract_published("", "bbh").failed and extract_published(None, "bbh").failed
    with pytest.raises(ValueError, match="benchmark 'mmlu'"):
        extract_published("(A)", "mmlu")


@pytest.mark.parametrize("prediction,label,read,ok", [
    ("Among A through E, the answer is C.", "C", "A", False),   # AGIEval reads the first capital A-F: "Among"
    (" (C) 18", "C", "C", True),
    ("The answer is D", "D", "D", True),
    ("I think B.", "B", "B", True),                             # "I" is not among A-F
    ("none of them", "A", None, False),
])
def test_published_agieval_first_capital(prediction, label, read, ok):
    assert extract_published(prediction, "agieval").answer == read
    assert score_published(prediction, label, "agieval")[0] == ok


def test_robust_reads_agieval_answers_that_published_misreads():
    assert extract_answer("Among A through E, the answer is C.", "choice").answer == "C"


def test_option_text_targets():
    assert normalize_target("Monsters", "choice", options=MOVIES) == "A"
    assert normalize_target("the incredible shrinking man", "choice", options=MOVIES) == "D"
    with pytest.raises(ValueError, match="choice target 'Monsters, Inc': option text that names no single"):
        normalize_target("Monsters, Inc", "choice", options=MOVIES)
    with pytest.raises(ValueError, match="choice target 'maybe'"):
        normalize_target("maybe", "choice")


# released movie_recommendation 163 (CoT and direct) and ruin_names 144 (direct): option-text targets
MOVIE_INPUT = ("Find a movie similar to Minority Report, Shrek, Catch Me If You Can, Aladdin:\nOptions:\n"
               "(A) Monsters\n(B) Inc\n(C) Children of the Night\n(D) The Incredible Shrinking Man\n"
               "(E) Town & Country\nA:")
RUIN_INPUT = ("Which of the following is a humorous edit of this artist or movie name: 'rita, sue and bob too'?\n"
              "Options:\n(A) rita\n(B) sue and bob too\n(C) rita\n(D) sue and bob poo\n(E) rita\n"
              "(F) sue and box too\n(G) rita,y sue and bob too\nA:")
FILE_ROWS = [
    {"input": "Q: " + MOVIE_INPUT, "target": "Monsters, Inc", "prediction":
     "... Amongst all the options, the only movie similar to these ones seems to be Monsters Inc (animation, "
     "adventure, comedy; 2001), as it is also an animation movie. So the answer is (B)."},
    {"input": "Q: " + MOVIE_INPUT, "target": "Monsters, Inc", "prediction": "(B)"},
    {"input": "Q: " + RUIN_INPUT, "target": "rita, sue and bob poo", "prediction": "(D)"},
    {"input": "Q: " + MOVIE_INPUT, "target": "(A)", "prediction": "So the answer is (A)."},
    {"question": MOVIE_INPUT, "target": "Monsters", "prediction": "So the answer is (A) or (B)."},
    {"input": "Q: " + MOVIE_INPUT, "target": "(D)", "prediction": "(D) The Incredible Shrinking Man"},
]


def test_score_records_keeps_going_past_bad_targets():
    robust = score_records(FILE_ROWS, "bbh", "movie_recommendation")
    assert [b["line"] for b in robust["bad_lines"]] == [1, 2, 3]
    assert "Monsters, Inc" in robust["bad_lines"][0]["error"]
    assert (robust["n"], robust["correct"], robust["failed"]) == (3, 2, 1)
    assert [it["verdict"] for it in robust["items"]] == ["skipped"] * 3 + ["correct", "unparseable", "correct"]
    published = score_records(FILE_ROWS, "bbh", "movie_recommendation", convention="published")
    assert published["bad_lines"] == [] and (published["n"], published["correct"]) == (6, 1)


def _cli(*args):
    cmd = [sys.executable, "-m", "orca_utils", "score", "--benchmark", "bbh", "--task", "movie_recommendation",
           *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_reads_real_files_and_writes_per_item(tmp_path):
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in FILE_ROWS) + "this line is not JSON\n")
    items = tmp_path / "items.csv"
    done = _cli("--per-item", items, path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["convention"] == "robust" and out["n"] == 3 and out["bad_line_numbers"] == [1, 2, 3, 7]
    assert "line 1: choice target 'Monsters, Inc'" in done.stderr and "line 7: not JSON" in done.stderr
    rows = list(csv.DictReader(items.open()))
    assert [r["line"] for r in rows] == [str(i) for i in range(1, 8)]
    assert rows[4]["verdict"] == "unparseable" and rows[5]["answer"] == "D" and rows[6]["verdict"] == "skipped"
    items_jsonl = tmp_path / "items.jsonl"
    done = _cli("--convention", "published", "--per-item", items_jsonl, path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["accuracy"] == pytest.approx(100 / 6, abs=0.01)
    assert [json.loads(x)["verdict"] for x in items_jsonl.read_text().splitlines()][:4] == \
        ["wrong", "wrong", "wrong", "correct"]


def test_cli_reads_released_json_layout(tmp_path):
    path = tmp_path / "movie_recommendation_few_shot_template_0-255000.json"
    path.write_text(json.dumps({"canary": "...", "outputs": FILE_ROWS}))
    done = _cli("--convention", "published", path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["correct"] == 1


def test_cli_exit_2_only_when_nothing_scores(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prediction": "(B)", "target": "Monsters, Inc", "input": "Q: ' +
                    MOVIE_INPUT.replace("\n", "\\n") + '"}\n')
    done = _cli(path)
    assert done.returncode == 2 and "line 1" in done.stderr and "no line could be scored" in done.stderr
    path.write_text("a,b\n1,2\n")
    done = _cli(path)
    assert done.returncode == 2 and "not JSONL" in done.stderr
    assert _cli("--per-item", tmp_path / "x.txt", path).returncode == 2


def test_engine_records_both_conventions():
    from orca_utils.evaluation.engine import evaluate
    from orca_utils.evaluation.tasks import EvalItem

    class Scripted:
        label = "scripted"

        def generate(self, prompts, max_new_tokens=256, stop=None, system_message=None):
            return [{"agi": "Among A through E, the answer is C.", "bbh": "(B) 12/25/1937"}[p] for p in prompts]

    items = {"sat-math": [EvalItem("agieval", "sat-math", "sat-math/0", "agi", "C", "choice",
                                   options=["1", "2", "3", "4", "5"])],
             "date_understanding": [EvalItem("bbh", "date_understanding", "date_understanding/0", "bbh", "B",
                                             "choice", options=DATES)]}
    res = evaluate(Scripted(), items)
    recs = res.records.set_index("task")
    assert recs.loc["sat-math", "correct"] and not recs.loc["sat-math", "published_correct"]   # AGIEval reads "A"
    assert recs.loc["sat-math", "published_answer"] == "A"
    assert recs.loc["date_understanding", "correct"] and not recs.loc["date_understanding", "published_correct"]
    assert res.macro == 100.0 and res.published_macro == 0.0
    assert res.metrics("x")["x/date_understanding/published_accuracy"] == 0.0
