"""03 and 04 read ONE tokenization: the token store, found by its fingerprint, holds the counts both report."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from orca_utils import packing_analysis, train_data
from orca_utils.contracts import STAGE1_STUDENT_DIR
from orca_utils.runs import REUSE_ENV, Run
from orca_utils.tokens import apply_overflow, attach_orca_plain_template, load_padded_tokenizer
from orca_utils.train import _run_for, prepare_stage, token_store_dirs

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import make_fake_augmentation, make_tiny_student, tiny_overrides  # noqa: E402

MAX_LEN = 32        # 04's max_len here: short enough that some samples are cut and some dropped


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory) -> Path:
    return make_tiny_student(tmp_path_factory.mktemp("tiny") / "student")      # the LLaMA tokenizer's student


def _runs(root: Path, tiny_student: Path, **extra):
    cfg4, run4 = _run_for("smoke", str(root), tiny_overrides(tiny_student, max_len_tokens=MAX_LEN, **extra))
    cfg3 = run4.all_cfgs["03_packing"]
    return cfg3, Run(notebook="03_packing", cfg=cfg3, root=run4.root, all_cfgs=run4.all_cfgs), cfg4, run4


def _count_tokenizations(monkeypatch) -> list:
    calls: list = []
    plain = train_data.tokenize_arrow

    def counted(*a, **kw):
        calls.append(1)
        return plain(*a, **kw)

    monkeypatch.setattr(train_data, "tokenize_arrow", counted)
    return calls


def _packed(data) -> dict[str, int]:
    """{sample id: tokens} of every sample in the packed train rows."""
    out: dict[str, int] = {}
    for i in range(len(data)):
        row = data[i]
        out.update(zip(row["sample_ids"], row["seq_lengths"]))
    return out


def test_03_reports_the_token_counts_04_packs_and_04_tokenizes_nothing_again(tmp_path, tiny_student, monkeypatch):
    make_fake_augmentation(tmp_path)
    cfg3, run3, cfg4, run4 = _runs(tmp_path, tiny_student)
    source = packing_analysis.load_samples(cfg3, run3)
    llama, student = load_padded_tokenizer(cfg3.llama_tokenizer), load_padded_tokenizer(cfg4.student_model)
    calls = _count_tokenizations(monkeypatch)
    root = packing_analysis.token_store_root(run3)
    assert root == token_store_dirs(run4) == [tmp_path / train_data.TOKEN_STORE_DIR]   # both look in one place
    lengths, stores = packing_analysis.measure_tokenizers(source, {"LLaMA": llama}, student, 4096,
                                                          "truncate_response", root)
    assert len(calls) == 2 and list(stores["stage"]) == [1, 2] and (stores["tokenized"] == "here").all()
    lines: list[str] = []
    stats = prepare_stage(cfg4, run4, 1, log=lines.append)                # 04's prepare step, after 03
    assert len(calls) == 2, "04 found 03's token store by its fingerprint and must not tokenize again"
    assert stats["token_store_built"] is False and stats["token_store"] == stores["fingerprint"].iloc[0]
    assert any("reused, nothing tokenized" in line for line in lines)

    # the counts: 03's per-row lengths, cut at 04's max_len by the training's policy, are what 04 packed
    frame = source.frame.assign(**lengths["LLaMA"][["prompt_tokens", "response_tokens"]])
    stage1 = frame[frame["stage"] == 1].set_index("id")
    train_rows, heldout_rows = train_data.split_heldout_indices(len(stage1), cfg4.heldout_fraction,
                                                                cfg4.max_heldout_samples, cfg4.seed + 1)
    train = stage1.iloc[train_rows[:cfg4.stage1.max_train_samples or None]]
    assert set(stats["heldout_ids"]) <= set(stage1.index[heldout_rows])
    status, kept = apply_overflow(train["prompt_tokens"], train["response_tokens"], MAX_LEN, "truncate_response")
    assert {"ok", "truncated", "dropped"} <= set(status), "the fixture must exercise the truncation policy"
    expected = {sid: int(n) for sid, n, s in zip(train.index, kept, status) if s != "dropped"}
    cache = run4.dir / "data_cache"
    opened = train_data.open_prepared_stage(run4.upstream("02_augmentation"), 1, student, MAX_LEN, cfg4.packer,
                                            cfg4.seed + 1, cfg4.heldout_fraction, cfg4.max_heldout_samples, cache)
    assert _packed(opened["train_dataset"]) == expected
    assert stats["tokens"] == sum(expected.values()) and stats["samples"] == len(expected)
    assert (stats["truncated"], stats["dropped"]) == (int((status == "truncated").sum()),
                                                      int((status == "dropped").sum()))
    trainable = sum(n - int(train.loc[sid, "prompt_tokens"]) for sid, n in expected.items())
    assert stats["trainable_tokens"] == trainable
    assert int(stores["tokens"].iloc[0]) == int(stage1["prompt_tokens"].sum() + stage1["response_tokens"].sum())


def test_04_alone_builds_the_store_and_03_then_reuses_it(tmp_path, tiny_student, monkeypatch):
    make_fake_augmentation(tmp_path)
    cfg3, run3, cfg4, run4 = _runs(tmp_path, tiny_student)
    stage1_student = run4.dir / STAGE1_STUDENT_DIR       # stage 2 starts from it: saved with the plain template
    shutil.copytree(tiny_student, stage1_student)
    saved = load_padded_tokenizer(str(stage1_student))
    assert attach_orca_plain_template(saved)
    saved.save_pretrained(stage1_student)
    calls = _count_tokenizations(monkeypatch)
    stats = prepare_stage(cfg4, run4, 2, log=lambda *a: None)             # 03 never ran: 04 tokenizes itself
    assert len(calls) == 1 and stats["token_store_built"] is True
    source = packing_analysis.load_samples(cfg3, run3)
    student = load_padded_tokenizer(cfg4.student_model)
    _, stores = packing_analysis.measure_tokenizers(source, {"student": student}, student, 4096, "drop",
                                                    packing_analysis.token_store_root(run3))
    assert len(calls) == 2, "03 builds stage 1 (04 prepared only stage 2) and reuses stage 2, which 04 tokenized " \
        "with the stage-1 student's saved tokenizer: the same fingerprint as the base student's"
    assert list(stores["tokenized"]) == ["here", "before (reused)"]
    assert stores["fingerprint"].iloc[1] == stats["token_store"]


def test_other_data_or_tokenizer_is_another_store(tmp_path, tiny_student, monkeypatch):
    """02 reran (another table) or 03 measured with another tokenizer: 04 does not take that store, it builds its
    own (a stale store is never read), and 03 measures a tokenizer 04 does not train with in memory."""
    make_fake_augmentation(tmp_path)
    cfg3, run3, cfg4, run4 = _runs(tmp_path, tiny_student)
    source = packing_analysis.load_samples(cfg3, run3)
    other = load_padded_tokenizer(cfg3.llama_tokenizer)
    other.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    student = load_padded_tokenizer(cfg4.student_model)
    root = packing_analysis.token_store_root(run3)
    lengths, stores = packing_analysis.measure_tokenizers(source, {"other": other}, student, 4096,
                                                          "truncate_response", root)
    assert stores.empty and not root[0].exists() and len(lengths["other"]) == len(source.frame)
    first = prepare_stage(cfg4, run4, 1, log=lambda *a: None)
    table = tmp_path / "02_augmentation" / "train_stage1.parquet"
    pd.read_parquet(table).head(30).to_parquet(table)                    # 02 reran
    calls = _count_tokenizations(monkeypatch)
    again = prepare_stage(cfg4, run4, 1, log=lambda *a: None)
    assert len(calls) == 1 and again["token_store_built"] and again["token_store"] != first["token_store"]
    assert again["samples"] + again["heldout_samples"] + again["dropped"] <= 30


def test_a_store_that_misses_rows_is_refused_in_one_line(tmp_path, tiny_student):
    make_fake_augmentation(tmp_path)
    cfg3, run3, cfg4, _ = _runs(tmp_path, tiny_student)
    source = packing_analysis.load_samples(cfg3, run3)
    student = load_padded_tokenizer(cfg4.student_model)
    shorter = packing_analysis.SampleSource(pd.concat([source.frame, source.frame.head(1).assign(id="extra")]),
                                            source.origin, source.teacher, source.folder)
    with pytest.raises(ValueError, match=r"train_stage1.parquet: 41 rows here, 40 in the token store .*'extra'") \
            as err:
        packing_analysis.measure_store_lengths(shorter, student, 64, "drop", packing_analysis.token_store_root(run3))
    assert "\n" not in str(err.value)


def test_a_run_that_reuses_another_finds_its_store(tmp_path, tiny_student, monkeypatch):
    """A run reading 02 from another run's folder (`reuse`) finds the store that run's 03 built there."""
    first = tmp_path / "first"
    make_fake_augmentation(first)
    cfg3, run3, cfg4, _ = _runs(first, tiny_student)
    student = load_padded_tokenizer(cfg4.student_model)
    _, stores = packing_analysis.measure_tokenizers(packing_analysis.load_samples(cfg3, run3), {"s": student},
                                                    student, 4096, "drop", packing_analysis.token_store_root(run3))
    monkeypatch.setenv(REUSE_ENV, str(first))
    _, _, cfg4, run4 = _runs(tmp_path / "second", tiny_student)
    assert token_store_dirs(run4) == [tmp_path / "second" / "token_store", first / "token_store"]
    calls = _count_tokenizations(monkeypatch)
    stats = prepare_stage(cfg4, run4, 1, log=lambda *a: None)
    assert calls == [] and stats["token_store"] == stores["fingerprint"].iloc[0]
    assert Path(stats["token_store_folder"]).parent == first / "token_store"
