"""`validate --deep` (orca_utils.preflight): each problem is one line naming the param to change; exit 2 on any.

Endpoints are the local server in OpenAI emulation mode; the hub is a fake `HfApi`; nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import datetime as dt
import http.server
import json
import shutil
import socket
import threading

import pytest
import yaml

from orca_utils.cli import main
from orca_utils.config import load_profile
from orca_utils.preflight import (
    GB,
    Options,
    Problem,
    inference_memory,
    model_dims,
    model_findings,
    run_preflight,
    training_memory,
)

TODAY = dt.date(2026, 11, 30)
KEY_ENV = "ORCA_PREFLIGHT_TEST_KEY"
KEY_VALUE = "test-key-value-never-printed"
MISSING_KEY = (f"02_augmentation.endpoint.api_key_env: environment variable {KEY_ENV} is not set: export the API "
               f"key there (params only hold the variable's name)")

LLAMA_13B = {"model_type": "llama", "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 13824,
             "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000,
             "max_position_embeddings": 2048, "tie_word_embeddings": False}
SMOLLM2_135M = {"model_type": "llama", "hidden_act": "silu", "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
                "vocab_size": 49152, "max_position_embeddings": 8192, "tie_word_embeddings": True}


# ---- helpers ---------------------------------------------------------------------------------------------------
def write_profile(tmp_path, repo, **blocks) -> str:
    """`t.yaml` in tmp_path: the smoke profile (copied beside it) with `blocks` merged over it."""
    shutil.copy(repo / "params" / "smoke.yaml", tmp_path / "smoke.yaml")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"extends": "smoke", **blocks}, sort_keys=False))
    return "t"


def validate(tmp_path, capsys) -> tuple[int, list[str]]:
    rc = main(["validate", "--profile", "t", "--params-dir", str(tmp_path), "--deep"])
    return rc, capsys.readouterr().out.splitlines()


def starting(lines: list[str], prefix: str) -> list[str]:
    return [line for line in lines if line.startswith(prefix)]


def problems(report) -> list[str]:
    return [str(f) for f in report.findings if isinstance(f, Problem)]


class Silent:
    def complete(self, messages, max_tokens, temperature, stop):
        from orca_utils.teacher.local_server import Completion

        return Completion(text="")


@pytest.fixture
def emulator():
    """An OpenAI-emulating endpoint serving gpt-6-luna, requiring a bearer key."""
    from orca_utils.teacher.local_server import Emulation, serve_openai_compatible

    with serve_openai_compatible({"gpt-6-luna": Silent()},
                                 emulate=Emulation(today=TODAY, require_api_key=True)) as base_url:
        yield base_url


def remote_stage2(base_url: str, model: str) -> dict:
    return {"02_augmentation": {
        "stage2": {"label": "teacher", "model": model, "offline_backend": "none", "max_tokens": 64},
        "endpoint": {"base_url": base_url, "api_key_env": KEY_ENV}}}


# ---- the arithmetic --------------------------------------------------------------------------------------------
def test_training_memory_llama13b_by_hand():
    est = training_memory(13.0e9, 40, 5120, 32000, weight_bytes=2, batch=1, seq_len=2048, checkpointing=True)
    assert est.parts["weights"] == 26e9                       # 13.0e9 params x 2 bytes (bf16)
    assert est.parts["grads"] == 26e9
    assert est.parts["AdamW states"] == 52e9                  # two moments in bf16
    assert est.parts["activations"] == 1 * 2048 * 5120 * 2 * (40 + 17)   # 1.195e9: inputs of 40 layers + 1 redone
    assert est.parts["logits"] == 2 * 1 * 2048 * 32000 * 4
    sharded = training_memory(13.0e9, 40, 5120, 32000, weight_bytes=2, batch=1, seq_len=2048, checkpointing=True,
                              shards=(8, 8, 8))
    assert sharded.parts["weights"] == 3.25e9 and sharded.parts["AdamW states"] == 6.5e9
    assert sharded.parts["activations"] == est.parts["activations"]       # activations are per device anyway


def test_training_memory_without_checkpointing_by_hand():
    est = training_memory(1e9, 10, 1000, 1000, weight_bytes=4, batch=2, seq_len=100, checkpointing=False)
    assert est.parts == {"weights": 4e9, "grads": 4e9, "AdamW states": 8e9,
                         "activations": 2 * 100 * 1000 * 4 * 17 * 10, "logits": 2 * 2 * 100 * 1000 * 4}
    assert est.total == pytest.approx(16e9 + 136e6 + 1.6e6)


def test_inference_memory_kv_cache_by_hand():
    est = inference_memory(13.0e9, 40, 5120, weight_bytes=2, batch=1, seq_len=1)
    assert est.parts == {"weights": 26e9, "KV cache": 819_200}           # 0.82 MB per token (LLaMA-13B, bf16)
    assert inference_memory(13.0e9, 40, 5120, weight_bytes=2, batch=32, seq_len=1536).parts["KV cache"] == \
        pytest.approx(40.27e9, rel=1e-3)


def test_model_dims_from_config():
    llama = model_dims(LLAMA_13B)
    assert llama.n_params == 13_015_864_320 and llama.kv_dim == 5120 and llama.max_positions == 2048
    smol = model_dims(SMOLLM2_135M)
    assert smol.n_params == 134_515_008 and smol.kv_dim == 192          # grouped-query attention: 3 KV heads
    with pytest.raises(ValueError, match="lacks vocab_size"):
        model_dims({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1})


def test_model_findings_by_shutdown_date():
    listed = {"gpt-6-luna": None, "gpt-5": "2026-12-11", "gpt-4": "2026-10-23"}
    assert model_findings("b.m", "gpt-6-luna", listed, "here", TODAY) == []
    [warn] = model_findings("b.m", "gpt-5", listed, "here", TODAY)
    assert str(warn).startswith("warning: b.m: gpt-5 shuts down on 2026-12-11, in 11 days") and warn.level != "problem"
    [gone] = model_findings("b.m", "gpt-4", listed, "here", TODAY)
    assert gone.level == "problem" and "retired on 2026-10-23" in str(gone) and "e.g. gpt-6-luna" in str(gone)
    [unlisted] = model_findings("b.m", "gpt-4-0314", {"gpt-6-luna": None}, "here", TODAY)
    assert "retired on 2024-06-13" in str(unlisted)                     # known to the registry only


# ---- endpoints (emulated OpenAI) -------------------------------------------------------------------------------
def test_retired_model_is_one_line_and_exit_2(tmp_path, repo, capsys, emulator, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    write_profile(tmp_path, repo, **remote_stage2(emulator, "gpt-4"))
    rc, lines = validate(tmp_path, capsys)
    assert rc == 2
    [line] = starting(lines, "02_augmentation.")
    assert line.startswith("02_augmentation.stage2.model: gpt-4 was retired on 2026-10-23")
    assert not any(KEY_VALUE in line for line in lines)


def test_unknown_model_is_one_line_and_exit_2(tmp_path, repo, capsys, emulator, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    write_profile(tmp_path, repo, **remote_stage2(emulator, "gpt-7-nova"))
    rc, lines = validate(tmp_path, capsys)
    assert rc == 2
    [line] = starting(lines, "02_augmentation.")
    assert line.startswith("02_augmentation.stage2.model: gpt-7-nova is not listed") and "unknown model" in line


def test_missing_key_variable_is_one_line_and_exit_2(tmp_path, repo, capsys, emulator, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    write_profile(tmp_path, repo, **remote_stage2(emulator, "gpt-6-luna"))
    rc, lines = validate(tmp_path, capsys)
    assert rc == 2
    assert starting(lines, "02_augmentation.") == [MISSING_KEY]


def test_good_model_on_a_keyed_endpoint_passes(tmp_path, repo, capsys, emulator, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    write_profile(tmp_path, repo, **remote_stage2(emulator, "gpt-6-luna"))
    rc, lines = validate(tmp_path, capsys)
    assert rc == 0 and lines[-1].endswith("ready")


def test_a_model_with_its_own_base_url_is_checked_there(tmp_path, repo, emulator, monkeypatch):
    from orca_utils.schemas import TeacherModelParams

    if "base_url" not in TeacherModelParams.model_fields:
        pytest.skip("teachers have no base_url of their own in this checkout")
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    blocks = remote_stage2("http://127.0.0.1:9/v1", "gpt-7-nova")       # the block's URL: nothing listens there
    blocks["02_augmentation"]["stage2"]["base_url"] = emulator
    write_profile(tmp_path, repo, **blocks)
    report = run_preflight(load_profile("t", params_dir=tmp_path), Options(today=TODAY, gpus=[]))
    [line] = problems(report)
    assert line.startswith(f"02_augmentation.stage2.model: gpt-7-nova is not listed by {emulator}/models")


def test_remote_endpoint_without_key_is_not_contacted(tmp_path, repo, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    write_profile(tmp_path, repo, **remote_stage2("https://api.example.invalid/v1", "gpt-6-luna"))
    report = run_preflight(load_profile("t", params_dir=tmp_path), Options(today=TODAY, gpus=[]))
    assert problems(report) == [MISSING_KEY]


def test_emulated_stand_ins_are_served_and_checked(tmp_path, repo):
    stand_in = {"label": "stand-in", "offline_backend": "local_llm", "max_tokens": 8}
    write_profile(tmp_path, repo, **{"07_open_ended": {
        "references": [{**stand_in, "model": "gpt-6-luna"}], "judge": {**stand_in, "model": "gpt-4"},
        "endpoint": {"emulate_openai": True}}})
    report = run_preflight(load_profile("t", params_dir=tmp_path), Options(today=TODAY, gpus=[]))
    assert problems(report) == [("07_open_ended.judge.model: gpt-4 was retired on 2026-10-23 (shutdown_date listed "
                                 "by the emulated endpoint's /models): choose a current model (e.g. gpt-6-luna)")]
    assert any("checked against the emulated endpoint" in line for line in report.lines())


# ---- accelerate ------------------------------------------------------------------------------------------------
def test_accelerate_num_processes_mismatch_is_one_line(tmp_path, repo, capsys):
    config = tmp_path / "acc.yaml"
    config.write_text("distributed_type: FSDP\nnum_machines: 2\nnum_processes: 8\n")
    write_profile(tmp_path, repo, **{"04_training": {"launcher": "accelerate", "accelerate_config": str(config),
                                                     "num_processes": 8}})
    rc, lines = validate(tmp_path, capsys)
    assert rc == 2
    [line] = starting(lines, "04_training.num_processes")
    assert "8 processes per node" in line and "num_processes: 8 over num_machines: 2 (4 per node)" in line


def test_accelerate_config_missing_and_matching(tmp_path, repo):
    write_profile(tmp_path, repo, **{"04_training": {"launcher": "accelerate", "accelerate_config": "nope.yaml"}})
    report = run_preflight(load_profile("t", params_dir=tmp_path), Options(today=TODAY, gpus=[]))
    assert [p.split(":")[0] for p in problems(report)] == ["04_training.accelerate_config"]
    ok = load_profile("paper", overrides=["offline=true", "device=cpu"])
    from orca_utils.preflight import check_accelerate

    assert [f.level for f in check_accelerate(ok, Options())] == ["note"]      # fsdp_1node_8gpu: 8 == 8 x 1


# ---- model specs and the hub -----------------------------------------------------------------------------------
class FakeHub:
    """`HfApi` stand-in: model_info / dataset_info raise what `behaviour[repo]` says."""

    def __init__(self, behaviour: dict):
        self.behaviour, self.asked = behaviour, []

    def _info(self, repo, revision=None):
        import httpx2
        from huggingface_hub import errors

        self.asked.append((repo, revision))
        kind = self.behaviour.get(repo, "ok")
        response = httpx2.Response(404, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{repo}"))
        if kind == "missing":
            raise errors.RepositoryNotFoundError("Repository Not Found", response=response)
        if kind == "no-revision":
            raise errors.RevisionNotFoundError("Revision Not Found", response=response)
        if kind == "down":
            raise httpx2.ConnectError("Name or service not known")
        return type("Info", (), {"gated": "manual" if kind == "gated" else False})()

    model_info = dataset_info = _info

    def auth_check(self, repo, repo_type=None):
        raise PermissionError("no access to a gated repo")


def hub_report(tmp_path, repo, monkeypatch, behaviour: dict, **blocks):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    write_profile(tmp_path, repo, common={"offline": False, "llama_tokenizer": "meta/llama-tok"}, **blocks)
    hub = FakeHub(behaviour)
    report = run_preflight(load_profile("t", params_dir=tmp_path), Options(today=TODAY, gpus=[], hub_api=hub))
    return report, hub


@pytest.mark.parametrize("behaviour, expected", [
    ("missing", "common.llama_tokenizer: meta/llama-tok: no such model repo on the hub"),
    ("gated", "common.llama_tokenizer: meta/llama-tok is gated and your hub token has no access"),
    ("down", "common.offline: the Hugging Face hub could not be reached (ConnectError; 2 repo(s) not checked)"),
])
def test_hub_problems_are_one_line(tmp_path, repo, monkeypatch, behaviour, expected):
    report, hub = hub_report(tmp_path, repo, monkeypatch, {"meta/llama-tok": behaviour})
    [line] = [p for p in problems(report) if not p.startswith("common.data_dir")]
    assert line.startswith(expected), line
    assert ("tomh/toxigen_roberta", "main") in hub.asked or behaviour == "down"


def test_hub_missing_revision_names_the_revision_param(tmp_path, repo, monkeypatch):
    report, _ = hub_report(tmp_path, repo, monkeypatch, {"tomh/toxigen_roberta": "no-revision"},
                           **{"08_safety": {"toxigen": {"classifier_revision": "v9"}}})
    [line] = [p for p in problems(report) if not p.startswith("common.data_dir")]
    assert line.startswith("08_safety.toxigen.classifier_revision: tomh/toxigen_roberta has no revision 'v9'")


def test_offline_skips_the_hub_with_one_note(tmp_path, repo):
    write_profile(tmp_path, repo)
    report = run_preflight(load_profile("t", params_dir=tmp_path), Options(today=TODAY, gpus=[], hub_api=object()))
    assert report.ok
    assert [line for line in report.lines() if "hub checks skipped" in line] == [
        "note: common.offline: hub checks skipped (offline): 1 repo(s) not checked (tomh/toxigen_roberta)"]


def test_missing_local_spec_is_one_line(tmp_path, repo):
    write_profile(tmp_path, repo, common={"student_model": "./no/such/model"})
    report = run_preflight(load_profile("t", params_dir=tmp_path), Options(today=TODAY, gpus=[]))
    assert problems(report) == [
        ("common.student_model: model spec './no/such/model': no such file or directory: give a hub id, a "
         "directory, a .gguf file, pkg:<package>/<file> or shared:<path> that exists")]


# ---- GPU memory ------------------------------------------------------------------------------------------------
def gpu_profile(tmp_path, repo, **blocks):
    student = tmp_path / "llama13b"
    student.mkdir()
    (student / "config.json").write_text(json.dumps(LLAMA_13B))
    write_profile(tmp_path, repo, common={"device": "cuda", "student_model": str(student)}, **blocks)
    return load_profile("t", params_dir=tmp_path)


def test_cuda_without_a_device_is_one_line(tmp_path, repo):
    report = run_preflight(gpu_profile(tmp_path, repo), Options(today=TODAY, gpus=[]))
    assert problems(report) == [("common.device: device: cuda, but no CUDA device is visible here: run on a "
                                 "GPU machine, or set device: cpu")]


def test_memory_compared_with_free_gpu_memory(tmp_path, repo):
    cfgs = gpu_profile(tmp_path, repo, **{"04_training": {"precision": "bf16", "per_device_batch_size": 1}})
    small = run_preflight(cfgs, Options(today=TODAY, gpus=[(40 * 1_000_000_000, 80 * 1_000_000_000)]))
    training = [p for p in problems(small) if p.startswith("04_training.")]
    assert len(training) == 1 and training[0].startswith("04_training.per_device_batch_size: needs ~")
    assert "but a device has only 40.0 GB free" in training[0]
    big = run_preflight(cfgs, Options(today=TODAY, gpus=[(int(200 * GB), int(200 * GB))]))
    assert not [p for p in problems(big) if p.startswith(("04_", "05_", "06_", "07_", "08_"))]
    assert any(line.startswith("note: 05_agieval: memory estimate") and "fits" in line for line in big.lines())


# ---- URL sources -----------------------------------------------------------------------------------------------
def test_dataset_url_source_answering_404_is_one_line(tmp_path, repo, monkeypatch):
    from orca_utils import data

    if not any(getattr(s, "github", None) for s in data.DATASETS.values()):
        pytest.skip("orca_utils.data has no URL sources in this checkout")
    handler = type("H", (http.server.BaseHTTPRequestHandler,), {
        "do_HEAD": lambda self: (self.send_response(200 if "/bbh/" not in self.path else 404), self.end_headers()),
        "log_message": lambda self, *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ORCA_GITHUB_RAW_BASE", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.delenv("ORCA_DATA_DIR", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(data, "SHARED_DIR", tmp_path / "no-shared")
        write_profile(tmp_path, repo, common={"offline": False})
        cfgs = load_profile("t", params_dir=tmp_path)
        from orca_utils.preflight import check_url_sources

        found = [str(f) for f in check_url_sources(cfgs, Options(today=TODAY))]
    finally:
        server.shutdown()
    [line] = [f for f in found if "bbh" in f]
    assert line.startswith("common.data_dir: dataset bbh: http://127.0.0.1:") and "answered HTTP 404" in line
    assert len(found) == 1                      # niv2 has no URL source: left to the notebook


def test_offline_dataset_without_local_copy_is_a_problem(tmp_path, repo, monkeypatch):
    from orca_utils import data
    from orca_utils.preflight import check_url_sources

    monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ORCA_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "SHARED_DIR", tmp_path / "no-shared")
    write_profile(tmp_path, repo, **{"01_sampling": {"contamination_eval_sets": ["bbh"]}})
    cfgs = {k: v for k, v in load_profile("t", params_dir=tmp_path).items() if k == "01_sampling"}
    found = [str(f) for f in check_url_sources(cfgs, Options(today=TODAY))]
    assert [f.split(" (")[0] for f in found] == [f"common.data_dir: dataset {n}" for n in
                                              ("flan_cot", "niv2", "flan", "bbh")]


# ---- the command -----------------------------------------------------------------------------------------------
def test_validate_without_deep_stays_the_schema_check(capsys, monkeypatch):
    from orca_utils import preflight

    monkeypatch.setattr(preflight, "run_preflight", lambda *a, **k: pytest.fail("--deep was not asked"))
    assert main(["validate", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.splitlines() == ["params/smoke.yaml: ok (10 notebook blocks)"]


def test_smoke_profile_is_ready(capsys):
    assert main(["validate", "--profile", "smoke", "--deep"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("preflight: 0 problem(s)") and lines[-1].endswith("ready")


def test_rehearsal_profile_is_ready(repo, capsys):
    if not (repo / "params" / "rehearsal.yaml").exists():
        pytest.skip("params/rehearsal.yaml not in this checkout")
    assert main(["validate", "--profile", "rehearsal", "--deep"]) == 0, capsys.readouterr().out


def test_serving_engine_is_checked(monkeypatch):
    import importlib.util

    from orca_utils.config import load_profile
    from orca_utils.preflight import Options, check_serving

    cfgs = load_profile("rehearsal", overrides=["05_agieval.serve=vllm", "06_bbh.mode=loglikelihood"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    lines = [f"{f.param}: {f.message}" for f in check_serving(cfgs, Options())]
    assert any(line.startswith("05_agieval.serve: vllm is not installed") for line in lines), lines
    assert any(line.startswith("06_bbh.serve: transformers: a served model answers chat requests only")
               for line in lines), lines


def test_serving_names_an_unservable_spec_and_prints_each_command(tmp_path, monkeypatch):
    """Every model 05/06/07 will serve: a missing directory is a problem naming the param; a hub id is served by
    id (offline: template assumed absent, the plain template passed); 04's student is the folder 04 will write."""
    from orca_utils.preflight import check_serving

    monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "cache"))
    cfgs = load_profile("rehearsal", overrides=["common.student_model=/nonexistent/llama-13b",
                                                "05_agieval.eval_base_model=true"])
    lines = [str(f) for f in check_serving(cfgs, Options(hub_unreachable=True))]
    assert any(line.startswith("common.student_model: transformers cannot serve") and "05_agieval" in line
               and "/nonexistent/llama-13b" in line for line in lines), lines
    cfgs = load_profile("rehearsal", overrides=["common.student_model=huggyllama/llama-13b@8d2f9e0",
                                                "05_agieval.serve=vllm", "05_agieval.eval_base_model=true"])
    notes = [line for line in map(str, check_serving(cfgs, Options(hub_unreachable=True)))
             if line.startswith("note: 05_agieval.serve: vllm serves")]
    base = next(line for line in notes if "huggyllama/llama-13b@8d2f9e0;" in line)
    assert "--model huggyllama/llama-13b --revision 8d2f9e0 --tokenizer-revision 8d2f9e0 --chat-template" in base
    assert "assumed template-less" in base and "--port <port>" in base
    assert any("04_training's student" in line and "/04_training/student" in line for line in notes), notes


