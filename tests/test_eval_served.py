"""Evaluation at scale: per-item records that survive an interruption, and the served (OpenAI-compatible) path."""
from __future__ import annotations

import pytest

from orca_utils.evaluation.engine import evaluate
from orca_utils.evaluation.tasks import EvalItem

SPEC = "random-llama:L2-H64:shared:tokenizers/llama"


def _items(n=7):
    return {"t": [EvalItem(benchmark="bbh", task="t", id=f"t-{i}", prompt=f"Is {i} even? Options: (A) yes (B) no", target="A",
                           kind="choice", options=["yes", "no"]) for i in range(n)]}


class Scripted:
    """Answers '(A)' for even numbers, counts prompts, and can die after `fail_after` prompts."""

    label = "scripted"

    def __init__(self, fail_after=None):
        self.seen, self.fail_after = [], fail_after

    def generate(self, prompts, max_new_tokens=8, stop=None, system_message=None):
        out = []
        for p in prompts:
            if self.fail_after is not None and len(self.seen) >= self.fail_after:
                raise KeyboardInterrupt("killed mid-evaluation")
            self.seen.append(p)
            out.append("So the answer is (A)." if int(p.split()[1]) % 2 == 0 else "So the answer is (B).")
        return out


def test_an_interrupted_evaluation_resumes_from_its_saved_records(tmp_path):
    items = _items()
    full = evaluate(Scripted(), items, records_dir=tmp_path / "full", chunk_items=2)
    dying = Scripted(fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        evaluate(dying, items, records_dir=tmp_path / "r", chunk_items=2)
    assert len(list((tmp_path / "r").glob("part-*.parquet"))) == 2        # two chunks of 2 were saved
    again = Scripted()
    resumed = evaluate(again, items, records_dir=tmp_path / "r", chunk_items=2)
    assert len(again.seen) == 3, "only the 3 items never scored are generated again"
    cols = ["id", "prediction", "correct", "published_correct"]
    assert resumed.records[cols].equals(full.records[cols]) and resumed.macro == full.macro


@pytest.mark.slow
def test_served_model_prompts_and_answers_like_the_in_process_model():
    from orca_utils.generate import HFBackend, OpenAIBackend
    from orca_utils.serving import served_model

    local = HFBackend(SPEC, batch_size=1, device="cpu", progress=False)
    prompts = ["Is 4 even? Options: (A) yes (B) no", "Name a colour."]
    expected = local.generate_completions(prompts, max_new_tokens=6, stop=[], system_message="Answer briefly.")
    with served_model(SPEC, "transformers", device="cpu") as server:
        remote = OpenAIBackend(server.base_url, server.model, label="served", concurrency=1, progress=False)
        got = remote.generate_completions(prompts, max_new_tokens=6, stop=[], system_message="Answer briefly.")
        scored = evaluate(remote, _items(2), max_new_tokens=6)
    # The server rendered the same prompt (the training format) and generated the same greedy tokens.
    assert [c.prompt_tokens for c in got] == [c.prompt_tokens for c in expected]
    assert [c.text for c in got] == [c.text for c in expected]
    assert len(scored.records) == 2


def test_resident_backends_keep_one_model_loaded():
    import weakref

    from orca_utils.safety import ResidentBackends

    class Model:
        pass

    alive = []

    def make(label, spec):
        model = Model()
        alive.append(weakref.ref(model))
        return model

    backends = ResidentBackends([("base", "a"), ("student", "b")], make)
    for _ in range(2):                                  # two tasks, each walking both models
        for label, backend in backends.items():
            assert sum(r() is not None for r in alive) == 1, "two models resident at once"
            assert backend is backends[label]            # reading the current one again does not reload
    assert backends.loads == 4 and list(backends) == ["base", "student"]


@pytest.mark.slow
def test_open_ended_candidate_served_answers_like_in_process():
    """07's candidate through `transformers serve` (the paper profile: vLLM) gives the in-process answers."""
    import pandas as pd

    from orca_utils.config import load_profile
    from orca_utils.open_ended import candidate_answers

    prompts = pd.DataFrame({"id": ["a", "b"], "set": "vicuna_bench", "category": "x",
                            "prompt": ["Name a colour.", "What is 2 + 2?"]})
    answers = {}
    for serve in ("none", "transformers"):
        cfg = load_profile("smoke", overrides=[f"07_open_ended.serve={serve}", "07_open_ended.candidate=base",
                                               f"common.student_model={SPEC}", "07_open_ended.candidate_batch_size=2",
                                               "07_open_ended.candidate_max_new_tokens=6"])["07_open_ended"]
        got = candidate_answers(prompts, None, cfg)
        assert got.spec == SPEC and list(got.answers["id"]) == ["a", "b"]
        assert bool(got.loaded) == (serve == "none"), "a served candidate leaves no model in this process"
        answers[serve] = got
    assert answers["transformers"].engine == "served by transformers"
    assert list(answers["transformers"].answers["answer"]) == list(answers["none"].answers["answer"])
    assert list(answers["transformers"].answers["n_tokens"]) == list(answers["none"].answers["n_tokens"])


class _Answerer:
    """A stand-in API model behind the local server: always answers '(A)', counting the requests it served."""

    def __init__(self):
        self.calls = 0

    def complete(self, messages, max_tokens, temperature, stop):
        from orca_utils.teacher.protocol import Completion

        self.calls += 1
        return Completion("So the answer is (A).", "stop", 10, 6)


def test_api_models_go_through_the_teacher_client_cached_and_resumable(tmp_path):
    """05/06's `api_models`: answers cached (a rerun sends nothing), per-item records written, cost capped."""
    from orca_utils.evaluation.zero_shot import run_zero_shot
    from orca_utils.runs import setup_notebook
    from orca_utils.teacher import serve_offline
    from orca_utils.schemas import TeacherEndpointParams

    model = _Answerer()
    with serve_offline({"api-stand-in": model}, TeacherEndpointParams()) as local:
        overrides = (f"06_bbh.api_models=[api-stand-in];06_bbh.api_base_url={local.base_url};"
                     "06_bbh.tasks=[boolean_expressions, navigate];06_bbh.n_items_per_task=2;"
                     "06_bbh.eval_base_model=false;06_bbh.compare_system_message_ids=[]")
        cfg, run = setup_notebook("06_bbh", "smoke", run_dir=str(tmp_path), overrides=overrides, quiet=True)
        first = run_zero_shot(cfg, run, "bbh")
        sent = model.calls
        again = run_zero_shot(cfg, run, "bbh")
    assert sent == 4 and model.calls == sent, "the rerun was answered from the records and the cache"
    result = first.results["api-stand-in"]
    assert len(result.records) == 4 and again.results["api-stand-in"].records["prediction"].tolist() == \
        result.records["prediction"].tolist()
    assert (tmp_path / "06_bbh" / "api_response_cache.sqlite").exists()
    assert list((tmp_path / "06_bbh" / "records").glob("api_api_stand_in-api-*/part-*.parquet"))


def test_teacher_client_backend_stops_at_its_cost_cap(tmp_path):
    from orca_utils.generate import TeacherClientBackend
    from orca_utils.schemas import TeacherEndpointParams, TeacherModelParams
    from orca_utils.teacher import CostLimitError, serve_offline

    priced = TeacherModelParams(label="priced", model="api-stand-in", price_input_usd_per_1k=100.0,
                                price_output_usd_per_1k=100.0)
    with serve_offline({"api-stand-in": _Answerer()}, TeacherEndpointParams()) as local:
        backend = TeacherClientBackend(priced, local, tmp_path / "c.sqlite", max_cost_usd=0.01, progress=False)
        with pytest.raises((CostLimitError, RuntimeError), match="max_cost_usd"):
            backend.generate(["Is 4 even?"] * 3, max_new_tokens=8)
