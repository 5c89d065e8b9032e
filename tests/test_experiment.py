"""Notebook 09's experiment machinery: EOS in the loss, the answer-line stop rule, the two controls' plans, the
difficulty curve's items, the pre-registered paired test and the generated conclusion."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from orca_utils.experiment import evaluate as V
from orca_utils.experiment import pipeline as E
from orca_utils.experiment import stats as X
from orca_utils.experiment import symbolic as S
from orca_utils.experiment import trainer as T
from orca_utils.experiment.symbolic_teacher import SYSTEM_MESSAGES

TASKS = ["boolean_expressions", "web_of_lies", "tracking_shuffled_objects_three_objects", "navigate"]


def _settings(**kw) -> E.Settings:
    base = {"tasks": TASKS, "seeds": [0], "train_problems_per_task": 30, "train_tokens": None,
            "seq_len_tokens": 512, "batch_size": 4, "learning_rate": 3e-3, "n_layers": 1, "hidden_size": 32,
            "n_heads": 2, "eval_items_per_task": 2, "eval_max_new_tokens": 24, "eval_batch_size": 8, "epochs": 2.0}
    return E.Settings(**{**base, **kw})


@pytest.fixture(scope="module")
def corpus():
    """Teacher responses in every style for a few problems of each task (written by `explain`, as the server does)."""
    rng = random.Random(0)
    rows = []
    for task in TASKS:
        for i in range(30):
            q = S.generate_input(task, rng)
            rows += [{"id": f"{task}-{i}", "task": task, "style": st, "system": SYSTEM_MESSAGES[st], "user": q,
                      "response": S.explain(task, q, st)} for st in S.STYLES]
    responses = pd.DataFrame(rows)
    texts = pd.concat([responses["system"], responses["user"], responses["response"]]).drop_duplicates().tolist()
    tok = E.build_task_tokenizer(texts, vocab_size=600)
    return responses, tok, E.style_samples(responses, tok, _settings())


def test_every_trace_ends_with_eos_and_eos_is_in_the_loss(corpus):
    responses, tok, samples = corpus
    eos = tok.eos_token_id
    assert eos is not None and eos != tok.pad_token_id
    for style, smp in samples.items():
        assert len(smp) == (responses["style"] == style).sum()
        assert smp.counts["truncated"] == 0
        labels = smp.labels_flat()
        ends = smp.offsets[1:] - 1
        assert (labels[ends] == eos).all(), f"{style}: a response's last label is not EOS"
        assert (labels == eos).sum() == len(smp), f"{style}: EOS must be a label exactly once per sample"
        assert E.eos_in_loss(smp) == len(smp)
        # after packing (what the model is trained on) every packed sample still ends with its EOS label
        stream = T._packed_stream(smp, _settings(), n_seqs=4, seed=0)
        n_segments = 0
        for row_ids, row_labels, row_pos in zip(stream["input_ids"], stream["labels"], stream["position_ids"]):
            starts = np.flatnonzero(row_pos == 0)
            for a, b in zip(starts, [*starts[1:], len(row_pos)]):
                if (row_ids[a:b] == tok.pad_token_id).all():
                    continue                                    # the padding tail
                supervised = row_labels[a:b][row_labels[a:b] != -100]
                assert (supervised == eos).sum() == 1 and supervised[-1] == eos
                n_segments += 1
        assert n_segments > 0 and int((stream["labels"] == eos).sum()) == n_segments


def test_answer_line_rule():
    assert E.answer_line_done("Start: x.\nSo the answer is (B).")
    assert E.answer_line_done("So the answer is Yes\n")
    assert not E.answer_line_done("So the answer is")
    assert not E.answer_line_done("So the answer is (B")
    assert not E.answer_line_done("Start: Alice A, Bob B.")     # a period, but no answer line yet


def test_stop_criterion_fires_exactly_when_the_answer_line_ends(corpus):
    import torch

    _, tok, _ = corpus
    prompt = tok("<|user|>q\n<|assistant|>", add_special_tokens=False)["input_ids"]
    text = "Start: Alice A, Bob B.\nBob and Alice swap: Alice B, Bob A.\nSo the answer is (B).\nStart: again"
    new = tok(text, add_special_tokens=False)["input_ids"]
    stop = V._answer_line_stop(tok, len(prompt))
    fired = [bool(stop(torch.tensor([prompt + new[:k]]), None)[0]) for k in range(1, len(new) + 1)]
    first = fired.index(True)
    assert tok.decode(new[:first + 1]).endswith("So the answer is (B).")
    assert not any(fired[:first])


def test_generation_reports_how_it_ended(corpus):
    _, tok, _ = corpus
    s = _settings()
    model = E.build_student(tok, s, seed=0)
    model.eval()
    convs = [[{"role": "system", "content": SYSTEM_MESSAGES["full"]}, {"role": "user", "content": "True and False is"}]]
    out = E.generate_answers(model, tok, convs * 3, max_new_tokens=12, batch_size=2)
    assert len(out) == 3 and {o["finish_reason"] for o in out} <= {"eos", "answer_line", "length"}
    assert all(o["new_tokens"] <= 12 for o in out)
    assert all(o["finish_reason"] != "length" or o["new_tokens"] == 12 for o in out)


def test_controls_plan_same_tokens_and_same_epochs_and_share_the_explanation_run(corpus):
    _, _, samples = corpus
    s = _settings()
    runs = E.plan_runs(s, samples, seed=0)
    by = {(r["control"], r["variant"]): r for r in runs}
    steps = {k: sum(n for _, n in r["stages"]) for k, r in by.items()}
    assert len({steps[("same_tokens", v)] for v in E.VARIANTS}) == 1          # same optimizer steps = same tokens
    for v in E.VARIANTS:                                                      # same passes over the problems
        assert s.epochs - 1e-9 <= sum(by[("same_epochs", v)]["epochs"]) <= s.epochs + by[("same_epochs", v)][
            "epoch_slack"] + 1e-9
    assert by[("same_tokens", "explanation")]["name"] == by[("same_epochs", "explanation")]["name"]
    assert steps[("same_epochs", "answer_only")] < steps[("same_epochs", "explanation")]   # answers are shorter
    assert [st for st, _ in by[("same_epochs", "progressive")]["stages"]] == ["short", "full"]
    fixed = E.plan_runs(_settings(train_tokens=4 * 512 * 7), samples, seed=0)
    assert {sum(n for _, n in r["stages"]) for r in fixed if r["control"] == "same_tokens"} == {7}
    bigger = E.plan_runs(_settings(larger_student={"n_layers": 2, "hidden_size": 64, "n_heads": 2}), samples, 0)
    extra = [r for r in bigger if "@" in r["control"]]
    assert {r["variant"] for r in extra} == {"answer_only", "explanation"} and extra[0]["size"]["hidden_size"] == 64


def test_curve_items_have_their_steps_and_never_equal_training_or_bbh_items():
    problems = E.make_problems(["navigate"], 200, seed=0)
    bbh = set(E.load_bbh_items(None, True, "navigate")["input"])
    exclude = {"navigate": bbh | set(problems["user"])}
    items = E.make_curve_items({"navigate": [2, 5, 8]}, 15, exclude)
    assert len(items) == 45 and items.groupby("steps").size().to_dict() == {2: 15, 5: 15, 8: 15}
    assert all(S.count_steps("navigate", q) == k for q, k in zip(items["input"], items["steps"]))
    assert not set(items["input"]) & exclude["navigate"]
    assert set(items["target"]) <= {"Yes", "No"}


def _fake_evals(diffs: dict[str, tuple[int, int]], seeds=(0, 1, 2), n=60) -> pd.DataFrame:
    """Per task (a_only, b_only) discordant items per seed, the rest concordant (half right)."""
    rows = []
    for task, (a_only, b_only) in diffs.items():
        for seed in seeds:
            for i in range(n):
                a = b = i % 2 == 0
                if i < 2 * a_only and i % 2 == 1:
                    a = True
                if 2 * a_only <= i < 2 * (a_only + b_only) and i % 2 == 1:
                    b = True
                for variant, ok in (("explanation", a), ("answer_only", b)):
                    rows.append({"set": "bbh", "control": "same_epochs", "variant": variant, "task": task,
                                 "item": f"{task}/{i}", "seed": seed, "correct": ok, "target": "x",
                                 "finish_reason": "eos", "new_tokens": 5, "steps": 3})
    return pd.DataFrame(rows)


def test_paired_test_mcnemar_holm_and_the_sign_rule():
    from scipy import stats

    ev = _fake_evals({"t_big": (12, 0), "t_none": (3, 3), "t_loss": (0, 10)})
    tests = X.paired_tests(ev, alpha=0.05).set_index("task")
    big = tests.loc["t_big"]
    assert (big["a_only"], big["b_only"], big["pairs"]) == (36, 0, 180)
    assert big["p_mcnemar"] == pytest.approx(float(f"{stats.binomtest(36, 36).pvalue:.3g}"))
    assert big["verdict"] == "explanation better" and tests.loc["t_loss", "verdict"] == "answer_only better"
    assert tests.loc["t_none", "verdict"] == "no difference shown"
    assert tests.loc["t_none", "p_holm"] >= tests.loc["t_none", "p_mcnemar"]
    # one seed carrying the whole difference does not count, however small its p
    ev2 = _fake_evals({"t": (0, 0)})
    odd = ev2["item"].str.split("/").str[1].astype(int) % 2 == 1
    flip = (ev2["seed"] == 0) & (ev2["variant"] == "explanation") & odd
    ev2.loc[flip, "correct"] = True
    row = X.paired_tests(ev2).set_index("task").loc["t"]
    assert row["p_mcnemar"] < 1e-6 and not row["same_sign"] and row["verdict"] == "no difference shown"


def test_conclusion_is_generated_from_the_tests_and_can_be_negative():
    ev = _fake_evals({"t1": (0, 9), "t2": (1, 1)})
    ev = pd.concat([ev, ev.assign(control="same_tokens")])
    tests = X.paired_tests(ev)
    summary = X.summarize(ev)
    caps = X.cap_shares(ev)
    text = X.conclusion(tests, pd.DataFrame(), caps, summary, X.best_constant(ev), 0.05, "a tiny student")
    assert "does not support" in text and "answer-only significantly better on: t1" in text
    ev_pos = _fake_evals({"t1": (12, 0), "t2": (10, 0)})
    ev_pos = pd.concat([ev_pos, ev_pos.assign(control="same_tokens")])
    text = X.conclusion(X.paired_tests(ev_pos), pd.DataFrame(), X.cap_shares(ev_pos), X.summarize(ev_pos),
                        X.best_constant(ev_pos), 0.05, "a tiny student")
    assert "the experiment supports" in text


def test_curve_tests_find_where_explanations_start_to_pay():
    rows = []
    for steps, (a_only, b_only) in {1: (0, 0), 3: (1, 0), 5: (12, 0), 7: (14, 0)}.items():
        part = _fake_evals({"nav": (a_only, b_only)})
        part["set"], part["steps"], part["item"] = "curve", steps, part["item"] + f"/{steps}"
        rows.append(part)
    ev = pd.concat(rows)
    curve = X.curve_tests(ev)
    assert curve.set_index("steps").loc[5, "verdict"] == "explanation better"
    assert curve.set_index("steps").loc[1, "verdict"] == "no difference shown"
    summary = X.summarize(ev.assign(set="bbh"))
    text = X.conclusion(X.paired_tests(ev.assign(set="bbh")), curve, X.cap_shares(ev), summary,
                        X.best_constant(ev.assign(set="bbh")), 0.05, "x")
    assert "pays from **5 steps**" in text


def test_longest_training_problem_of_every_task_fits_one_sequence_with_its_eos():
    """The training mix's longest problems (most steps) with their full traces fit `seq_len_tokens` = 512, so no
    response is cut and every one keeps its EOS label (notebook 09 checks the same on the real runs)."""
    longest = {"boolean_expressions": 6, "web_of_lies": 7, "navigate": 9, "tracking_shuffled_objects_three_objects": 5,
               "tracking_shuffled_objects_five_objects": 7, "tracking_shuffled_objects_seven_objects": 7}
    rng = random.Random(0)
    rows = []
    for task, k in longest.items():
        for i in range(40):
            q = S.generate_input(task, rng) if i < 20 else S.generate_input(task, rng, steps=k)
            rows.append({"system": SYSTEM_MESSAGES["full"], "user": q, "response": S.explain(task, q, "full")})
    frame = pd.DataFrame(rows)
    tok = E.build_task_tokenizer(pd.concat([frame["system"], frame["user"], frame["response"]]).tolist(), 1024)
    from orca_utils.tokens import tokenize_samples

    smp = tokenize_samples(tok, frame["system"].tolist(), frame["user"].tolist(), frame["response"].tolist(),
                           max_len_tokens=512)
    assert smp.counts["truncated"] == 0 and E.eos_in_loss(smp) == len(frame), int(smp.lengths.max())


def _gate_evals(exact_share: float, n: int = 20) -> pd.DataFrame:
    """Explanation rows on the gate task's curve at 3 steps, `exact_share` of them with the whole trace right."""
    rows = []
    for seed in (0, 1):
        for i in range(n):
            whole = i < round(exact_share * n)
            rows.append({"set": "curve", "control": "same_epochs", "variant": "explanation", "task": "lie_chain",
                         "steps": 3, "item": f"c/{i}", "seed": seed, "trace_steps": 3,
                         "trace_steps_right": 3 if whole else 1})
    return pd.DataFrame(rows)