def test_open_weights_teacher_servers_in_preflight():
    """Each 127.0.0.1 teacher endpoint that does not answer (or serves another model) names the command that starts
    its server; a placement over a GPU's memory is a problem naming the server block."""
    from orca_utils.preflight import check_endpoints, check_serving
    from orca_utils.teacher.local_server import serve_openai_compatible

    with serve_openai_compatible({"some-other-model": Silent()}) as url:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free = sock.getsockname()[1]
        cfgs = load_profile("paper_open_weights", overrides=[
            f"02_augmentation.stage1.base_url=http://127.0.0.1:{free}/v1", f"02_augmentation.stage2.base_url={url}"])
        lines = [str(f) for f in check_endpoints(cfgs, Options(today=TODAY, timeout_s=5))]
    [down] = starting(lines, "02_augmentation.stage1.base_url: could not reach")
    assert down.endswith(f"start its server: `python -m orca_utils serve-teachers --profile paper_open_weights`, which "
                         f"runs `CUDA_VISIBLE_DEVICES=0 vllm serve openai/gpt-oss-20b --host 127.0.0.1 --port {free} "
                         f"--served-model-name openai/gpt-oss-20b --tensor-parallel-size 1 "
                         f"--gpu-memory-utilization 0.9`"), down
    [wrong] = starting(lines, "02_augmentation.stage2.model: openai/gpt-oss-120b is not listed by")
    assert "must serve openai/gpt-oss-120b" in wrong and "CUDA_VISIBLE_DEVICES=1,2 vllm serve" in wrong, wrong
    cfgs = load_profile("paper_open_weights", overrides=["02_augmentation.stage2.server={gpus: [0]}",
                                                         "05_agieval.serve=none", "06_bbh.serve=none",
                                                         "07_open_ended.serve=none"])
    lines = [str(f) for f in check_serving(cfgs, Options(hub_unreachable=True))]
    assert starting(lines, "02_augmentation.stage2.server: GPU 0 is given to openai/gpt-oss-20b"), lines


