"""The moved names: `backends/` and the `chat_api` leaf own them; the old import paths re-export the same objects."""
from __future__ import annotations

import importlib

import pytest

SHIMS = {
    "orca_utils.generate": "orca_utils.backends",
    "orca_utils.serving": "orca_utils.backends.served",
    "orca_utils.teacher.models": "orca_utils.chat_api.registry",
    "orca_utils.teacher.protocol": "orca_utils.chat_api.wire",
    "orca_utils.teacher.local_server": "orca_utils.backends.local_server",
    "orca_utils.teacher.openai_emulation": "orca_utils.backends.openai_emulation",
}


@pytest.mark.parametrize("old", sorted(SHIMS))
def test_an_old_path_reexports_the_new_objects(old):
    shim = importlib.import_module(old)
    assert shim.__doc__ and shim.__doc__.startswith("Moved to") and "\n" not in shim.__doc__.strip()
    assert shim.__all__ and all(hasattr(shim, name) for name in shim.__all__)
    for name in shim.__all__:
        obj = getattr(shim, name)
        home = getattr(obj, "__module__", "") or ""
        if callable(obj) and home.startswith("orca_utils"):
            assert not home.startswith(old + ".") and home != old, f"{old}.{name} is defined in the shim"


def test_one_completion_type_and_one_loopback_check():
    from orca_utils.backends import Completion, is_loopback
    from orca_utils.generate import Completion as from_generate
    from orca_utils.teacher import Completion as from_teacher
    from orca_utils.teacher.local_server import Completion as from_server

    assert Completion is from_generate is from_teacher is from_server
    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://localhost/v1")
    assert is_loopback("http://[::1]:9/v1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("https://api.openai.com/v1") and not is_loopback(None) and not is_loopback("")


def test_the_client_factory_reads_the_key_from_the_named_variable(monkeypatch):
    pytest.importorskip("openai")
    from orca_utils.backends.endpoints import LOOPBACK_KEY, openai_client

    monkeypatch.delenv("ORCA_TEST_FACTORY_KEY", raising=False)
    assert openai_client("http://127.0.0.1:1/v1", "ORCA_TEST_FACTORY_KEY").api_key == LOOPBACK_KEY
    with pytest.raises(RuntimeError, match="ORCA_TEST_FACTORY_KEY is not set"):
        openai_client("https://api.example.com/v1", "ORCA_TEST_FACTORY_KEY")
    monkeypatch.setenv("ORCA_TEST_FACTORY_KEY", "sk-test")
    client = openai_client("https://api.example.com/v1", "ORCA_TEST_FACTORY_KEY", asynchronous=True, max_retries=0)
    assert client.api_key == "sk-test" and client.max_retries == 0 and type(client).__name__ == "AsyncOpenAI"


def test_resident_backends_stop_a_served_model_before_the_next_loads():
    import contextlib

    from orca_utils.backends import ResidentBackends

    events = []

    @contextlib.contextmanager
    def serve(label, spec):
        events.append(f"start {label}")
        yield f"backend {label}"
        events.append(f"stop {label}")

    with ResidentBackends([("base", "a"), ("student", "b")], serve) as resident:
        assert resident["base"] == "backend base" and resident["base"] == "backend base"
        assert resident["student"] == "backend student"
    assert events == ["start base", "stop base", "start student", "stop student"] and resident.loads == 2
