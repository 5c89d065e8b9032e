"""Evaluation dtype and device: `load_model` resolves params `dtype` ("auto": bfloat16 on CUDA, float32 on CPU),
`HFBackend` passes it on, and notebook 04 generates on the configured device instead of a hard-coded CPU."""
from __future__ import annotations

import json
import re

import pytest

torch = pytest.importorskip("torch")

from orca_utils import models
from orca_utils.paths import NOTEBOOKS_DIR

RANDOM_LLAMA = "random-llama:L2-H64:shared:tokenizers/llama"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    """The tiny random LLaMA of `RANDOM_LLAMA`, built into a scratch cache; its directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        return models.resolve_model(RANDOM_LLAMA).path


@pytest.mark.parametrize(("dtype", "expected"), [("auto", torch.float32), ("float32", torch.float32),
                                                 ("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_load_model_dtype_on_cpu(tiny_dir, dtype, expected):
    assert models.load_model(tiny_dir, dtype=dtype, device="cpu").dtype == expected


def test_load_model_defaults_to_auto(tiny_dir):
    assert models.load_model(tiny_dir, device="cpu").dtype == torch.float32


def test_auto_resolves_with_the_device(monkeypatch):
    assert models.resolve_dtype("auto", "cuda") == torch.bfloat16
    assert models.resolve_dtype("auto", "cuda:1") == torch.bfloat16
    assert models.resolve_dtype("auto", "cpu") == torch.float32
    assert models.resolve_dtype("auto", "mps") == torch.float32
    assert models.resolve_dtype("float16", "cuda") == torch.float16
    assert models.resolve_dtype(torch.float16, "cpu") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)      # device "auto" on a CUDA machine
    assert models.resolve_dtype("auto", "auto") == torch.bfloat16
    with pytest.raises(ValueError, match="int8"):
        models.resolve_dtype("int8", "cpu")


def test_load_model_on_cuda_asks_for_bfloat16_by_default(tiny_dir, monkeypatch):
    """No GPU needed: the dtype `from_pretrained` receives is recorded, and the move to the device is skipped."""
    from transformers import AutoModelForCausalLM

    asked = {}

    class Loaded:
        def to(self, device):
            asked["device"] = device
            return self

    def fake_from_pretrained(location, **kwargs):
        asked["dtype"] = kwargs.get("dtype")
        return Loaded()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    models.load_model(tiny_dir, device="cuda")
    assert asked == {"dtype": torch.bfloat16, "device": "cuda"}


def test_hf_backend_passes_dtype(tiny_dir):
    from orca_utils.generate import HFBackend

    backend = HFBackend(tiny_dir, device="cpu", dtype="bfloat16", progress=False)
    assert backend.model.dtype == torch.bfloat16
    assert HFBackend(tiny_dir, device="cpu", progress=False).model.dtype == torch.float32


def test_notebook_04_generates_on_the_configured_device(tiny_dir):
    nb = json.loads((NOTEBOOKS_DIR / "04_training.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    hard_coded = [src for src in code if re.search(r"""device\s*=\s*["']cpu["']""", src)]
    assert not hard_coded, hard_coded
    loads = re.findall(r"training\.load_backend\((.*)\)", "\n".join(code))
    assert loads and all(b.rstrip().endswith("cfg") for b in loads), loads
    # ... and the driver's loader takes the device and dtype from those params
    from types import SimpleNamespace

    from orca_utils.training import load_backend

    backend = load_backend(tiny_dir, SimpleNamespace(device="cpu", dtype="bfloat16"))
    assert backend.model.dtype == torch.bfloat16