def test_validity_gate_reads_whole_traces_at_the_shortest_trained_length():
    passed = X.validity_gate(_gate_evals(0.95), 0.9, "lie_chain", 3)
    assert passed["passed"] and passed["fidelity_pct"] == 95.0 and passed["items"] == 40
    failed = X.validity_gate(_gate_evals(0.85), 0.9, "lie_chain", 3, budget_tokens=4_000_000)
    assert not failed["passed"] and failed["fidelity_pct"] == 85.0
    other_length = X.validity_gate(_gate_evals(1.0), 0.9, "lie_chain", 5)      # no such items: read on BBH (none)
    assert not other_length["passed"] and other_length["items"] == 0
    m = X.gate_metrics(failed, tokens=550_000)
    assert m["experiment/gate/passed"] is False and m["experiment/gate/threshold_pct"] == 90.0
    assert m["experiment/gate/fidelity_pct"] == 85.0 and m["experiment/gate/explanation_tokens"] == 550_000


def test_a_failed_gate_produces_no_winner():
    ev = _fake_evals({"t1": (12, 0), "t2": (10, 0)})          # explanation clearly ahead on every seed
    ev = pd.concat([ev, ev.assign(control="same_tokens")])
    tests, caps, summary = X.paired_tests(ev), X.cap_shares(ev), X.summarize(ev)
    gate = X.validity_gate(_gate_evals(0.5), 0.9, "lie_chain", 3, budget_tokens=4_000_000)
    text = X.conclusion(X.apply_gate(tests, gate), pd.DataFrame(), caps, summary, X.best_constant(ev), 0.05,
                        "a tiny student", gate=gate, tokens=550_000)
    assert "Underpowered: no conclusion" in text and "50.0%" in text and "4.0M tokens" in text
    assert "better" not in text and "supports" not in text
    assert set(X.apply_gate(tests, gate)["verdict"]) == {"not read (validity gate failed)"}
    ok = X.validity_gate(_gate_evals(1.0), 0.9, "lie_chain", 3)
    text = X.conclusion(X.apply_gate(tests, ok), pd.DataFrame(), caps, summary, X.best_constant(ev), 0.05,
                        "a tiny student", gate=ok, tokens=550_000)
    assert "Validity gate (pre-registered, read first): passed" in text and "the experiment supports" in text


