"""Answer extraction on a table of real-looking model outputs (every pattern orca_utils.evaluation.extract claims to
read)."""
from __future__ import annotations

import pytest

from orca_utils.evaluation.extract import extract_answer, normalize_target, score_prediction

OPTS = ["(A)12", "(B)15", "(C)18", "(D)21", "(E)None of these"]
SHAPES = ["(A)circle", "(B)heptagon", "(C)hexagon", "(D)kite", "(E)line", "(F)octagon"]
TF, YN, VALID = ("True", "False"), ("Yes", "No"), ("valid", "invalid")

# (kind, model output, expected answer (None: unparseable), options or labels)
CASES = [
    # --- letters, direct
    ("choice", "(B)", "B", None),
    ("choice", "B", "B", None),
    ("choice", "B.", "B", None),
    ("choice", "B) 15", "B", OPTS),
    ("choice", "C: 18", "C", OPTS),
    ("choice", "  (D)\n", "D", None),
    ("choice", "**C**", "C", None),
    ("choice", "The answer is B", "B", None),
    ("choice", "The answer is B.", "B", None),
    ("choice", "The answer is (E).", "E", None),
    ("choice", "answer: b", "B", None),
    ("choice", "Answer: (c)", "C", None),
    ("choice", "The correct answer is option D because the other choices contradict the premise.", "D", None),
    ("choice", "The correct option is C.", "C", None),
    ("choice", "Final answer: A", "A", None),
    ("choice", "Among A through E, the answer is C.", "C", None),
    ("choice", "The answer is A because the train travels 60 km.", "A", None),
    # --- letters after step-by-step text
    ("choice", "Let's think step by step.\nThe cost is 3 x 5 = 15 dollars, which is (B).\nSo the answer is (B).",
     "B", None),
    ("choice", "Step 1: (A) is ruled out. Step 2: (C) violates rule 2. So the answer is (D).", "D", None),
    ("choice", "First, eliminate (A) and (B). The remaining option (C) satisfies every condition.", "C", None),
    ("choice", "Let's think step by step. Alice has the ball, then Bob. Therefore, the answer is (E).", "E", None),
    # --- the last of several answers
    ("choice", "The answer is (A). Wait, re-reading the question, the answer is (C).", "C", None),
    ("choice", "Answer: B\n\nOn reflection, answer: D", "D", None),
    # --- option text instead of its letter
    ("choice", "The answer is 18.", "C", OPTS),
    ("choice", "It is a hexagon.", "C", SHAPES),
    ("choice", "The shape drawn is an octagon, since it has eight sides.", "F", SHAPES),
    ("choice", "None of these", "E", OPTS),
    ("choice", "the answer is kite", "D", SHAPES),
    # --- must not read articles or words as letters; unparseable
    ("choice", "The answer is a matter of interpretation.", None, None),
    ("choice", "I cannot determine this from the information given.", None, None),
    ("choice", "", None, None),
    ("choice", "A:", None, None),                   # echoes the prompt's answer turn, names no option
    ("choice", "A car travels at uniform speed, so we need more data.", None, None),
    # --- booleans
    ("boolean", "True", "True", TF),
    ("boolean", "False.", "False", TF),
    ("boolean", "not ( True ) and ( True ) is False. So the answer is False.", "False", TF),
    ("boolean", "TRUE", "True", TF),
    ("boolean", "Let's think step by step. not False = True; True and True = True. So the answer is True.",
     "True", TF),
    ("boolean", "Yes", "Yes", YN),
    ("boolean", "yes.", "Yes", YN),
    ("boolean", "No, the player cannot score a touchdown in hockey.", "No", YN),
    ("boolean", "Ricky tells the truth, Jim lies, so Sal lies. So the answer is No.", "No", YN),
    ("boolean", "After the steps we are back at the start. The answer is: yes", "Yes", YN),
    ("boolean", "Answer: No", "No", YN),
    ("boolean", "The argument is deductively valid.", "valid", VALID),
    ("boolean", "invalid", "invalid", VALID),
    ("boolean", "The conclusion does not follow from the premises. So the answer is invalid.", "invalid", VALID),
    ("boolean", "The argument is not valid.", "invalid", VALID),
    ("boolean", "Valid", "valid", VALID),
    ("boolean", "I am not sure.", None, YN),
    ("boolean", "It depends on the intention of the agent.", None, YN),
    # --- numbers
    ("number", "24", "24", None),
    ("number", "-12", "-12", None),
    ("number", "The answer is 1,234.", "1234", None),
    ("number", "I have 7 objects in total.", "7", None),
    ("number", "There are 5 apples, 2 bananas and 3 plums, so 10 fruits. So the answer is 10.", "10", None),
    ("number", "So the answer is $42.00", "42", None),
    ("number", "The answer is five.", "5", None),
    ("number", "((-3 + 5) * (2 - -4)) = 2 * 6 = 12", "12", None),
    ("number", "Let's compute: -9 * 8 = -72; -72 - 5 = -77. So the answer is -77.", "-77", None),
    ("number", "The result is 3.5 meters", "3.5", None),
    ("number", "I don't know.", None, None),
    # --- free text: word sorting, dyck languages
    ("text", "apple banana cherry", "apple banana cherry", None),
    ("text", "Sorted: apple, banana, cherry.", "sorted apple banana cherry", None),
    ("text", "Let's sort by first letter. So the answer is apple banana cherry.", "apple banana cherry", None),
    ("text", "The answer is: barn damp delmarva", "barn damp delmarva", None),
    ("brackets", "] ) }", "] ) }", None),
    ("brackets", "So the answer is ) ].", ") ]", None),
    ("brackets", "The closing sequence is > ] ]", "> ] ]", None),
    ("brackets", "There is nothing to close.", None, None),
]


