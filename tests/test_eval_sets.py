"""One reader per evaluation set (`orca_utils.evaluation.sets`) and one seeded subset (`orca_utils.data.seeded_subset`).

Each caller moved onto them must read and pick exactly what it did before: the old code path is written out inline
here and compared with the new one on the real files (skipped where the data root has no copy).
"""
from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from orca_utils.data import DatasetNotFoundError, resolve_dataset, seeded_subset
from orca_utils.evaluation.sets import local_tasks, read_agieval, read_bbh, read_rows, read_truthfulqa, task_files


def _root(name: str):
    try:
        return resolve_dataset(name, offline=True).path
    except DatasetNotFoundError:
        pytest.skip(f"{name} data not available")


# ---------------------------------------------------------------- seeded_subset

def test_seeded_subset_is_deterministic_ordered_and_the_same_for_lists_and_frames():
    rows = list(range(100, 200))
    a, b = seeded_subset(rows, 7, seed=3), seeded_subset(rows, 7, seed=3)
    assert a == b and len(a) == 7 and a == sorted(a) and set(a) <= set(rows)
    assert a != seeded_subset(rows, 7, seed=4)
    frame = pd.DataFrame({"x": rows})
    assert frame.pipe(seeded_subset, 7, 3)["x"].tolist() == a
    assert seeded_subset(rows, None, 0) == rows and seeded_subset(rows, 500, 0) == rows
    assert seeded_subset(rows, 500, 0) is not rows                      # a copy, never the caller's object
    with pytest.raises(ValueError, match="positive or null"):
        seeded_subset(rows, 0, 0)


@pytest.mark.parametrize("length, n, seed", [(10, 3, 0), (817, 24, 42), (1000, 100, 0), (250, 20, 0), (5, 4, 9)])
def test_seeded_subset_is_what_pandas_sample_then_sort_index_picks(length, n, seed):
    frame = pd.DataFrame({"x": np.arange(length)})
    gapped = frame[frame["x"] % 3 != 1]                                # increasing index with gaps (a filter)
    for df in (frame, gapped):
        old = df.sample(n=min(n, len(df) - 1), random_state=seed).sort_index()
        assert seeded_subset(df, min(n, len(df) - 1), seed).equals(old)


def test_select_subset_picks_what_it_picked_before():
    from orca_utils.open_ended import select_subset

    def old(df, n, seed):                                               # open_ended.select_subset before the move
        if n is None or n >= len(df):
            return df.reset_index(drop=True)
        if n <= 0:
            raise ValueError
        return df.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)

    df = pd.DataFrame({"id": [f"q{i}" for i in range(80)], "prompt": [f"p{i}" * (i % 7) for i in range(80)]})
    short = df[df["prompt"].str.len() <= 10]                            # as load_prompt_sets' max_prompt_chars
    for frame in (df, short):
        for n, seed in ((3, 0), (24, 42), (None, 0), (1000, 1), (1, 7)):
            assert select_subset(frame, n, seed).equals(old(frame, n, seed))
    with pytest.raises(ValueError):
        select_subset(df, 0, 0)


def test_toxigen_prompts_are_the_ones_picked_before():
    from orca_utils.safety import load_toxigen_prompts, parse_toxigen_line

    folder = _root("toxigen")
    for n, seed in ((1, 0), (5, 42), (100, 0)):
        new = load_toxigen_prompts(("asian", "women"), ("hate", "neutral"), n, seed, offline=True)
        for (kind, group), got in new.groupby(["kind", "group"], sort=False):
            path = next(folder.rglob(f"{kind}_{group}_1k.txt"))
            lines = [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                     if line.strip()]
            old = pd.DataFrame(lines, columns=["line_no", "raw"]).sample(n=n, random_state=seed).sort_values("line_no")
            assert got["line_no"].tolist() == old["line_no"].tolist()
            assert got["prompt"].tolist() == old["raw"].map(parse_toxigen_line).tolist()


def test_notebook_09s_bbh_subset_is_seeded_subset():
    """experiment.pipeline.load_bbh_items draws `frame.sample(n=limit, random_state=0).sort_index()`: seeded_subset
    with seed 0 picks the same items, so it can move onto it unchanged."""
    root = _root("bbh")
    for task in ("boolean_expressions", "navigate", "web_of_lies"):
        frame = pd.DataFrame(read_bbh(root, task))[["input", "target"]]
        for limit in (2, 10, 20):
            assert seeded_subset(frame, limit, 0).equals(frame.sample(n=limit, random_state=0).sort_index())


def test_subset_items_keeps_its_per_task_stream():
    """05/06's `subset_items` is not seeded_subset's draw (each task has its own stream); it picks as before."""
    from orca_utils.evaluation.tasks import load_task, subset_items

    items = load_task(_root("bbh"), "bbh", "navigate")
    for n, seed in ((1, 0), (5, 42)):
        keep = sorted(random.Random(f"{seed}:navigate").sample(range(len(items)), n))
        assert subset_items(items, n, seed) == [items[i] for i in keep]


# ---------------------------------------------------------------- readers

def test_bbh_reader_reads_what_each_old_reader_read():
    root = _root("bbh")
    tasks = local_tasks(root, "bbh")
    assert len(tasks) == 27
    for task in tasks:
        old = json.loads((root / f"{task}.json").read_text())["examples"]    # 09's and 01's way
        assert read_bbh(root, task) == old


def test_agieval_reader_reads_every_local_file():
    root = _root("agieval")
    tasks = local_tasks(root, "agieval")
    assert "math" in tasks and "lsat-ar" in tasks
    for task in tasks:
        old = [json.loads(line) for line in (root / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
        assert read_agieval(root, task) == old


def test_hub_layout_is_found_by_task_name(tmp_path):
    (tmp_path / "navigate").mkdir()
    pd.DataFrame({"input": ["q"], "target": ["Yes"]}).to_parquet(tmp_path / "navigate" / "test-00000-of-00001.parquet")
    pd.DataFrame({"input": ["t"], "target": ["No"]}).to_parquet(tmp_path / "navigate" / "train-00000-of-00001.parquet")
    assert read_bbh(tmp_path, "navigate") == [{"input": "q", "target": "Yes"}]
    assert local_tasks(tmp_path, "bbh") == []
    (tmp_path / "lsat_ar.jsonl").write_text('{"query": "Q", "choices": ["a", "b"], "gold": [1]}\n')
    assert [p.name for p in task_files(tmp_path, "agieval", "lsat-ar")] == ["lsat_ar.jsonl"]
    with pytest.raises(FileNotFoundError, match="no data under"):
        task_files(tmp_path, "bbh", "snarks")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_rows(tmp_path / "x.txt")


def test_truthfulqa_reader_builds_the_questions():
    df = read_truthfulqa(_root("truthfulqa"))
    assert len(df) == 817 and df["id"].iloc[0] == "tqa-0"
    assert all(a.endswith(".") for a in df["best_answer"])
