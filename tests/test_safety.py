"""TruthfulQA MC1/MC2 construction and scoring (hand-computed), the truthfulness judge, ToxiGen prompts and scorer."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from orca_utils.evaluation.sets import load_truthfulqa, split_answers
from orca_utils.judge import VerdictParseError
from orca_utils.safety import (TOXIGEN_13_GROUPS, build_mc, evaluate_mc, judge_truthfulness, list_toxigen_files,
                               load_toxicity_scorer, load_toxigen_prompts, parse_toxigen_line, parse_yes_no, score_mc,
                               summarise_mc, summarise_toxicity)


def test_split_answers_closes_and_dedupes():
    assert split_answers("Nothing happens; You die;; You die ; It is.") == ["Nothing happens.", "You die.", "It is."]


def test_score_mc_by_hand():
    # p: best 0.5, other true 0.1, false 0.2 and 0.2 -> MC1 1 (0.5 > 0.2), MC2 0.6 / 1.0
    mc1, mc2 = score_mc([math.log(0.5), math.log(0.1)], [math.log(0.2), math.log(0.2)])
    assert mc1 == 1.0 and mc2 == pytest.approx(0.6)
    # best -3 < false -2 -> MC1 0; MC2 = (e^-3 + e^-1) / (e^-3 + e^-1 + e^-2) = 0.417666 / 0.553001
    mc1, mc2 = score_mc([-3.0, -1.0], [-2.0])
    assert mc1 == 0.0 and mc2 == pytest.approx(0.755271, abs=1e-6)
    # a tie is not a win for MC1; MC2 splits the mass evenly
    assert score_mc([-1.0], [-1.0]) == (0.0, pytest.approx(0.5))
    # very negative log-likelihoods (long answers) do not underflow
    assert score_mc([-2000.0], [-2001.0])[1] == pytest.approx(1 / (1 + math.exp(-1)))
    with pytest.raises(ValueError):
        score_mc([], [-1.0])


def _tiny_tqa():
    return build_mc(pd.DataFrame([
        {"id": "q1", "type": "Adversarial", "category": "Health", "question": "Q1?", "best_answer": "B.",
         "correct_answers": ["T.", "B."], "incorrect_answers": ["F1.", "F2."]},
        {"id": "q2", "type": "Non-Adversarial", "category": "Law", "question": "Q2?", "best_answer": "B2.",
         "correct_answers": ["B2."], "incorrect_answers": ["G1.", "B2."]},
    ]))


def test_build_mc_answer_sets():
    mc = _tiny_tqa()
    assert mc.loc[0, "mc1_choices"] == ["B.", "F1.", "F2."]
    assert mc.loc[0, "mc2_true"] == ["B.", "T."] and mc.loc[0, "mc2_false"] == ["F1.", "F2."]
    assert mc.loc[1, "mc2_false"] == ["G1."]        # an answer listed as both correct and incorrect stays true


def test_evaluate_mc_with_a_scripted_model():
    lls = {"B.": math.log(0.5), "T.": math.log(0.1), "F1.": math.log(0.2), "F2.": math.log(0.2),
           "B2.": -3.0, "G1.": -2.0}
    seen = []

    def loglikelihood(requests):
        seen.extend(requests)
        return [lls[cont] for _, cont in requests]

    res = evaluate_mc(_tiny_tqa(), loglikelihood)
    assert len(seen) == 6 and seen[0][0] == [{"role": "user", "content": "Q1?"}]
    assert list(res["mc1"]) == [1.0, 0.0]
    assert res.loc[0, "mc2"] == pytest.approx(0.6)
    assert res.loc[1, "mc2"] == pytest.approx(math.exp(-3) / (math.exp(-3) + math.exp(-2)))
    table = summarise_mc(res, "m").set_index("category")
    assert table.loc["Overall", "mc1"] == pytest.approx(50.0) and table.loc["Overall", "n"] == 2
    assert table.loc["Health", "mc2"] == pytest.approx(60.0)


def test_truthfulqa_real_file():
    df = load_truthfulqa(offline=True)
    assert len(df) == 817 and df["id"].is_unique and df["category"].nunique() == 38
    mc = build_mc(df)
    first = mc.iloc[0]
    assert first["mc1_choices"][0] == "The watermelon seeds pass through your digestive system."
    assert "You grow watermelons in your stomach." in first["mc1_choices"]
    assert all(not set(t) & set(f) for t, f in zip(mc["mc2_true"], mc["mc2_false"]))
    assert (mc["mc1_choices"].map(len) >= 2).all()


@pytest.mark.parametrize("reply,expected", [("yes", True), ("No.", False), ("**Yes**\nbecause ...", True),
                                            ("\nno\n", False), ("Yes, it is", None), ("maybe", None), ("", None),
                                            (None, None), ("The answer is yes", None)])
def test_parse_yes_no(reply, expected):
    if expected is None:
        with pytest.raises(VerdictParseError):
            parse_yes_no(reply)
    else:
        assert parse_yes_no(reply) is expected


def test_judge_truthfulness_records_unparseable():
    replies = iter([("yes", "ok"), ("I am not sure", "ok"), ("still unsure", "ok")])
    verdicts = judge_truthfulness(_tiny_tqa(), ["B.", "G1."], lambda reqs: [next(replies) for _ in reqs])
    assert list(verdicts["status"]) == ["ok", "unparseable"] and verdicts.loc[0, "truthful"] is True
    assert verdicts.loc[1, "truthful"] is None and verdicts.loc[1, "attempts"] == 2


def test_toxigen_files_on_the_real_data():
    files = list_toxigen_files(offline=True)
    kinds = files.groupby("kind")["group"].apply(set)
    assert len(kinds["hate"]) == 16 and len(kinds["neutral"]) == 15
    assert set(TOXIGEN_13_GROUPS) <= kinds["hate"] & kinds["neutral"]
    assert kinds["hate"] - kinds["neutral"] == {"trans"}
    assert (files["n_lines"] == 1000).all()


def test_toxigen_prompt_loader_on_the_real_files():
    a = load_toxigen_prompts(n_per_file=2, seed=0, offline=True)
    assert len(a) == 2 * 2 * 13 and a["id"].is_unique
    assert a.equals(load_toxigen_prompts(n_per_file=2, seed=0, offline=True))
    assert set(a["kind"]) == {"hate", "neutral"} and set(a["group"]) == set(TOXIGEN_13_GROUPS)
    for p in a["prompt"]:
        assert p.startswith("- ") and p.endswith("\n-") and "\\n" not in p
    assert (a["n_statements"] >= 3).all()
    with pytest.raises(FileNotFoundError, match="trans"):
        load_toxigen_prompts(groups=["trans"], kinds=["neutral"], offline=True)


def test_parse_toxigen_line():
    assert parse_toxigen_line("- a b\\n- c d\\n-\n") == "- a b\n- c d\n-"
    assert parse_toxigen_line("- a\\n- b") == "- a\n- b\n-"
    with pytest.raises(ValueError):
        parse_toxigen_line("no dash")


@pytest.fixture
def tiny_classifier(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", "good", "bad", "people", "are"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>")
    cfg = RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, num_labels=2, pad_token_id=0)
    model = RobertaForSequenceClassification(cfg)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return tmp_path, model, tok


def test_classifier_scorer_uses_the_toxic_label_index(tiny_classifier):
    import torch

    path, model, tok = tiny_classifier
    texts = ["good people", "bad people are bad", "are"]
    s1, why = load_toxicity_scorer("classifier", str(path), None, toxic_label_index=1)
    s0, _ = load_toxicity_scorer("classifier", str(path), None, toxic_label_index=0)
    assert why == "" and "label 1" in s1.label
    p1, p0 = s1.score(texts), s0.score(texts)
    with torch.inference_mode():
        enc = tok(texts, padding=True, return_tensors="pt")
        expected = torch.softmax(model.eval()(**enc).logits, -1)[:, 1].tolist()
    assert p1 == pytest.approx(expected, abs=1e-5)
    assert [a + b for a, b in zip(p0, p1)] == pytest.approx([1.0] * 3)
    none, why = load_toxicity_scorer("classifier", str(path), None, toxic_label_index=2)
    assert none is None and "2 labels" in why


def test_scorer_unavailable_offline_says_why():
    scorer, why = load_toxicity_scorer("classifier", "tomh/toxigen_roberta", "main", 1)
    assert scorer is None and "unavailable" in why
    assert load_toxicity_scorer("none", None, None, 1) == (None, "no toxicity scorer configured (toxigen.scorer: none)")


def test_summarise_toxicity():
    scored = pd.DataFrame({"model": "m", "kind": ["hate"] * 3 + ["neutral"], "group": "women",
                           "toxicity": [0.9, 0.2, 0.6, 0.1]})
    out = summarise_toxicity(scored).set_index("kind")
    assert out.loc["hate", "n"] == 3 and out.loc["hate", "pct_toxic"] == pytest.approx(200 / 3)
    assert out.loc["neutral", "mean_toxicity"] == pytest.approx(0.1)


def test_evaluate_mc_text_prompt_uses_lm_eval_delimiter():
    seen = []

    def loglikelihood(requests):
        seen.extend(requests)
        return [-float(len(c)) for _, c in requests]

    res = evaluate_mc(_tiny_tqa().head(1), loglikelihood, text_prompt=lambda q: f"Q: {q}\nA:")
    assert seen[0] == ("Q: Q1?\nA:", " B.") and all(c.startswith(" ") for _, c in seen)
    assert len(res) == 1
