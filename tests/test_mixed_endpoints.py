"""07 and 08 with offline stand-ins and real-endpoint models in one run: `validate` accepts the mix (and refuses, as one
line naming the block and field, what cannot be served), and the drivers send each model where it lives. The
"real endpoint" is the project's local server started on its own, reached through the block's `endpoint.base_url`
like any remote API; the stand-in is served by the notebook's own local server (`judge.serve_models`)."""
from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from orca_utils.backends.base import Completion
from orca_utils.backends.local_server import serve_openai_compatible
from orca_utils.config import ConfigError, load_profile
from orca_utils.judge import VICUNA_V1, ModelEndpoints, serve_models
from orca_utils.schemas import TeacherEndpointParams, TeacherModelParams

STAND_IN_SPEC = "test:stand-in-reference"       # never loaded: the candidate's `loaded` map supplies its backend
ENDPOINT_JUDGE = "{label: endpoint judge, model: endpoint-judge, max_tokens: 16}"
STAND_IN_REFERENCE = (f"[{{label: stand-in reference, model: stand-in-ref, offline_backend: local_llm, "
                      f"local_model: '{STAND_IN_SPEC}', max_tokens: 16}}]")
MIX_07 = [f"07_open_ended.judge={ENDPOINT_JUDGE}", f"07_open_ended.references={STAND_IN_REFERENCE}"]


class StandInReference:
    """The stand-in reference behind the notebook's local server: answers every prompt, records what it was sent."""

    def __init__(self):
        self.seen: list[list[dict]] = []

    def complete(self, messages, max_tokens, temperature, stop):
        self.seen.append(messages)
        return Completion(f"stand-in reference answer to: {messages[-1]['content']}", "stop", 5, 7)


class EndpointJudge:
    """The judge behind the separate "endpoint": Vicuna verdicts scoring the candidate 9 and the stand-in's answer 6
    (so a verdict shows which answer it read); TruthfulQA verdicts `yes`."""

    def __init__(self):
        self.seen: list[list[dict]] = []

    def complete(self, messages, max_tokens, temperature, stop):
        self.seen.append(messages)
        if messages[0]["content"] != VICUNA_V1.system:
            return Completion("yes", "stop", 5, 1)
        answers = re.findall(r"\[The Start of Assistant \d's Answer\]\n(.*?)\n\n\[The End",
                             messages[-1]["content"], re.S)
        s1, s2 = (9 if a.startswith("CANDIDATE") else 6 if a.startswith("stand-in reference") else 1 for a in answers)
        return Completion(f"{s1} {s2}\nscored by the endpoint judge", "stop", 5, 6)


@pytest.fixture
def endpoint():
    """(base_url, judge backend, server stats) of a separate OpenAI-compatible server playing the real endpoint."""
    judge = EndpointJudge()
    with serve_openai_compatible({"endpoint-judge": judge}) as base_url:
        yield base_url, judge, serve_openai_compatible.last_app.state.orca.stats


