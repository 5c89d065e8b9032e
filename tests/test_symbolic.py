"""The symbolic BBH solvers and teacher: correct on every real BBH item (scored by the project's extractor),
fresh training problems never equal a BBH test item, and the teacher serves through the local server."""
from __future__ import annotations

import random

import pytest

from orca_utils.experiment import symbolic as S
from orca_utils.data import DatasetNotFoundError, resolve_dataset
from orca_utils.evaluation.sets import read_bbh
from orca_utils.experiment.symbolic_teacher import SYSTEM_MESSAGES, SymbolicTeacher, style_of


def _bbh(task: str) -> list[dict]:
    try:
        path = resolve_dataset("bbh", offline=True).path
    except DatasetNotFoundError:
        pytest.skip("BBH data not available")
    return read_bbh(path, task)


@pytest.mark.parametrize("task", S.TASKS)
@pytest.mark.parametrize("style", S.STYLES)
def test_solver_correct_on_every_real_bbh_item_through_the_extractor(task, style):
    items = _bbh(task)
    assert len(items) == 250
    wrong = [e for e in items if not S.score(task, S.explain(task, e["input"], style), e["target"])[0]]
    assert not wrong, f"{task}/{style}: {len(wrong)} wrong, first {wrong[0]}"


@pytest.mark.parametrize("task", S.TASKS)
def test_detect_task_on_real_items(task):
    assert {S.detect_task(e["input"]) for e in _bbh(task)} == {task}


@pytest.mark.parametrize("task", S.TASKS)
def test_generated_problems_are_fresh_and_solvable(task):
    bbh_inputs = {e["input"] for e in _bbh(task)}
    problems = S.generate_problems(task, 300, seed=3, exclude=bbh_inputs)
    assert len(set(problems)) == 300
    assert not set(problems) & bbh_inputs
    assert {S.detect_task(p) for p in problems} == {task}
    for p in problems[:50]:
        S.solve(task, p)                                   # raises on a malformed problem
    assert problems == S.generate_problems(task, 300, seed=3, exclude=bbh_inputs)   # reproducible
    assert problems != S.generate_problems(task, 300, seed=4, exclude=bbh_inputs)


def test_exclusion_really_excludes():
    first = S.generate_problems("boolean_expressions", 20, seed=0)
    again = S.generate_problems("boolean_expressions", 20, seed=0, exclude=set(first[:10]))
    assert not set(again) & set(first[:10])


def test_styles_grow_in_detail():
    text = "((-1 + 2 + 9 * 5) - (-2 + -4 + -4 * -7)) ="
    answer, short, full = (S.explain("multistep_arithmetic_two", text, s) for s in S.STYLES)
    assert answer == "So the answer is 24."
    assert len(answer) < len(short) < len(full)
    assert "9 * 5" in full and "45" in full and full.endswith("So the answer is 24.")


def test_boolean_trace_steps_follow_precedence():
    sol = S.solve("boolean_expressions", "not ( True ) and ( True ) is")
    assert sol.answer == "False"
    assert sol.steps[0] == "not ( True ) and ( True )"
    assert sol.steps[-1] == "= False"


def test_web_of_lies_trace_follows_each_claim():
    text = ("Question: Vina tells the truth. Helene says Vina lies. Kandi says Helene tells the truth. "
            "Jamey says Kandi lies. Ka says Jamey lies. Does Ka tell the truth?")      # a real BBH item: "No"
    sol = S.solve("web_of_lies", text)
    assert sol.answer == "No"
    assert sol.steps == ["1: tells the truth.",                        # Vina
                         "2: says lies, so lies.",                     # Helene says Vina lies
                         "3: says tells the truth, so lies.",          # Kandi says Helene tells the truth
                         "4: says lies, so tells the truth.",          # Jamey says Kandi lies
                         "5: says lies, so lies."]                     # Ka says Jamey lies
    assert sol.key_steps == ["1: truth. 2: lies. 3: lies. 4: truth. 5: lies."]
    assert S.score("web_of_lies", S.explain("web_of_lies", text, "answer"), "No")[0]
    assert not S.score("web_of_lies", "So the answer is Yes.", "No")[0]


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="not a boolean_expressions problem"):
        S.solve("boolean_expressions", "True and maybe is")
    with pytest.raises(ValueError, match="unknown symbolic task"):
        S.solve("word_sorting", "Sort the following words alphabetically: List: b a")
    with pytest.raises(ValueError, match="unknown object_counting item"):
        S.solve("object_counting", "I have a unicorn, and a cat. How many animals do I have?")
    with pytest.raises(ValueError, match="not of the previous speaker Jim"):
        S.solve("web_of_lies", "Question: Jim lies. Sal says Ka lies. Does Sal tell the truth?")
    with pytest.raises(ValueError, match="not the last speaker Sal"):
        S.solve("lie_chain", "Question: Jim lies. Sal says Jim lies. Does Jim tell the truth?")
    with pytest.raises(ValueError, match="explanation style"):
        S.explain("boolean_expressions", "True is", "verbose")