def test_erasure_arms_system_messages():
    from orca_utils.experiment import erasure as R
    from orca_utils.experiment.symbolic_teacher import style_of
    from orca_utils.strategies import GENERIC_SYSTEM_MESSAGE

    assert style_of(R.STRATEGY_MESSAGES["step"]) == "full" and style_of(R.STRATEGY_MESSAGES["direct"]) == "answer"
    rng = random.Random(0)
    rows = []
    for task, strategy in (("lie_chain", "step"), ("truth_lookup", "direct")):
        for i in range(20):
            q = S.generate_input(task, rng)
            rows.append({"id": f"{task}-{i}", "task": task, "style": "strategy", "user": q,
                         "system": R.STRATEGY_MESSAGES[strategy],
                         "response": S.explain(task, q, style_of(R.STRATEGY_MESSAGES[strategy]))})
    responses = pd.DataFrame(rows)
    kept, erased = R.training_frame(responses, "kept"), R.training_frame(responses, "erased")
    assert set(kept["system"]) == set(R.STRATEGY_MESSAGES.values())
    assert set(erased["system"]) == {GENERIC_SYSTEM_MESSAGE}
    assert (erased["response"] == kept["response"]).all() and (erased["user"] == kept["user"]).all()
    # the erased student's training text, as tokenized, holds no strategy message
    both = pd.concat([kept, erased])
    tok = E.build_task_tokenizer(pd.concat([both["system"], both["user"], both["response"]]).tolist(), 600)
    samples = T.style_samples(both, tok, _settings())
    text = tok.decode(samples["erased"].input_ids)
    assert "Orca" in text and not any(m in text for m in R.STRATEGY_MESSAGES.values())
    assert all(m in tok.decode(samples["kept"].input_ids) for m in R.STRATEGY_MESSAGES.values())
    with pytest.raises(ValueError, match="erasure arm"):
        R.training_frame(responses, "half")


