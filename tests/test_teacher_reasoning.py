"""Per-model facts of the teacher client: reasoning efforts each model accepts, `stop` where it is rejected, hidden
reasoning tokens (counted, kept out of the answer), gpt-oss's `reasoning_effort` in the chat dialect, and 05/06's
API models each with its own effort and cap.

References: OpenAI's ReasoningEffort (none, minimal, low, medium, high, xhigh, max; not every model accepts every
value) and `usage.completion_tokens_details.reasoning_tokens` (hidden reasoning counts against
max_completion_tokens: a small cap gives `content: ""`, `finish_reason: "length"`); vLLM's reasoning outputs
(https://docs.vllm.ai/en/latest/features/reasoning_outputs.html): the reasoning comes back as
`message.reasoning_content` (newer releases: `reasoning`), the answer is `content` only.
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pydantic
import pytest

from orca_utils.schemas import BbhParams, TeacherEndpointParams, TeacherModelParams
from orca_utils.teacher import ChatRequest, ResponseCache, TeacherConfigError, request_body, run_chat_async
from orca_utils.teacher.models import lookup
from orca_utils.teacher.protocol import classify_response


class FakeChat:
    """`client.chat.completions.create(**body)`: a reasoning model that thinks `hidden` tokens before it answers
    `answer`; records every body it was sent."""

    def __init__(self, answer="So the answer is (A).\nQ: next question", hidden=100, reasoning_field=None):
        self.bodies: list[dict] = []
        self.answer, self.hidden, self.reasoning_field = answer, hidden, reasoning_field
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    async def _create(self, **body):
        self.bodies.append(body)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        message = {"role": "assistant", "content": self.answer}
        if self.reasoning_field:
            message[self.reasoning_field] = "Let me think step by step about (B)..."
        if cap < self.hidden:        # the cap runs out during the hidden reasoning: no visible answer
            message["content"] = None if self.reasoning_field else ""
            finish, completion, reasoning = "length", cap, cap
        else:
            finish, completion, reasoning = "stop", self.hidden + 8, self.hidden
        await asyncio.sleep(0)
        return {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 20, "completion_tokens": completion, "total_tokens": 20 + completion,
                          "completion_tokens_details": {"reasoning_tokens": reasoning}}}


def _run(tmp_path, requests, fake):
    endpoint = TeacherEndpointParams(base_url="https://api.example.com/v1", check_models=False, max_retries=0)

    async def main():
        with ResponseCache(tmp_path / "c.sqlite") as cache:
            return await run_chat_async(requests, endpoint, cache, progress=False, client=fake)

    return asyncio.run(main())


def _req(model, dialect, effort, max_tokens=2048, stop=None, i=0):
    return ChatRequest(f"id{i}", model, [{"role": "user", "content": f"Q{i}: 1+1?"}], max_tokens, 0.0, stop,
                       dialect, effort)


def test_registry_knows_each_models_efforts_and_stop():
    luna, sol = lookup("gpt-6-luna"), lookup("gpt-6.1-sol")
    assert luna.reasoning_efforts == ("none", "minimal", "low", "medium", "high", "xhigh", "max")
    assert sol.reasoning_efforts == ("low", "medium", "high", "xhigh", "max")
    assert luna.accepts_stop and not sol.accepts_stop
    assert lookup("openai/gpt-oss-20b").reasoning_efforts == ("low", "medium", "high")


def test_stop_is_not_sent_to_a_model_that_rejects_it_and_the_answer_is_cut_client_side(tmp_path):
    fake = FakeChat()
    run = _run(tmp_path, [_req("gpt-6.1-sol", "reasoning", "low", stop=["Q:"])], fake)
    assert "stop" not in fake.bodies[0], "gpt-6.1-sol rejects `stop` with 400 unsupported_parameter"
    assert fake.bodies[0]["reasoning_effort"] == "low" and fake.bodies[0]["max_completion_tokens"] == 2048
    assert run.results[0].status == "ok" and run.results[0].text == "So the answer is (A).\n"
    assert run.results[0].finish_reason == "stop"
    # a model that accepts stop still gets it
    assert request_body(_req("gpt-6-luna", "reasoning", "none", stop=["Q:"]))["stop"] == ["Q:"]


def test_an_effort_outside_the_models_set_is_a_params_error_before_anything_is_sent(tmp_path):
    fake = FakeChat()
    with pytest.raises(TeacherConfigError, match="reasoning_effort") as err:
        _run(tmp_path, [_req("gpt-6.1-sol", "reasoning", "none")], fake)
    assert "\n" not in str(err.value) and "low" in str(err.value) and fake.bodies == []
    with pytest.raises(TeacherConfigError, match="reasoning_effort"):
        _run(tmp_path, [_req("gpt-6-luna", "reasoning", "extreme")], fake)
    assert fake.bodies == []
    with pytest.raises(pydantic.ValidationError, match="reasoning_effort"):
        TeacherModelParams(label="Sol", model="gpt-6.1-sol", reasoning_effort="none")
    TeacherModelParams(label="Sol", model="gpt-6.1-sol", reasoning_effort="max")       # accepted


def test_a_reasoning_cap_below_the_hidden_tokens_gives_empty_answers_that_are_counted(tmp_path):
    fake = FakeChat(hidden=500)
    reqs = [_req("gpt-6.1-sol", "reasoning", "high", max_tokens=256, i=i) for i in range(3)] + \
        [_req("gpt-6.1-sol", "reasoning", "high", max_tokens=4096, i=9)]
    run = _run(tmp_path, reqs, fake)
    assert [r.status for r in run.results] == ["empty"] * 3 + ["ok"]
    assert all(r.finish_reason == "length" for r in run.results[:3])
    assert run.status_counts()["empty"] == 3
    assert run.stats["reasoning_tokens"] == 3 * 256 + 500 and run.stats["exhausted_by_reasoning"] == 3
    assert [r.reasoning_tokens for r in run.results] == [256, 256, 256, 500]


def test_gpt_oss_chat_body_carries_reasoning_effort_and_the_answer_excludes_the_reasoning(tmp_path):
    for field in ("reasoning_content", "reasoning"):
        fake = FakeChat(answer="The answer is 2.", hidden=50, reasoning_field=field)
        run = _run(tmp_path / field, [_req("openai/gpt-oss-20b", "chat", "low", max_tokens=1024)], fake)
        body = fake.bodies[0]
        assert body["reasoning_effort"] == "low" and body["max_tokens"] == 1024 and body["temperature"] == 0.0
        assert run.results[0].text == "The answer is 2." and "think" not in run.results[0].text
        # the reasoning exhausted the cap: no answer, counted as empty, never the reasoning text in its place
        fake = FakeChat(answer="The answer is 2.", hidden=50, reasoning_field=field)
        run = _run(tmp_path / f"{field}-cut", [_req("openai/gpt-oss-20b", "chat", "high", max_tokens=16)], fake)
        assert run.results[0].status == "empty" and run.results[0].text == ""
    # the key tells efforts apart in the chat dialect (a cached low-effort answer is not reused for high)
    assert _req("openai/gpt-oss-20b", "chat", "low").key != _req("openai/gpt-oss-20b", "chat", "high").key
    assert _req("openai/gpt-oss-20b", "chat", None).key == ChatRequest(
        "id0", "openai/gpt-oss-20b", [{"role": "user", "content": "Q0: 1+1?"}], 2048, 0.0, None).key


def test_classify_response_keeps_reasoning_tokens():
    body = {"choices": [{"message": {"content": "", "reasoning_content": "hmm"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 64,
                      "completion_tokens_details": {"reasoning_tokens": 64}}}
    out = classify_response(body)
    assert (out.status, out.text, out.finish_reason, out.reasoning_tokens) == ("empty", "", "length", 64)


def test_open_weights_profile_sets_reasoning_effort_for_gpt_oss():
    from orca_utils.config import load_profile

    cfg = load_profile("paper_open_weights")["02_augmentation"]
    for stage in (cfg.stage1, cfg.stage2):
        assert stage.dialect == "chat" and stage.reasoning_effort in ("low", "medium", "high")
        assert ChatRequest("x", stage.model, [], stage.max_tokens, 0.0, None, stage.dialect,
                           stage.reasoning_effort).reasoning_effort == stage.reasoning_effort


def test_api_models_take_a_name_or_a_mapping_with_effort_and_cap():
    from orca_utils.config import load_profile

    base = load_profile("smoke")["06_bbh"].model_dump()
    cfg = BbhParams.model_validate({**base, "api_models": ["gpt-4o", {"model": "gpt-6.1-sol",
                                    "reasoning_effort": "low", "max_tokens": 4096, "max_cost_usd": 2.0}]})
    plain, sol = cfg.api_models
    assert plain.model == "gpt-4o" and plain.reasoning_effort is None
    assert (sol.model, sol.reasoning_effort, sol.max_tokens, sol.max_cost_usd) == ("gpt-6.1-sol", "low", 4096, 2.0)
    with pytest.raises(pydantic.ValidationError, match="reasoning_effort"):
        BbhParams.model_validate({**base, "api_models": [{"model": "gpt-6.1-sol", "reasoning_effort": "none"}]})


def test_api_model_answers_cut_by_hidden_reasoning_are_counted_per_model(tmp_path, monkeypatch):
    """05/06: an empty answer is scored (wrong, an extraction failure) and counted, never a crash."""
    from orca_utils.generate import TeacherClientBackend

    fake = FakeChat(hidden=300)
    monkeypatch.setattr("orca_utils.teacher.client.make_client", lambda endpoint: fake)
    sol = TeacherModelParams(label="Sol", model="gpt-6.1-sol", reasoning_effort="low", price_input_usd_per_1k=0,
                             price_output_usd_per_1k=0)
    endpoint = TeacherEndpointParams(base_url="https://api.example.com/v1", check_models=False)
    backend = TeacherClientBackend(sol, endpoint, tmp_path / "c.sqlite", progress=False)
    texts = backend.generate(["Q: a?", "Q: b?"], max_new_tokens=128, stop=["Q:"])
    assert texts == ["", ""] and backend.status_counts["empty"] == 2
    assert all("stop" not in b for b in fake.bodies)
    texts = backend.generate(["Q: c?"], max_new_tokens=1024, stop=["Q:"])
    assert texts == ["So the answer is (A)."] and backend.status_counts["ok"] == 1
    assert backend.statuses == {"Q: a?": "empty", "Q: b?": "empty", "Q: c?": "ok"}


def test_06_api_models_each_with_effort_and_cap_count_empty_answers_per_model(tmp_path, monkeypatch):
    from orca_utils.evaluation.zero_shot import run_zero_shot, zero_shot_metrics
    from orca_utils.runs import setup_notebook

    fake = FakeChat(hidden=300)
    monkeypatch.setattr("orca_utils.teacher.client.make_client", lambda endpoint: fake)
    overrides = ("06_bbh.api_models=[{model: gpt-6.1-sol, reasoning_effort: low, max_tokens: 128}, "
                 "{model: gpt-6-luna, reasoning_effort: none, max_tokens: 1024}];"
                 "06_bbh.tasks=[boolean_expressions];06_bbh.n_items_per_task=2;"
                 "06_bbh.eval_base_model=false;06_bbh.compare_system_message_ids=[]")
    cfg, run = setup_notebook("06_bbh", "smoke", run_dir=str(tmp_path), overrides=overrides, quiet=True)
    zs = run_zero_shot(cfg, run, "bbh")
    sol_bodies = [b for b in fake.bodies if b["model"] == "gpt-6.1-sol"]
    luna_bodies = [b for b in fake.bodies if b["model"] == "gpt-6-luna"]
    assert all("stop" not in b and b["reasoning_effort"] == "low" and b["max_completion_tokens"] == 128
               for b in sol_bodies) and len(sol_bodies) == 2
    assert all(b["stop"] == ["Q:"] and b["reasoning_effort"] == "none" and b["max_completion_tokens"] == 1024
               for b in luna_bodies) and len(luna_bodies) == 2
    assert zs.results["gpt-6.1-sol"].records["api_status"].tolist() == ["empty", "empty"]
    assert zs.results["gpt-6-luna"].records["api_status"].tolist() == ["ok", "ok"]
    metrics = zero_shot_metrics(zs)
    assert metrics["bbh/api_gpt_6_1_sol/status/empty"] == 2 and metrics["bbh/api_gpt_6_luna/status/ok"] == 2
    assert metrics["bbh/api_gpt_6_1_sol/reasoning_tokens"] == 2 * 128


# ---- every body the client writes is one OpenAI's published OpenAPI description defines --------------------------
@pytest.mark.parametrize("dialect,effort,stop", [("chat", None, None), ("chat", "low", ["Q:"]),
                                                 ("reasoning", None, None), ("reasoning", "none", ["Q:"]),
                                                 ("reasoning", "max", ["Q:"])])
@pytest.mark.parametrize("model", ["gpt-6-luna", "gpt-6.1-sol", "openai/gpt-oss-20b"])
def test_client_bodies_validate_against_openais_openapi(model, dialect, effort, stop):
    """`request_body` (chat calls and Batch lines alike) against `CreateChatCompletionRequest` of the pinned
    openai/openai-openapi copy (tests/fixtures/openai_openapi): no field the API does not define, no wrong type."""
    from orca_utils.teacher.openai_emulation import DEFAULT_OPENAPI_PATH, RequestSchemas
    from orca_utils.teacher.protocol import ChatRequest, request_body

    schemas = RequestSchemas.load(DEFAULT_OPENAPI_PATH)
    assert schemas is not None, DEFAULT_OPENAPI_PATH
    req = ChatRequest("q1", model, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
                      64, 0.0, stop, dialect, effort)
    body = request_body(req)
    assert schemas.chat_error(body) is None, (body, schemas.chat_error(body))
    assert schemas.chat_error({**body, "max_new_tokens": 5}) is not None     # the check itself can fail