# ---- mixed precision and the paper's student offline ---------------------------------------------------------------
def test_training_memory_mixed_bf16_keeps_fp32_master_weights_by_hand():
    """FSDP / ZeRO-3 under `mixed_precision: bf16`: 16 bytes per parameter of sharded state, not 8."""
    est = training_memory(13.0e9, 40, 5120, 32000, weight_bytes=2, batch=1, seq_len=2048, checkpointing=True,
                          shards=(8, 8, 8), fp32_master=True)
    assert est.parts["weights (fp32 master)"] == 13.0e9 * 4 / 8               # 6.5 GB
    assert est.parts["grads (fp32)"] == 13.0e9 * 4 / 8
    assert est.parts["AdamW states (fp32)"] == 13.0e9 * 8 / 8                 # 13 GB
    assert est.parts["compute copy (bf16, 2 layers)"] == 2 * 13.0e9 / 40 * 2  # two gathered layers in bf16
    pure = training_memory(13.0e9, 40, 5120, 32000, weight_bytes=2, batch=1, seq_len=2048, checkpointing=True,
                           shards=(8, 8, 8))
    state = lambda e: sum(v for k, v in e.parts.items() if k.startswith(("weights", "grads", "AdamW")))
    assert state(est) == 2 * state(pure) == 26e9                              # the old estimate was half