def test_erasure_scores_the_strategy_each_student_chose():
    from orca_utils.experiment import erasure as R

    assert R.wrote_trace("Amy lies.\nSo the answer is No.") and not R.wrote_trace("So the answer is No.")
    rows = []
    for seed in (0, 1, 2):
        for i in range(30):
            for arm, prompt in R.EVALUATIONS:
                chain = i % 2 == 0
                right = arm == "erased" or prompt == "strategy" or i % 3 == 0
                rows.append({"seed": seed, "item": f"x/{i}", "task": "lie_chain" if chain else "truth_lookup",
                             "arm": arm, "prompt": prompt, "correct": right, "wrote_trace": chain == right,
                             "teacher_trace": chain, "strategy_right": right})
    ev = pd.DataFrame(rows)
    table = R.erasure_table(ev).set_index(["arm", "eval_prompt", "task"])
    assert table.loc[("erased", "generic", "all"), "strategy_right_pct"] == 100.0
    assert table.loc[("kept", "generic", "lie_chain"), "accuracy_pct"] < 50
    tests = R.erasure_tests(ev, 0.05)
    generic = tests[(tests["comparison"] == "erased/generic vs kept/generic") & (tests["measure"] == "correct")]
    assert set(generic["verdict"]) == {"erased/generic better"}
    assert "erased/generic vs kept/strategy" in set(tests["comparison"])
    assert "lie_chain" in R.erasure_conclusion(R.erasure_table(ev), tests)


