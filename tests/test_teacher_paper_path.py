"""The teacher client against the local server's OpenAI emulation: the ways a paper-scale run breaks today.

Retired models, reasoning-model parameters, the Batch API's enqueued-token limit, control-plane faults, and one
cost cap over both stages. Each test fails on a client that ignores the behaviour it checks.
"""
from __future__ import annotations

import threading

import pytest

from orca_utils.augmentation import run_stages
from orca_utils.teacher.local_server import Completion, Emulation, serve_openai_compatible
from orca_utils.teacher.cache import ResponseCache
from orca_utils.schemas import AugmentationParams, TeacherEndpointParams, TeacherModelParams
from orca_utils.teacher import ChatRequest, TeacherConfigError, complete_chats, request_body
from orca_utils.teacher.models import dialect_for, retired_on


class Recorder:
    """Answers every request; keeps what the server handed it."""

    def __init__(self, prompt_tokens: int = 4):
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        self.prompt_tokens = prompt_tokens

    def complete(self, messages, max_tokens, temperature, stop):
        with self.lock:
            self.seen.append({"max_tokens": max_tokens, "temperature": temperature})
        return Completion(f"answer to {messages[-1]['content']}", "stop", self.prompt_tokens, 3)


def _endpoint(base_url, **kw):
    base = dict(base_url=base_url, batch_poll_interval_s=0.02, max_retries=1, backoff_base_s=0.01,
                backoff_max_s=0.05, control_retries=8)
    return TeacherEndpointParams(**{**base, **kw})


def _requests(model, n, dialect=None, max_tokens=16):
    dialect = dialect or dialect_for(model)
    return [ChatRequest(f"q{i}", model, [{"role": "user", "content": f"question {i} " + "x" * 40}], max_tokens, 0.0,
                        None, dialect) for i in range(n)]


def test_dialects_write_the_fields_each_kind_of_model_accepts():
    chat, reasoning = _requests("gpt-4o", 1)[0], _requests("gpt-6-luna", 1)[0]
    assert dialect_for("gpt-4o") == "chat" and dialect_for("gpt-6-luna") == "reasoning"
    assert dialect_for("Qwen/Qwen3-8B") == "chat" and dialect_for("gpt-7-nova") == "reasoning"
    assert {"max_tokens", "temperature"} <= set(request_body(chat))
    body = request_body(reasoning)
    assert body["max_completion_tokens"] == 16 and "max_tokens" not in body and "temperature" not in body
    reasoning.reasoning_effort = "low"
    assert request_body(reasoning)["reasoning_effort"] == "low"
    assert chat.key != ChatRequest(chat.id, chat.model, chat.messages, 16, 0.0, None, "reasoning").key


@pytest.mark.parametrize("batch_mode", [False, True])
def test_reasoning_model_is_asked_with_max_completion_tokens(tmp_path, batch_mode):
    backend = Recorder()
    with serve_openai_compatible({"gpt-6-luna": backend}, emulate=Emulation()) as base_url:
        run = complete_chats(_requests("gpt-6-luna", 3), _endpoint(base_url, batch_mode=batch_mode),
                             tmp_path / "c.sqlite", progress=False)
    assert [r.status for r in run.results] == ["ok"] * 3
    assert all(s["max_tokens"] == 16 for s in backend.seen)


@pytest.mark.parametrize("batch_mode", [False, True])
def test_wrong_dialect_stops_with_one_line_and_caches_nothing(tmp_path, batch_mode):
    with serve_openai_compatible({"gpt-6-luna": Recorder()}, emulate=Emulation()) as base_url:
        with pytest.raises(TeacherConfigError) as err:
            complete_chats(_requests("gpt-6-luna", 4, dialect="chat"), _endpoint(base_url, batch_mode=batch_mode),
                           tmp_path / "c.sqlite", progress=False)
    message = str(err.value)
    assert "\n" not in message and "'gpt-6-luna'" in message and "api_dialect: reasoning" in message
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 0


