"""Evaluation at scale: per-item records that survive an interruption, and the served (OpenAI-compatible) path."""
from __future__ import annotations

import json

import pytest

from orca_utils.evaluation.engine import evaluate
from orca_utils.evaluation.tasks import EvalItem

SPEC = "random-llama:L2-H64:shared:tokenizers/llama"


def _items(n=7):
    return {"t": [EvalItem(benchmark="bbh", task="t", id=f"t-{i}", prompt=f"Is {i} even? Options: (A) yes (B) no",
                           target="A", kind="choice", options=["yes", "no"]) for i in range(n)]}


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


# ---- what a server is started with: hub ids, revisions, template-less models (no GPU, no weights) ------------------
COMMIT = "8d2f9e0c4f1b7a3e5d6c9b0a1f2e3d4c5b6a7980"


def _hub_cache(root, repo, files: dict, commit=COMMIT, ref="main"):
    """A model in the HF hub cache's own layout: models--<owner>--<name>/{refs/<ref>, snapshots/<commit>/...}."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (snap / name).write_text(text)
    return snap


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "orca-cache"))
    return root


def _flag(cmd, name):
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_vllm_serves_a_hub_id_by_id_with_its_revision(hub_cache):
    """The paper's base model: `huggyllama/llama-13b@<commit>` is served by id (no local directory needed)."""
    from orca_utils.serving import serve_target, server_command

    _hub_cache(hub_cache, "org/chat-model", {"tokenizer_config.json": json.dumps({"chat_template": "{{ x }}"})})
    target = serve_target(f"org/chat-model@{COMMIT}", "vllm", offline=True)
    cmd = server_command("vllm", target, 8123, device="cuda", dtype="bfloat16")
    assert cmd[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"] and _flag(cmd, "--model") == \
        "org/chat-model"
    assert _flag(cmd, "--revision") == COMMIT and _flag(cmd, "--tokenizer-revision") == COMMIT
    assert "--chat-template" not in cmd, "the model's own template is used"
    assert _flag(cmd, "--served-model-name") == "student" and _flag(cmd, "--port") == "8123"
    assert _flag(cmd, "--host") == "127.0.0.1" and _flag(cmd, "--dtype") == "bfloat16"
    # transformers serve takes `<id>@<revision>` and requests must name it so
    from orca_utils.backends.served import request_name

    tf = serve_target(f"org/chat-model@{COMMIT}", "transformers", offline=True)
    assert tf.model == f"org/chat-model@{COMMIT}" and request_name("transformers", tf, "student") == tf.model


def test_a_template_less_hub_model_gets_the_plain_template_file(hub_cache, monkeypatch):
    """huggyllama/llama-13b has no chat template: vLLM gets `--chat-template <file>` holding ORCA_PLAIN_TEMPLATE,
    decided from tokenizer_config.json alone (online: only that file and chat_template.jinja are asked for)."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    from orca_utils.serving import serve_target, server_command
    from orca_utils.tokens import ORCA_PLAIN_TEMPLATE

    snap = _hub_cache(hub_cache, "huggyllama/llama-13b", {"tokenizer_config.json": json.dumps({"bos_token": "<s>"})})
    asked = []

    def download(repo, filename, revision=None, **kw):
        asked.append((repo, filename, revision))
        if not (snap / filename).exists():
            raise EntryNotFoundError(f"{filename} not in {repo}")
        return str(snap / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    target = serve_target("huggyllama/llama-13b", "vllm", offline=False)
    cmd = server_command("vllm", target, 8000)
    assert _flag(cmd, "--model") == "huggyllama/llama-13b" and "--revision" not in cmd
    template = _flag(cmd, "--chat-template")
    assert template and open(template).read() == ORCA_PLAIN_TEMPLATE
    assert {f for _, f, _ in asked} == {"tokenizer_config.json", "chat_template.jinja"}, "no weights downloaded"
    assert "no chat template" in target.note
    # offline with nothing cached: assumed template-less, and said so
    offline = serve_target("someone/uncached-model@v1", "vllm", offline=True)
    assert offline.chat_template is not None and offline.revision == "v1" and "assumed template-less" in offline.note
    assert _flag(server_command("vllm", offline, 8000), "--tokenizer-revision") == "v1"


def test_a_local_directory_is_still_served(tmp_path, monkeypatch):
    """A template-less directory: vLLM gets the template file beside the untouched directory; transformers serve
    (no --chat-template option) gets the view whose tokenizer config carries the template. A directory with its
    own template is served as is."""
    from orca_utils.serving import serve_target, server_command
    from orca_utils.tokens import ORCA_PLAIN_TEMPLATE

    monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "orca-cache"))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    (plain / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    vllm = server_command("vllm", serve_target(str(plain), "vllm"), 8000)
    assert _flag(vllm, "--model") == str(plain) and open(_flag(vllm, "--chat-template")).read() == ORCA_PLAIN_TEMPLATE
    assert "--revision" not in vllm
    view = serve_target(str(plain), "transformers")
    tf = server_command("transformers", view, 8000, device="cpu")
    assert tf[3:5] == ["serve", view.model] and view.model != str(plain)
    assert json.loads(open(f"{view.model}/tokenizer_config.json").read())["chat_template"] == ORCA_PLAIN_TEMPLATE
    chat = tmp_path / "chat"
    chat.mkdir()
    (chat / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    for engine in ("vllm", "transformers"):
        target = serve_target(str(chat), engine)
        assert target.model == str(chat) and target.chat_template is None
    from orca_utils.serving import ServingError

    with pytest.raises(ServingError, match="cannot be served"):
        serve_target(str(tmp_path / "missing"), "vllm")