def test_difficulty_table_marks_lengths_beyond_the_trained_range():
    rows = []
    for steps in (3, 5, 8, 12, 16):
        part = _fake_evals({"lie_chain": (steps % 3, 0)}, seeds=(0, 1), n=10)
        part["set"], part["steps"], part["item"] = "curve", steps, part["item"] + f"/{steps}"
        rows.append(part)
    curve = X.curve_summary(pd.concat(rows), {"lie_chain": [3, 8]})
    marks = curve.drop_duplicates("steps").set_index("steps")["in_training_range"].to_dict()
    assert marks == {3: True, 5: True, 8: True, 12: False, 16: False}
    assert "in_training_range" not in X.curve_summary(pd.concat(rows))
    # the figure marks where the trained range ends (and only when the curve runs past it)
    fig = X.plot_difficulty(curve, S.STEP_UNITS)
    assert "longest trained: 8" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    inside = X.curve_summary(pd.concat(rows[:3]), {"lie_chain": [3, 8]})
    assert not any("longest trained" in t.get_text()
                   for t in X.plot_difficulty(inside, S.STEP_UNITS).axes[0].get_legend().get_texts())


def test_erasure_runs_both_arms_end_to_end(tmp_path):
    """A tiny run: the teacher answered each task under its strategy message, and every arm is evaluated as planned."""
    from orca_utils.experiment import erasure as R

    s = _settings(tasks=["lie_chain"], eval_max_new_tokens=12, erasure_problems_per_task=6,
                  erasure_eval_items_per_task=3, chain_lengths=[3, 4], epochs=1.0)
    out = R.run_erasure(s, None, True, tmp_path, progress=False, log=lambda *_: None)
    ev, responses = out["eval"], out["responses"]
    assert sorted(set(zip(ev["arm"], ev["prompt"]))) == sorted(R.EVALUATIONS)
    assert ev.groupby(["arm", "prompt"]).size().eq(6).all()             # 3 items x 2 tasks each
    assert dict(zip(responses["task"], responses["system"])) == {"lie_chain": R.STRATEGY_MESSAGES["step"],
                                                                 "truth_lookup": R.STRATEGY_MESSAGES["direct"]}
    assert responses.loc[responses["task"] == "truth_lookup", "response"].str.startswith("So the answer is").all()
    assert (responses.loc[responses["task"] == "lie_chain", "response"].str.count("\n") >= 3).all()
    assert out["runs"].groupby("seed")["steps"].nunique().eq(1).all()     # same optimizer steps for both arms
    assert set(R.erasure_table(ev)["arm"]) == {"kept", "erased"}