def test_style_of_system_messages():
    for style, message in SYSTEM_MESSAGES.items():
        assert style_of(message) == style
    assert style_of("") == "full"
    assert style_of("Be concise.") == "short"
    assert style_of("Give the final answer only.") == "answer"


def test_teacher_served_through_the_local_server():
    openai = pytest.importorskip("openai")
    from orca_utils.teacher.local_server import serve_openai_compatible

    problem = S.generate_input("object_counting", random.Random(0))
    with serve_openai_compatible({"symbolic-teacher": SymbolicTeacher()}) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused")
        for style, message in SYSTEM_MESSAGES.items():
            reply = client.chat.completions.create(
                model="symbolic-teacher", max_tokens=512, temperature=0.0,
                messages=[{"role": "system", "content": message}, {"role": "user", "content": problem}])
            assert reply.choices[0].message.content == S.explain("object_counting", problem, style)
            assert reply.choices[0].finish_reason == "stop"


def test_experiment_problems_exclude_every_bbh_item_not_only_the_eval_subset():
    """Regression: exclusion once used only the evaluation subset, and 21 boolean_expressions test items leaked."""
    from orca_utils.experiment.pipeline import load_bbh_items, make_problems

    tasks = ["boolean_expressions", "dyck_languages"]
    problems = make_problems(tasks, 300, seed=0)
    for task in tasks:
        every_item = {" ".join(x.split()) for x in load_bbh_items(None, True, task)["input"]}
        generated = {" ".join(x.split()) for x in problems.loc[problems.task == task, "user"]}
        assert len(generated) == 300
        assert not generated & every_item, sorted(generated & every_item)[:3]


