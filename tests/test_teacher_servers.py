"""Open-weights teachers' vLLM servers (`orca_utils.teacher_servers`, `python -m orca_utils serve-teachers`): one
server per 127.0.0.1 base_url, on disjoint GPUs unless the params share one within 0.95 of its memory."""
from __future__ import annotations

import socket
import sys
import textwrap

import pytest

from orca_utils.cli import main
from orca_utils.config import load_profile
from orca_utils.teacher_servers import ServerPlanError, launch_servers, plan_servers

PAPER_20B = ("CUDA_VISIBLE_DEVICES=0 vllm serve openai/gpt-oss-20b --host 127.0.0.1 --port 8001 "
             "--served-model-name openai/gpt-oss-20b --tensor-parallel-size 1 --gpu-memory-utilization 0.9")
PAPER_120B = ("CUDA_VISIBLE_DEVICES=1,2 vllm serve openai/gpt-oss-120b --host 127.0.0.1 --port 8002 "
              "--served-model-name openai/gpt-oss-120b --tensor-parallel-size 2 --gpu-memory-utilization 0.9")


def _plan(*overrides):
    return plan_servers(load_profile("paper_open_weights", overrides=list(overrides)))


def test_paper_open_weights_servers_get_different_devices():
    small, large = _plan()
    assert (small.port, small.model, small.gpus, small.tensor_parallel_size) == (8001, "openai/gpt-oss-20b", (0,), 1)
    assert (large.port, large.model, large.gpus, large.tensor_parallel_size) == (8002, "openai/gpt-oss-120b", (1, 2), 2)
    assert small.env == {"CUDA_VISIBLE_DEVICES": "0"} and large.env == {"CUDA_VISIBLE_DEVICES": "1,2"}
    assert [small.command(), large.command()] == [PAPER_20B, PAPER_120B]
    # every teacher on those URLs reuses the two servers (07's references and judge, 08's judge)
    assert large.params == ("02_augmentation.stage2", "07_open_ended.references[1]", "07_open_ended.judge",
                            "08_safety.judge")


def test_default_placement_is_disjoint_in_order_of_appearance():
    small, large = _plan("02_augmentation.stage1.server=null", "02_augmentation.stage2.server=null")
    assert small.gpus == (0,) and large.gpus == (1,) and not set(small.gpus) & set(large.gpus)
    # an explicit set is reserved first: the defaulted server takes the next free GPU
    small, large = _plan("02_augmentation.stage1.server=null", "02_augmentation.stage2.server={gpus: [0]}")
    assert large.gpus == (0,) and small.gpus == (1,)


def test_same_gpu_over_095_is_a_one_line_error():
    with pytest.raises(ServerPlanError) as err:
        _plan("02_augmentation.stage2.server={gpus: [0]}")
    message = str(err.value)
    assert "\n" not in message and message.startswith("02_augmentation.stage2.server: GPU 0 is given to")
    assert "sum to 1.80 > 0.95" in message
    small, large = _plan("02_augmentation.stage1.server={gpus: [0], gpu_memory_utilization: 0.25}",
                         "02_augmentation.stage2.server={gpus: [0], gpu_memory_utilization: 0.7}")
    assert small.gpus == large.gpus == (0,)
    assert "--gpu-memory-utilization 0.25" in small.command() and "--gpu-memory-utilization 0.7" in large.command()


def test_one_port_serves_one_model():
    with pytest.raises(ServerPlanError, match=r"^07_open_ended.judge.model: openai/gpt-oss-20b, but "
                                              r"02_augmentation.stage2 sends openai/gpt-oss-120b"):
        _plan("07_open_ended.judge.model=openai/gpt-oss-20b")
    with pytest.raises(ServerPlanError, match="set the server block once"):
        _plan("07_open_ended.judge.server={gpus: [3]}")


def test_serve_teachers_print(capsys):
    assert main(["serve-teachers", "--profile", "paper_open_weights", "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if not line.startswith("#")] == [PAPER_20B, PAPER_120B]
    assert main(["serve-teachers", "--profile", "paper_open_weights", "--print", "--params-override",
                 "02_augmentation.stage2.server={gpus: [0]}"]) == 2
    assert "sum to 1.80 > 0.95" in capsys.readouterr().err
    assert main(["serve-teachers", "--profile", "paper", "--print"]) == 0      # API teachers: nothing to serve
    assert "nothing to serve" in capsys.readouterr().out


FAKE_VLLM = """\
#!{python}
# `vllm serve <model> --port P --served-model-name N ...` stand-in: answers GET /v1/models with N and logs its env.
import http.server, json, os, sys
args = sys.argv[1:]
port, name = int(args[args.index("--port") + 1]), args[args.index("--served-model-name") + 1]
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", ""), flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"data": [{{"id": name}}]}}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_launch_starts_each_server_with_its_devices_and_waits_until_ready(tmp_path):
    from orca_utils.teacher_servers import _stop, models_served

    fake = tmp_path / "vllm"
    fake.write_text(textwrap.dedent(FAKE_VLLM).format(python=sys.executable))
    fake.chmod(0o755)
    a, b = _free_port(), _free_port()
    servers = _plan(f"02_augmentation.stage1.base_url=http://127.0.0.1:{a}/v1",
                    f"02_augmentation.stage2.base_url=http://127.0.0.1:{b}/v1")[:2]
    assert [s.port for s in servers] == [a, b]
    procs = launch_servers(servers, tmp_path / "servers", ready_timeout_s=60, executable=str(fake), echo=lambda *_: 0)
    try:
        assert models_served(f"http://127.0.0.1:{a}/v1") == ["openai/gpt-oss-20b"]
        assert models_served(f"http://127.0.0.1:{b}/v1") == ["openai/gpt-oss-120b"]
        assert (tmp_path / "servers" / f"{a}.log").read_text().startswith("CUDA_VISIBLE_DEVICES=0\n")
        assert (tmp_path / "servers" / f"{b}.log").read_text().startswith("CUDA_VISIBLE_DEVICES=1,2\n")
        # already serving the right model: left alone
        assert launch_servers(servers, tmp_path / "servers", executable=str(fake), echo=lambda *_: 0) == {}
    finally:
        for proc in procs.values():
            _stop(proc)