def test_chain_params_say_what_is_wrong():
    from orca_utils.config import load_profile

    block = "09_explanation_vs_answer"
    with pytest.raises(Exception, match=r"chain_lengths \[8, 3\]"):
        load_profile("smoke", overrides=f"{block}.chain_lengths=[8, 3]")
    with pytest.raises(Exception, match="erasure_tasks"):
        load_profile("smoke", overrides=f"{block}.erasure_tasks={{lie_chain: step, truth_lookup: sometimes}}")
    assert load_profile("smoke", overrides=f"{block}.chain_lengths=[4, 9]")[block].chain_lengths == [4, 9]


def _seed_probe(seed: int, log, progress: bool, scale: int):
    """For `map_seeds`: runs in a worker process (module level, so a spawned process can import it)."""
    import os

    import torch

    if seed == 99:
        raise ValueError(f"seed {seed}: bad seed")
    log(f"seed {seed} ran")
    return seed * scale, torch.get_num_threads(), os.getpid(), progress


def test_map_seeds_runs_seeds_in_processes_and_keeps_their_order_and_errors():
    import os

    from orca_utils.experiment.parallel import map_seeds

    lines = []
    out = map_seeds(_seed_probe, [3, 1, 2], 2, lines.append, progress=True, scale=10)
    assert [o[0] for o in out] == [30, 10, 20]                               # seed order, whatever finished first
    assert {o[1] for o in out} == {1} and os.getpid() not in {o[2] for o in out}
    assert not any(o[3] for o in out)                                       # no progress bars inside workers
    assert sorted(ln for ln in lines if ln.endswith("ran")) == ["seed 1 ran", "seed 2 ran", "seed 3 ran"]
    same = map_seeds(_seed_probe, [3, 1], 1, lines.append, progress=True, scale=10)
    assert [o[0] for o in same] == [30, 10] and {o[2] for o in same} == {os.getpid()}
    with pytest.raises(ValueError, match="seed 99: bad seed"):
        map_seeds(_seed_probe, [0, 99], 2, lines.append, progress=False, scale=1)


@pytest.mark.slow
def test_seeds_side_by_side_give_the_same_runs_as_one_after_another(tmp_path):
    """workers=2 trains each seed in its own process: the same students, predictions and steps as workers=1."""
    kw = dict(tasks=["lie_chain"], seeds=[0, 1], controls=["same_epochs"], skip_runs=["same_epochs/progressive"],
              chain_lengths=[3, 4], curve={"lie_chain": [3]}, curve_items_per_step=2, train_problems_per_task=12,
              epochs=1.0, erasure=False)
    kw.update(erasure_problems_per_task=6, erasure_eval_items_per_task=3)
    one = E.run_experiment(_settings(**kw), None, True, tmp_path / "one", progress=False, log=lambda *_: None,
                           erasure=True)
    lines = []
    two = E.run_experiment(_settings(**kw, workers=2), None, True, tmp_path / "two", progress=False,
                           log=lines.append, erasure=True)
    assert any("4 jobs in 2 processes" in ln for ln in lines)              # 2 seeds + the erasure arms' 2 seeds
    cols = ["seed", "control", "variant", "item", "prediction", "correct"]
    pd.testing.assert_frame_equal(one["eval"][cols], two["eval"][cols])
    cols = ["seed", "arm", "prompt", "item", "prediction", "correct"]
    pd.testing.assert_frame_equal(one["erasure"]["eval"][cols], two["erasure"]["eval"][cols])
    assert one["runs"]["steps"].tolist() == two["runs"]["steps"].tolist()
    assert sorted(p.name for p in (tmp_path / "two" / "runs").glob("teacher_cache_*")) == \
        [f"teacher_cache_{S.TRACE_VERSION}_seed{k}.sqlite" for k in (0, 1)]
