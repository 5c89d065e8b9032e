"""FLAN-v2 loaders, the sampler (quotas, caps, stages, determinism) and system-message assignment."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

from orca_utils.data import resolve_dataset
from orca_utils.reference import paper_block
from orca_utils.flan import (POOL_COLUMNS, load_cot_dir, load_niv2_dir, load_schema_file, load_task_list,
                                      map_hub_row)
from orca_utils.sampling.stages import allocate_evenly, load_hub_collection, reduce_to_task_reservoirs, sample_stages
from orca_utils.system_messages import (COLLECTION_MESSAGE_IDS, SYSTEM_MESSAGES, allowed_message_ids,
                                        assign_system_messages)

QUOTAS = {"cot": 40, "niv2": 100, "t0": 200, "flan2021": 150}


def fixture_pool(seed: int = 0) -> pd.DataFrame:
    """Synthetic multi-collection pool: tasks of very different sizes, few-shot rows and a Big-Bench task mixed in."""
    rng = np.random.default_rng(seed)
    rows = []
    sizes = {"cot": [5, 50, 500], "niv2": [3, 10, 40, 400, 2000], "t0": [1000, 20, 300],
             "flan2021": [200, 200, 30]}
    for collection, task_sizes in sizes.items():
        for t, size in enumerate(task_sizes):
            for i in range(size):
                rows.append({"id": f"{collection}/t{t}/{i}", "collection": collection, "task": f"{collection}_t{t}",
                             "template_type": "zs_opt" if i % 5 else "fs_opt", "inputs": f"q {i}", "targets": "a",
                             "rationale": "", "is_multiple_choice": bool(rng.random() < 0.5)})
    for i in range(100):
        rows.append({"id": f"niv2/bb/{i}", "collection": "niv2", "task": "task062_bigbench_repeat_copy_logic",
                     "template_type": "zs_noopt", "inputs": "x", "targets": "y", "rationale": "",
                     "is_multiple_choice": False})
    return pd.DataFrame(rows, columns=POOL_COLUMNS)


def test_quotas_caps_zero_shot_and_big_bench():
    pool = fixture_pool()
    caps = {"niv2": 40, "t0": 90}
    res = sample_stages(pool, QUOTAS, scale=1.0, stage2_rows=100, max_rows_per_task=caps, seed=1)
    s1 = res.stage1
    counts = s1.groupby("collection").size()
    assert counts["cot"] == 40 and counts["niv2"] == 100 and counts["flan2021"] == 150
    # t0: tasks hold 800 + 16 + 240 zero-shot rows, capped at 90 each -> 90 + 16 + 90 = 196 < quota 200
    assert counts["t0"] == 196
    t0 = res.report.set_index("collection").loc["t0"]
    assert t0["shortfall"] == 4 and t0["status"].startswith("short")
    per_task = s1.groupby("task").size()
    assert per_task["t0_t0"] == 90 and per_task["t0_t1"] == 16
    # stratified: the small niv2 tasks give all their zero-shot rows (2, 8), the other three share the rest evenly
    assert [per_task[f"niv2_t{i}"] for i in range(5)] == [2, 8, 30, 30, 30]
    assert (s1["template_type"] == "zs_opt").all()
    assert not s1["task"].str.contains("bigbench").any()
    assert res.excluded["Big-Bench task"] == 100 and res.excluded["not zero-shot"] > 0
    assert s1["id"].is_unique


def test_stage2_is_random_subset_scaled_by_shortfall():
    pool = fixture_pool()
    res = sample_stages(pool, QUOTAS, scale=0.5, stage2_rows=200, seed=3)
    assert set(res.stage2["id"]) <= set(res.stage1["id"])
    assert len(res.stage1) == sum(round(q * 0.5) for q in QUOTAS.values())
    assert len(res.stage2) == 100
    short = sample_stages(pool[pool["collection"].isin(["cot", "niv2"])], QUOTAS, scale=1.0, stage2_rows=98, seed=3,
                          unavailable={"t0": "not in the offline data"})
    # stage 1 got 140 of 490 -> stage 2 keeps the ratio: 98 * 140 / 490 = 28
    assert len(short.stage1) == 140 and len(short.stage2) == 28
    rep = short.report.set_index("collection")
    assert rep.loc["t0", "status"] == "unavailable: not in the offline data" and rep.loc["t0", "stage1"] == 0
    assert rep.loc["flan2021", "status"].startswith("unavailable")


def test_same_seed_same_sample_other_seed_other_sample():
    pool = fixture_pool()
    a = sample_stages(pool, QUOTAS, stage2_rows=50, seed=7)
    b = sample_stages(pool, QUOTAS, stage2_rows=50, seed=7)
    c = sample_stages(pool, QUOTAS, stage2_rows=50, seed=8)
    assert a.stage1["id"].tolist() == b.stage1["id"].tolist()
    assert a.stage2["id"].tolist() == b.stage2["id"].tolist()
    assert set(a.stage1["id"]) != set(c.stage1["id"])


def test_allocate_evenly_water_fills():
    rng = np.random.default_rng(0)
    assert allocate_evenly(np.array([2, 100, 100]), 50, rng).tolist() == [2, 24, 24]
    assert allocate_evenly(np.array([2, 3]), 50, rng).tolist() == [2, 3]
    out = allocate_evenly(np.array([10, 10, 10]), 10, rng)
    assert out.sum() == 10 and sorted(out.tolist()) == [3, 3, 4]


def test_reservoirs_bound_per_task_and_are_uniform():
    tasks = np.repeat([0, 1, 2], [5000, 30, 1000])
    chunks = [(tasks[i:i + 700], np.arange(len(tasks))[i:i + 700]) for i in range(0, len(tasks), 700)]
    t, p = reduce_to_task_reservoirs(iter(chunks), k=100, seed=0)
    assert np.bincount(t).tolist() == [100, 30, 100]
    assert len(set(p.tolist())) == len(p)
    # uniform over the stream, not the first rows seen: task 0's kept positions spread over its 5000 rows
    assert p[t == 0].max() > 4000 and p[t == 0].min() < 1000


def test_system_messages_match_reference_and_sets():
    ref = {m["id"]: m["text"] for m in paper_block("system_messages")["messages"]}
    assert SYSTEM_MESSAGES == ref and len(SYSTEM_MESSAGES) == 16
    assert COLLECTION_MESSAGE_IDS["cot"]["all"] == (6, 11, 16)
    assert allowed_message_ids("flan2021", True) == (8, 10)
    assert allowed_message_ids("flan2021", False) == (3, 4, 7)
    for c in ("cot", "niv2", "t0"):
        assert not {8, 10} & set(allowed_message_ids(c, False))


def test_system_message_assignment_allowed_sets_and_frequencies():
    n = 6000
    rng = np.random.default_rng(0)
    collections = rng.choice(["cot", "niv2", "t0", "flan2021"], size=n)
    mc = rng.random(n) < 0.4
    ids = assign_system_messages(collections, mc, seed=11)
    for c in ("cot", "niv2", "t0", "flan2021"):
        for flag in (False, True):
            got = ids[(collections == c) & (mc == flag)]
            allowed = allowed_message_ids(c, flag)
            assert set(got.tolist()) <= set(allowed)
            counts = np.array([(got == i).sum() for i in allowed])
            assert chisquare(counts).pvalue > 0.001, (c, flag, counts)     # uniform by default
    weighted = assign_system_messages(np.array(["cot"] * 4000), np.zeros(4000, bool), seed=5,
                                      weights={"cot": {6: 0.5, 11: 0.25, 16: 0.25}})
    counts = np.array([(weighted == i).sum() for i in (6, 11, 16)])
    assert chisquare(counts, f_exp=[2000, 1000, 1000]).pvalue > 0.001
    assert chisquare(counts).pvalue < 1e-6                                 # clearly not uniform
    with pytest.raises(ValueError, match="not in the collection's set"):
        assign_system_messages(np.array(["cot"]), np.array([False]), seed=0, weights={"cot": {1: 1.0}})
    assert (assign_system_messages(collections, mc, 11) == ids).all()


def test_malformed_rows_counted_not_fatal(tmp_path):
    cot = tmp_path / "cot"
    cot.mkdir()
    (cot / "gsm8k_train.tsv").write_text("What is 1+1?\t2\tOne plus one.\nbroken line\n\t3\tno question\n"
                                         "Q\\nwith newline\t4\tr\n")
    df, rep = load_cot_dir(cot)
    assert len(df) == 2 and sum(rep.malformed.values()) == 2 and "\n" in df["inputs"].iloc[1]
    niv2 = tmp_path / "niv2"
    niv2.mkdir()
    task = {"Definition": ["Answer it."], "Instances": [
        {"id": "task1-a", "input": "hello", "output": ["hi"]}, {"id": "task1-b", "input": "  ", "output": ["x"]},
        {"id": "task1-c", "output": ["x"]}, {"id": "task1-d", "input": "q", "output": []}]}
    (niv2 / "task001_x.json").write_text(json.dumps(task))
    (niv2 / "task002_bad.json").write_text("{not json")
    df, rep = load_niv2_dir(niv2)
    assert len(df) == 1 and rep.malformed["empty or missing input"] == 2
    assert rep.malformed["missing output or id"] == 1 and sum(rep.malformed.values()) == 4
    jsonl = tmp_path / "q.jsonl"
    rows = [{"id": "a", "collection": "t0", "task": "x", "template_type": "zs_opt", "inputs": "Q?", "targets": "A"},
            {"id": "b", "collection": "t0", "task": "x", "template_type": "zs_opt", "inputs": "", "targets": "A"},
            {"id": "c", "collection": "t0", "task": "x", "template_type": "zs_opt", "inputs": "Q?"}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    df, rep = load_schema_file(jsonl)
    assert df["id"].tolist() == ["a"] and rep.malformed == {"empty inputs": 1, "missing fields": 1}


def test_unknown_cot_source_is_a_clear_error(tmp_path):
    (tmp_path / "esnli_train.tsv").write_text("a\tb\tc\n")
    with pytest.raises(ValueError, match="unknown CoT source 'esnli'"):
        load_cot_dir(tmp_path)


def test_hub_path_on_a_local_fake():
    fake = []
    for i in range(60):
        fake.append({"inputs": f"Premise {i}\nOPTIONS:\n- yes\n- no", "targets": "yes", "task_source": "Flan2021",
                     "task_name": f"rte:{i % 3}", "template_type": ["zs_opt", "fs_opt", "zs_noopt"][i % 3]})
    fake.append({"inputs": "", "targets": "x", "task_name": "rte:0", "template_type": "zs_opt"})
    fake.append({"inputs": "bb", "targets": "x", "task_name": "bigbench:logic", "template_type": "zs_opt"})
    opened = []

    def open_stream(name, revision=None, split="train"):
        opened.append((name, revision))
        return iter(fake)

    mapped = map_hub_row(fake[0], "flan2021", 0)
    assert mapped["template_type"] == "zs_opt" and mapped["is_multiple_choice"] and mapped["task"] == "rte:0"
    assert map_hub_row(fake[1], "flan2021", 1) is None                    # few-shot
    df = load_hub_collection("flan2021", "fake/flan2021", quota=100, max_rows_per_task=5, seed=0,
                             open_stream=open_stream, revision="abc")
    assert opened == [("fake/flan2021", "abc")] * 2                       # two streamed passes, pinned revision
    assert df.groupby("task").size().to_dict() == {"rte:0": 5, "rte:2": 5}
    assert df["template_type"].isin(["zs_opt", "zs_noopt"]).all() and df["id"].is_unique


@pytest.fixture(scope="module")
def shared_data():
    try:
        return {n: resolve_dataset(n, None, True).path for n in ("flan_cot", "niv2", "flan")}
    except FileNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")


def test_loaders_on_the_real_local_files(shared_data):
    cot, rep = load_cot_dir(shared_data["flan_cot"])
    assert rep.files == 7 and len(cot) == 33443 and sum(rep.malformed.values()) == 0
    gsm = cot[cot["task"] == "cot_gsm8k"].iloc[0]
    assert gsm["targets"] == "72" and "Natalia" in gsm["inputs"] and "24 clips" in gsm["rationale"]
    assert cot[cot["task"] == "cot_aqua"]["is_multiple_choice"].all()
    niv2, rep = load_niv2_dir(shared_data["niv2"])
    assert rep.files == 40 and len(niv2) == 2369
    first = niv2[niv2["task"] == "task033_winogrande_answer_generation"].iloc[0]
    assert "You need to answer a given question containing a blank" in first["inputs"]
    assert "The actor ended up fine" in first["inputs"] and first["targets"] == "unicycle"
    tasks = load_task_list(shared_data["flan"] / "flan_collection_info.csv")
    assert (tasks["collection"] == "niv2").sum() == 1556
    assert tasks.loc[tasks["big_bench"], "task"].tolist() == ["task062_bigbench_repeat_copy_logic"]
    pool = pd.concat([cot, niv2], ignore_index=True)
    res = sample_stages(pool, {"cot": 150000, "niv2": 440000, "t0": 2000000, "flan2021": 2500000}, scale=0.001,
                        stage2_rows=1000000, max_rows_per_task={"niv2": 20}, seed=0)
    assert res.report.set_index("collection")["stage1"].to_dict() == {"cot": 150, "niv2": 440, "t0": 0,
                                                                      "flan2021": 0}
    assert res.excluded["Big-Bench task"] == 29


def test_sample_queries_output_contract():
    from orca_utils.config import load_notebook_config
    from orca_utils.contracts import QUERY_TABLE_COLUMNS
    from orca_utils.sampling import sample_queries

    cfg = load_notebook_config("01_sampling", "smoke", overrides="01_sampling.scale=0.0005")
    res = sample_queries(fixture_pool(), cfg)
    s1, s2 = res.stage1, res.stage2
    assert list(s1.columns) == list(QUERY_TABLE_COLUMNS) and s1["id"].is_unique and len(s2) > 0
    assert s1["system_message_id"].between(1, 16).all()
    assert (s1["system_message"] == s1["system_message_id"].map(SYSTEM_MESSAGES)).all()
    same = s2.merge(s1[["id", "system_message_id"]], on="id", suffixes=("", "_1"))
    assert len(same) == len(s2) and (same["system_message_id"] == same["system_message_id_1"]).all()