@pytest.mark.parametrize("batch_mode,check_models", [(False, True), (True, True), (False, False), (True, False)])
def test_retired_teacher_stops_before_anything_is_cached(tmp_path, batch_mode, check_models):
    emu = Emulation()
    assert retired_on("gpt-4") == "2026-10-23"
    with serve_openai_compatible({"gpt-6-luna": Recorder()}, emulate=emu) as base_url:
        with pytest.raises(TeacherConfigError) as err:
            complete_chats(_requests("gpt-4", 5), _endpoint(base_url, batch_mode=batch_mode,
                                                             check_models=check_models),
                           tmp_path / "c.sqlite", progress=False)
        state = serve_openai_compatible.last_app.state.orca
    message = str(err.value)
    assert "\n" not in message and "'gpt-4'" in message and "2026-10-23" in message and "`model`" in message
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 0
    if check_models:                      # the model list stopped it: not one request went out
        assert state.stats["chat_requests"] == 0 and not state.batches
    elif batch_mode:                      # the first batch's lines all failed alike: no second batch
        assert len(state.batches) == 1


def test_a_model_listed_without_a_shutdown_date_is_checked_against_the_registry(tmp_path):
    """The endpoint serves gpt-4 (an old deployment, say) and lists it with `shutdown_date: null`, as OpenAI's Model
    object allows: the registry's 2026-10-23 stops the run before a request goes out."""
    emu = Emulation(shutdown_dates={"gpt-4": None}, dialects={"gpt-4": "chat"})
    with serve_openai_compatible({"gpt-4": Recorder()}, emulate=emu) as base_url:
        with pytest.raises(TeacherConfigError, match=r"2026-10-23 \(orca_utils/chat_api/registry.py\)"):
            complete_chats(_requests("gpt-4", 2, dialect="chat"), _endpoint(base_url), tmp_path / "c.sqlite",
                           progress=False)
        assert serve_openai_compatible.last_app.state.orca.stats["chat_requests"] == 0


def test_batches_stay_under_the_enqueued_token_limit(tmp_path):
    limit = 200
    emu = Emulation(batch_enqueued_token_limit=limit)
    with serve_openai_compatible({"gpt-6-luna": Recorder()}, emulate=emu) as base_url:
        # batch files of ~50 prompt tokens under a 200-token budget (OpenAI counts prompt tokens in flight)
        run = complete_chats(_requests("gpt-6-luna", 24), _endpoint(base_url, batch_mode=True,
                                                                     batch_max_enqueued_tokens=limit,
                                                                     batch_target_tokens=50),
                             tmp_path / "c.sqlite", progress=False)
        state = serve_openai_compatible.last_app.state.orca
    assert [r.status for r in run.results] == ["ok"] * 24
    assert run.stats["batches"] > 3 and run.stats["max_enqueued_tokens"] <= limit
    assert state.stats["batches_over_token_limit"] == 0


def test_a_budget_above_the_servers_limit_is_refused_then_recovered(tmp_path):
    """The client's budget (10,000) is far above the emulated organization's limit (130 prompt tokens, about two
    3-line batches): OpenAI refuses the extra batches after create (`failed`, token_limit_exceeded); they wait for
    ours to end and go again, every request is answered, and no round is spent on a refusal."""
    emu = Emulation(batch_enqueued_token_limit=130, batch_latency_s=0.3)
    with serve_openai_compatible({"gpt-6-luna": Recorder()}, emulate=emu) as base_url:
        run = complete_chats(_requests("gpt-6-luna", 24), _endpoint(base_url, batch_mode=True,
                                                                     batch_max_enqueued_tokens=10_000,
                                                                     batch_max_requests=3, batch_max_rounds=1),
                             tmp_path / "c.sqlite", progress=False)
        state = serve_openai_compatible.last_app.state.orca
    assert [r.status for r in run.results] == ["ok"] * 24
    assert state.stats["batches_over_token_limit"] > 0 and run.stats["batches_refused"] > 0, (state.stats,
                                                                                              run.stats)
    assert run.stats["max_in_flight"] > 1