@pytest.mark.parametrize("kind,text,expected,extra", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_extraction_table(kind, text, expected, extra):
    options = extra if kind == "choice" else None
    labels = extra if kind == "boolean" else None
    got = extract_answer(text, kind, options=options, labels=labels)
    assert got.answer == expected, f"{text!r}: got {got} expected {expected!r}"
    assert got.failed == (expected is None)


def test_table_is_big_and_covers_each_kind():
    assert len(CASES) >= 60
    assert {c[0] for c in CASES} == {"choice", "boolean", "number", "text", "brackets"}
    assert sum(c[2] is None for c in CASES) >= 8       # unparseable outputs are part of the table


@pytest.mark.parametrize("target,kind,labels,expected", [
    ("(C)", "choice", None, "C"), ("C", "choice", None, "C"), ("yes", "boolean", YN, "Yes"),
    ("False", "boolean", TF, "False"), ("1,000", "number", None, "1000"), ("-7", "number", None, "-7"),
    ("syndrome therefrom", "text", None, "syndrome therefrom"), ("] ) }", "brackets", None, "] ) }"),
])
def test_normalize_target(target, kind, labels, expected):
    assert normalize_target(target, kind, labels) == expected


def test_bad_targets_and_kinds_are_named():
    with pytest.raises(ValueError, match="choice target 'maybe'"):
        normalize_target("maybe", "choice")
    with pytest.raises(ValueError, match="boolean target"):
        normalize_target("perhaps", "boolean", YN)
    with pytest.raises(ValueError, match="answer kind 'letters'"):
        extract_answer("B", "letters")


def test_score_prediction_cot_and_direct_agree():
    cot = "Let's think step by step.\nThe third object is the red one.\nSo the answer is (B)."
    assert score_prediction(cot, "(B)", "choice")[0]
    assert score_prediction("(B)", "(B)", "choice")[0]
    assert not score_prediction("(A)", "(B)", "choice")[0]
    ok, ex = score_prediction("no idea", "(B)", "choice")
    assert not ok and ex.failed