def test_task_tokenizer_is_lossless_splits_digits_and_keeps_names_whole():
    from orca_utils.experiment.pipeline import build_task_tokenizer

    rng = random.Random(0)
    texts = [S.explain(t, S.generate_input(t, rng), style) for t in S.TASKS for style in S.STYLES for _ in range(60)]
    tok = build_task_tokenizer(texts, vocab_size=600)
    assert tok.pad_token_id != tok.eos_token_id and len(tok) <= 600
    assert build_task_tokenizer(texts, vocab_size=600).get_vocab() == tok.get_vocab()     # deterministic
    for task in S.TASKS:                                  # real BBH items, never seen by the tokenizer's training
        for item in _bbh(task)[:20]:
            ids = tok(item["input"], add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == item["input"]
    pieces = tok.tokenize("A = 1234 - -56.")
    assert [t for t in pieces if any(c.isdigit() for c in t)] == ["1", "2", "3", "4", "5", "6"]   # one per digit
    assert tok.tokenize(" tells the truth.") == ["Ġtells", "Ġthe", "Ġtruth", "."]   # words merged, not spelled
    rendered = tok.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
                                       add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|assistant|>")
    assert tok.convert_ids_to_tokens(tok(rendered, add_special_tokens=False)["input_ids"])[-1] == "<|assistant|>"


STEP_LEVELS = {"boolean_expressions": [2, 3, 5], "web_of_lies": [2, 5, 7], "object_counting": [2, 6, 10],
               "dyck_languages": [4, 12, 20], "navigate": [1, 2, 5, 9], **{t: [1, 4, 8] for t in S.TSO_TASKS}}


@pytest.mark.parametrize("task", sorted(STEP_LEVELS))
def test_generators_set_the_number_of_steps(task):
    """The difficulty curve's knob: `steps=k` draws problems with exactly k steps, all solvable and fresh."""
    bbh_inputs = {e["input"] for e in _bbh(task)}
    for k in STEP_LEVELS[task]:
        problems = S.generate_problems(task, 25, seed="curve", exclude=bbh_inputs, steps=k)
        assert {S.count_steps(task, p) for p in problems} == {k}, (task, k)
        assert not set(problems) & bbh_inputs
        for p in problems:
            assert S.detect_task(p) == task
            S.solve(task, p)


@pytest.mark.parametrize("task", [*S.TSO_TASKS, "navigate", "web_of_lies", "boolean_expressions"])
def test_count_steps_on_real_items_matches_bbh(task):
    counts = {S.count_steps(task, e["input"]) for e in _bbh(task)}
    expected = {"tracking_shuffled_objects_three_objects": {3}, "tracking_shuffled_objects_five_objects": {5},
                "tracking_shuffled_objects_seven_objects": {7}, "web_of_lies": {5}}
    if task in expected:
        assert counts == expected[task]
    else:
        assert min(counts) >= 1 and max(counts) <= 9


def test_navigate_generator_answers_are_balanced_and_both_families_occur():
    rng = random.Random(1)
    problems = [S.generate_input("navigate", rng) for _ in range(400)]
    answers = [S.solve("navigate", p).answer for p in problems]
    assert 0.4 < answers.count("Yes") / len(answers) < 0.6
    assert any("Always face forward." in p for p in problems) and any("Turn " in p for p in problems)
    yes = [p for p, a in zip(problems, answers) if a == "Yes"]
    assert any("Turn " in p for p in yes)                       # returning paths with turns, not only straight ones


def test_navigate_trace_tracks_position_and_heading():
    text = ("If you follow these instructions, do you return to the starting point? Take 8 steps. Turn around. "
            "Take 8 steps.\nOptions:\n- Yes\n- No")                       # a real BBH item: "Yes"
    sol = S.solve("navigate", text)
    assert sol.answer == "Yes"
    assert sol.steps == ["Start at (0, 0), facing north.", "Take 8 steps: (0, 8).", "Turn around: facing south.",
                         "Take 8 steps: (0, 0).", "End at (0, 0): back at the start."]
    forward = ("If you follow these instructions, do you return to the starting point? Always face forward. "
               "Take 1 step backward. Take 9 steps left.\nOptions:\n- Yes\n- No")
    assert S.solve("navigate", forward).steps[1:3] == ["Take 1 step backward: (0, -1).",
                                                       "Take 9 steps left: (-9, -1)."]


def test_tracking_trace_names_every_holder_after_every_swap():
    item = _bbh("tracking_shuffled_objects_three_objects")[0]       # Claire/Bob, Bob/Alice, Claire/Bob; Bob -> (B)
    sol = S.solve("tracking_shuffled_objects_three_objects", item["input"])
    assert sol.answer == item["target"] == "(B)"
    assert sol.steps == ["Start: Alice A, Bob B, Claire C.", "Claire and Bob swap: Alice A, Bob C, Claire B.",
                         "Bob and Alice swap: Alice C, Bob A, Claire B.",
                         "Claire and Bob swap: Alice C, Bob B, Claire A.", "Bob has B."]
    assert S.score("tracking_shuffled_objects_three_objects", "So the answer is Frankenstein.", "(B)", item["input"])[0]
    assert not S.score("tracking_shuffled_objects_three_objects", "So the answer is (A).", "(B)", item["input"])[0]


def test_tracking_generator_mixes_bbh_shape_with_other_swap_counts():
    rng = random.Random(0)
    counts = [S.count_steps("tracking_shuffled_objects_five_objects",
                            S.generate_input("tracking_shuffled_objects_five_objects", rng)) for _ in range(400)]
    assert 0.45 < counts.count(5) / len(counts) < 0.7 and min(counts) == 1 and max(counts) == 7


# ---------------------------------------------------------------- the chain family (lie_chain, truth_lookup)
CHAIN_LENGTHS = [2, 3, 5, 8, 12, 16, 24, 32, 40]


@pytest.mark.parametrize("k", CHAIN_LENGTHS)
def test_lie_chain_solver_is_right_on_its_own_items_at_every_length(k):
    """Independent check: the answer is the parity of the "lies" in the question, and the last trace line says it."""
    problems = S.generate_problems("lie_chain", 60, seed=0, steps=k)
    assert {S.count_steps("lie_chain", p) for p in problems} == {k}
    for p in problems:
        parity = (p.count(" lies.") % 2 == 0)        # an even number of "lies" makes the last person truthful
        sol = S.solve("lie_chain", p)
        assert sol.answer == ("Yes" if parity else "No"), p
        assert len(sol.steps) == k
        for style in S.STYLES:
            assert S.score("lie_chain", S.explain("lie_chain", p, style), sol.answer)[0]
            assert S.explain("lie_chain", p, style) == S.explain("web_of_lies", p, style)   # what the teacher writes


def test_lie_chain_solver_on_the_real_bbh_web_of_lies_items_at_their_length():
    from orca_utils.experiment.problems import load_bbh_items

    items = _bbh("web_of_lies")
    for style in S.STYLES:
        wrong = [e for e in items if not S.score("lie_chain", S.explain("lie_chain", e["input"], style),
                                                 e["target"])[0]]
        assert not wrong, f"{style}: {len(wrong)} of {len(items)} wrong"
    frame = load_bbh_items(None, True, "lie_chain")
    assert len(frame) == 250 and set(frame["steps"]) == {5} and set(frame["task"]) == {"lie_chain"}
    assert load_bbh_items(None, True, "truth_lookup").empty          # no BBH source: no items


def test_chain_trace_steps_need_only_the_statement_and_the_previous_state():
    """Line k names no one: it copies the k-th statement's claim and derives the state from line k-1's alone."""
    import re

    p = S.generate_input("lie_chain", random.Random(5), steps=20)
    steps = S.solve("lie_chain", p).steps
    claims = re.findall(r"\w+ says \w+ (tells the truth|lies)\.", p)
    assert steps[0] == f"1: {p.split('. ')[0].split(' ', 2)[2]}."            # the first person's own statement
    assert not any(name in " ".join(steps) for name in re.findall(r"(\w+) says", p))
    state = steps[0].split(": ", 1)[1].rstrip(".")
    for k, (line, claim) in enumerate(zip(steps[1:], claims), 2):
        derived = "tells the truth" if claim == state else "lies"         # truthful iff the claim matches
        assert line == f"{k}: says {claim}, so {derived}."
        state = derived


def test_chain_training_range_and_truth_lookup():
    problems = S.generate_problems("lie_chain", 200, seed=1, steps=(3, 8))
    assert {S.count_steps("lie_chain", p) for p in problems} == set(range(3, 9))
    assert S.detect_task(problems[0]) == "web_of_lies"                      # same format, same trace
    with pytest.raises(ValueError, match="steps range"):
        S.generate_problems("lie_chain", 5, seed=1, steps=(8, 3))
    with pytest.raises(ValueError, match="people"):
        S.generate_input("lie_chain", random.Random(0), steps=41)
    looks = S.generate_problems("truth_lookup", 100, seed=0)
    for p in looks:
        assert S.detect_task(p) == "truth_lookup"
        asked = p.rsplit("Does ", 1)[1].split(" ")[0]
        truthful = f" {asked} tells the truth." in p or p.startswith(f"Question: {asked} tells the truth.")
        assert S.solve("truth_lookup", p).answer == ("Yes" if truthful else "No")
        assert S.explain("truth_lookup", p, "answer") == S.answer_sentence(S.solve("truth_lookup", p).answer)
    with pytest.raises(ValueError, match="not a truth_lookup problem"):
        S.solve("truth_lookup", "Question: Bob says Amy lies. Does Bob tell the truth?")


def test_chain_names_cover_the_bbh_items_so_the_real_check_is_in_distribution():
    import re

    from orca_utils.experiment.chains import BBH_NAMES, CHAIN_NAMES, NAMES

    bbh_names = {n for e in _bbh("web_of_lies") for n in re.findall(r"(\w+) says", e["input"])}
    assert bbh_names <= set(BBH_NAMES) <= set(NAMES) and set(CHAIN_NAMES) <= set(NAMES)
    drawn = {n for p in S.generate_problems("lie_chain", 300, seed=2, steps=(3, 8))
             for n in re.findall(r"(\w+) says", p)}
    assert drawn & set(CHAIN_NAMES) and drawn & bbh_names                   # both sets are drawn