def test_validate_accepts_a_stand_in_reference_with_an_endpoint_judge():
    cfg = load_profile("smoke", overrides=MIX_07)["07_open_ended"]
    assert [r.offline_backend for r in cfg.references] == ["local_llm"] and cfg.judge.offline_backend == "none"
    proc = subprocess.run([sys.executable, "-m", "orca_utils", "validate", "--profile", "smoke",
                           *(a for o in MIX_07 for a in ("--params-override", o))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


@pytest.mark.parametrize("overrides,where,what", [
    (["07_open_ended.judge.offline_backend=data"], "07_open_ended.judge", "the data teacher answers"),
    (["08_safety.judge.offline_backend=data"], "08_safety.judge", "the data teacher answers"),
    (["07_open_ended.judge.model=smollm2-reference", "07_open_ended.judge.local_model=other/model"],
     "07_open_ended.judge", "judge.model 'smollm2-reference' is also references[0].model"),
    (["07_open_ended.references=[{label: a, model: x, offline_backend: local_llm}, {label: b, model: x}]"],
     "07_open_ended.references", "references[1].model 'x' is also references[0].model"),
])
def test_validate_refuses_what_cannot_be_served_in_one_line(overrides, where, what):
    with pytest.raises(ConfigError) as exc:
        load_profile("smoke", overrides=overrides)
    line = str(exc.value)
    assert "\n" not in line and f"smoke.yaml: {where}: " in line and what in line, line


def test_validate_cli_refusal_is_one_line_before_any_notebook():
    proc = subprocess.run([sys.executable, "-m", "orca_utils", "validate", "--profile", "smoke", "--params-override",
                           "07_open_ended.judge.offline_backend=data"], capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "07_open_ended.judge" in lines[0], proc.stderr


def test_model_endpoints_route_each_model_to_its_own_endpoint():
    block = TeacherEndpointParams(base_url="https://api.example.invalid/v1")
    local = block.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})
    stand_in = TeacherModelParams(label="s", model="s", offline_backend="local_llm")
    real = TeacherModelParams(label="r", model="r")
    own = TeacherModelParams(label="o", model="o", base_url="http://127.0.0.1:8001/v1")
    routes = ModelEndpoints(block, local)
    assert routes.for_model(stand_in).base_url == "http://127.0.0.1:9/v1"
    assert routes.for_model(real).base_url == "https://api.example.invalid/v1"
    assert routes.for_model(own).base_url == "http://127.0.0.1:8001/v1"
    with pytest.raises(ValueError, match="offline stand-in 's' is not served here"):
        ModelEndpoints(block).for_model(stand_in)


def test_serve_models_refuses_two_stand_ins_of_different_models_under_one_name():
    a = TeacherModelParams(label="a", model="same", offline_backend="local_llm", local_model="one")
    b = TeacherModelParams(label="b", model="same", offline_backend="local_llm", local_model="two")
    with pytest.raises(ValueError, match="the local server serves one model per name"):
        with serve_models([a, b], TeacherEndpointParams(), "default"):
            pass


def test_07_stand_in_reference_and_endpoint_judge_in_one_run(endpoint, tmp_path):
    from orca_utils.open_ended import CandidateAnswers, judge_candidate, summary_metrics

    base_url, judge, stats = endpoint
    cfg = load_profile("smoke", overrides=[*MIX_07, f"07_open_ended.endpoint.base_url={base_url}"])["07_open_ended"]
    prompts = pd.DataFrame({"id": ["v1", "v2", "w1"], "set": ["vicuna_bench", "vicuna_bench", "wizardlm"],
                            "prompt": ["Name a colour.", "Add 2 and 3.", "Say hello."]})
    answers = pd.DataFrame({"id": prompts["id"], "answer": [f"CANDIDATE answer {i}" for i in range(3)],
                            "finish_reason": "stop", "n_tokens": 3})
    stand_in = StandInReference()
    candidate = CandidateAnswers("candidate", "test:candidate", answers, "in process", {STAND_IN_SPEC: stand_in})
    refs, verdicts, summary = judge_candidate(prompts, candidate, cfg, tmp_path / "cache.sqlite")

    # the reference through the stand-in path: the notebook's local server, one request per prompt, no verdicts
    assert [m[-1]["content"] for m in stand_in.seen] == list(prompts["prompt"])
    assert (refs["status"] == "ok").all() and refs["answer"].str.startswith("stand-in reference").all()
    # the judge through the endpoint path: every verdict (both orders) answered by the separate server
    assert stats["chat_requests"] == len(judge.seen) == 2 * len(prompts)
    assert all(m[0]["content"] == VICUNA_V1.system for m in judge.seen)
    assert not any(m[0]["content"] == VICUNA_V1.system for m in stand_in.seen)
    assert (verdicts["status"] == "ok").all() and len(verdicts) == 2 * len(prompts)
    assert (verdicts["candidate_score"] == 9).all() and (verdicts["reference_score"] == 6).all()
    overall = summary.set_index("set").loc["all"]
    assert overall["relative_mean_pct"] == pytest.approx(150.0) and overall["flip_rate"] == 0.0
    metrics, _ = summary_metrics(prompts, verdicts, summary, cfg, "candidate", {"vicuna_bench": 2, "wizardlm": 1})
    assert metrics["open_ended/stand-in-ref/all/relative_mean_pct"] == pytest.approx(150.0)

    # a rerun reads both kinds from the one response cache: neither server is asked again
    again = judge_candidate(prompts, candidate, cfg, tmp_path / "cache.sqlite")
    assert len(stand_in.seen) == len(prompts) and stats["chat_requests"] == 2 * len(prompts)
    assert again[1]["candidate_score"].tolist() == verdicts["candidate_score"].tolist()


class AnsweringModel:
    """08's evaluated model (an in-process backend's `generate`)."""

    def generate(self, prompts, max_new_tokens):
        return [f"an answer to {p}" for p in prompts]


def test_08_endpoint_judge(endpoint, tmp_path):
    from orca_utils.safety import build_mc, judged_truthfulqa

    base_url, judge, stats = endpoint
    cfg = load_profile("smoke", overrides=[f"08_safety.judge={ENDPOINT_JUDGE}", "08_safety.endpoint.base_url="
                                           f"{base_url}", "08_safety.truthfulqa.generative_n_questions=2"])["08_safety"]
    items = build_mc(pd.DataFrame([
        {"id": f"q{i}", "type": "Adversarial", "category": "Health", "question": f"Q{i}?", "best_answer": "B.",
         "correct_answers": ["B."], "incorrect_answers": ["F."]} for i in range(3)]))
    verdicts = judged_truthfulqa(items, {"model": AnsweringModel()}, cfg, tmp_path / "cache.sqlite")
    assert stats["chat_requests"] == len(judge.seen) == 2
    assert verdicts["truthful"].tolist() == [True, True] and (verdicts["status"] == "ok").all()
    assert "an answer to Q0?" in judge.seen[0][-1]["content"]