def test_paper_student_estimated_offline_from_its_published_architecture(tmp_path, repo, monkeypatch):
    from orca_utils import preflight

    monkeypatch.setattr(preflight.memory, "_read_model_config", lambda spec, offline: (None, "not in the hub cache"))
    config, why = preflight.load_model_config("huggyllama/llama-13b", offline=True)
    assert config["hidden_size"] == 5120 and config["num_hidden_layers"] == 40 and "Touvron" in why
    assert model_dims(config).n_params == pytest.approx(13.016e9, rel=1e-3)
    write_profile(tmp_path, repo, common={"device": "cuda", "student_model": "huggyllama/llama-13b"},
                  **{"04_training": {"precision": "bf16", "launcher": "accelerate",
                                     "accelerate_config": "params/accelerate/fsdp_1node_8gpu.yaml",
                                     "num_processes": 8, "per_device_batch_size": 2}})
    cfgs = load_profile("t", params_dir=tmp_path)
    lines = [str(f) for f in preflight.check_memory(cfgs, Options(today=TODAY, gpus=[]))]
    training = [line for line in lines if line.startswith("note: 04_training: memory estimate")]
    assert training and "fp32 master" in training[0] and "published architecture" in training[0], lines
    assert not any("not estimated" in line for line in lines)


# ---- projections (orca_utils.projections) ------------------------------------------------------------------------
def test_projections_for_the_paper_profile_by_hand():
    from orca_utils.projections import augmentation_hours, stage_queries, training_gpu_hours

    cfgs = load_profile("paper")
    assert stage_queries(cfgs, "stage1") == 5_090_000 and stage_queries(cfgs, "stage2") == 1_000_000
    hours, line = augmentation_hours(cfgs, "stage1")
    ep = cfgs["02_augmentation"].endpoint
    windows = -(-5_090_000 * 250 // ep.batch_max_enqueued_tokens)       # prompt tokens count against the budget
    assert hours == windows * 6.0 and "estimate" not in line and "assumed" in line
    gpu_hours, line = training_gpu_hours(cfgs, 1, 13.0e9, 8)
    tokens = 5_090_000 * (250 + 300) * 4                                # samples x (prompt + completion) x epochs
    assert gpu_hours == pytest.approx(6 * 13.0e9 * tokens / (989e12 * 0.4) / 3600)
    assert "MFU 0.4, assumed" in line and "on 8 GPU(s)" in line
    a100 = load_profile("paper", overrides=["04_training.projection_gpu=A100"])
    assert training_gpu_hours(a100, 1, 13.0e9, 8)[0] == pytest.approx(gpu_hours * 989 / 312)


def test_chat_endpoint_projection_is_the_slower_of_the_two_limits():
    from orca_utils.projections import augmentation_hours

    cfgs = load_profile("paper", overrides=["02_augmentation.endpoint.batch_mode=false"])
    hours, line = augmentation_hours(cfgs, "stage2")
    ep, teacher = cfgs["02_augmentation"].endpoint, cfgs["02_augmentation"].stage2
    by_requests = 1_000_000 / ep.requests_per_minute / 60
    by_tokens = 1_000_000 * (250 + teacher.max_tokens) / ep.tokens_per_minute / 60
    assert hours == pytest.approx(max(by_requests, by_tokens)) and "tokens_per_minute binds" in line


def test_deep_validate_prints_the_projections_as_estimates(tmp_path, repo, monkeypatch):
    from orca_utils import preflight

    monkeypatch.setattr(preflight.memory, "_read_model_config", lambda spec, offline: (None, "not cached"))
    cfgs = load_profile("paper")
    lines = [str(f) for f in preflight.check_projections(cfgs, Options(today=TODAY, gpus=[]))]
    assert [line.split(":")[1].strip() for line in lines] == [
        "02_augmentation.stage1", "02_augmentation.stage2", "04_training.stage1", "04_training.stage2"]
    assert all("(estimate)" in line for line in lines)
    assert "13.02B params" in lines[2]                  # LLaMA-13B from its published architecture, offline


# ---- a Model object without a shutdown_date: the registry's date stands in ---------------------------------------
@pytest.mark.parametrize("shape", ["always", "announced"])       # `shutdown_date: null`, or no such field at all
def test_a_model_listed_without_a_shutdown_date_falls_back_to_the_registry(shape):
    """OpenAI's Model object carries `shutdown_date` only where a date is announced; gpt-5's (2026-12-11) is in
    orca_utils/chat_api/registry.py, so preflight warns within 30 days and stops after it."""
    from orca_utils.preflight import fetch_model_list
    from orca_utils.teacher.local_server import Emulation, serve_openai_compatible

    emu = Emulation(today=dt.date(2026, 12, 1), shutdown_dates={"gpt-5": None}, shutdown_date_field=shape)
    with serve_openai_compatible({"gpt-5": Silent()}, emulate=emu) as base_url:
        listing = fetch_model_list(base_url, "key", 5.0)
    assert "gpt-5" in listing.models and listing.models["gpt-5"] is None
    before = model_findings("p", "gpt-5", listing.models, "the endpoint", dt.date(2026, 12, 1))
    after = model_findings("p", "gpt-5", listing.models, "the endpoint", dt.date(2026, 12, 20))
    assert [type(f).__name__ for f in before] == ["Warn"] and "2026-12-11" in str(before[0])
    assert [type(f).__name__ for f in after] == ["Problem"] and "orca_utils/chat_api/registry.py" in str(after[0])
    assert model_findings("p", "gpt-6-luna", {"gpt-6-luna": None}, "the endpoint", dt.date(2026, 12, 20)) == []


def test_serving_finds_the_tuned_student_in_a_reused_run_folder(tmp_path, monkeypatch):
    """A run that reuses another's 04 (ORCA_REUSE, as `run --reuse` exports it) serves that folder's student."""
    from orca_utils.preflight import check_serving

    monkeypatch.setenv("ORCA_CACHE_DIR", str(tmp_path / "cache"))
    student = tmp_path / "reused" / "04_training" / "student"
    student.mkdir(parents=True)
    (student / "config.json").write_text("{}")
    cfgs = load_profile("rehearsal", overrides=["05_agieval.serve=vllm", f"common.output_dir={tmp_path / 'own'}"])
    before = [str(f) for f in check_serving(cfgs, Options(hub_unreachable=True)) if "04_training's student" in str(f)]
    assert before and not any(str(student) in line for line in before), before
    monkeypatch.setenv("ORCA_REUSE", str(tmp_path / "reused"))
    after = [str(f) for f in check_serving(cfgs, Options(hub_unreachable=True)) if "04_training's student" in str(f)]
    assert after and any(str(student) in line for line in after), after