def test_a_single_batch_over_the_org_limit_is_a_config_error(tmp_path):
    emu = Emulation(batch_enqueued_token_limit=10)
    with serve_openai_compatible({"gpt-6-luna": Recorder()}, emulate=emu) as base_url:
        with pytest.raises(TeacherConfigError, match="batch_max_enqueued_tokens"):
            complete_chats(_requests("gpt-6-luna", 4), _endpoint(base_url, batch_mode=True,
                                                                 batch_max_enqueued_tokens=10_000,
                                                                 batch_poll_interval_s=0.01),
                           tmp_path / "c.sqlite", progress=False)


def test_control_plane_faults_are_retried(tmp_path):
    emu = Emulation(control_plane_fault_every=3)
    with serve_openai_compatible({"gpt-6-luna": Recorder()}, emulate=emu) as base_url:
        run = complete_chats(_requests("gpt-6-luna", 12), _endpoint(base_url, batch_mode=True,
                                                                     batch_max_requests=3),
                             tmp_path / "c.sqlite", progress=False)
        state = serve_openai_compatible.last_app.state.orca
    assert state.stats["control_faults"] >= 3
    assert [r.status for r in run.results] == ["ok"] * 12


def test_models_list_carries_shutdown_dates_and_key_is_required():
    import httpx

    emu = Emulation(require_api_key=True)
    with serve_openai_compatible({"gpt-6-luna": Recorder()}, emulate=emu) as base_url:
        assert httpx.get(f"{base_url}/models").status_code == 401
        data = httpx.get(f"{base_url}/models", headers={"Authorization": "Bearer k"}).json()["data"]
    dates = {m["id"]: m["shutdown_date"] for m in data}
    assert dates["gpt-6-luna"] is None and dates["gpt-4"] == "2026-10-23" and "gpt-4o" not in dates


def _augmentation_cfg(max_cost_usd):
    teacher = dict(price_input_usd_per_1k=1.0, price_output_usd_per_1k=0.0, max_tokens=8)
    return AugmentationParams(profile="t", student_model="x", base_model_label="x", llama_tokenizer="x",
                              stage1=TeacherModelParams(label="stage 1 stand-in", model="m1", **teacher),
                              stage2=TeacherModelParams(label="stage 2 stand-in", model="m2", **teacher),
                              max_cost_usd=max_cost_usd)


def test_max_cost_caps_both_stages_together(tmp_path):
    cfg = _augmentation_cfg(max_cost_usd=6.0)
    backend = Recorder(prompt_tokens=1000)         # $1 per answered request at $1 per 1k prompt tokens
    requests = {s: _requests(m, 5, dialect="chat") for s, m in (("stage1", "m1"), ("stage2", "m2"))}
    with serve_openai_compatible({"m1": backend, "m2": backend}) as base_url:
        endpoint = _endpoint(base_url, concurrency=1)
        runs = run_stages(cfg, requests, {"stage1": endpoint, "stage2": endpoint}, tmp_path / "c.sqlite",
                          progress=False)
    spent = sum(r.stats["spent_usd"] for r in runs.values())
    assert runs["stage1"].status_counts()["ok"] == 5
    assert spent <= cfg.max_cost_usd + 1e-9, f"the notebook spent ${spent} over max_cost_usd={cfg.max_cost_usd}"
    assert runs["stage2"].status_counts()["not_sent"] >= 4


def test_a_stage_without_usable_responses_stops_the_notebook(tmp_path):
    class Empty(Recorder):
        def complete(self, messages, max_tokens, temperature, stop):
            return Completion("", "stop", 4, 0)

    cfg = _augmentation_cfg(max_cost_usd=100.0)
    requests = {s: _requests(m, 2, dialect="chat") for s, m in (("stage1", "m1"), ("stage2", "m2"))}
    with serve_openai_compatible({"m1": Empty(), "m2": Recorder()}) as base_url:
        endpoint = _endpoint(base_url)
        with pytest.raises(RuntimeError, match=r"02_augmentation.stage1: no answer from 'm1'"):
            run_stages(cfg, requests, {"stage1": endpoint, "stage2": endpoint}, tmp_path / "c.sqlite",
                       progress=False)
