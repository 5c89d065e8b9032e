"""Notebook 02's pieces: the data teacher, the contract frames, and the notebook run by papermill (API key check)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orca_utils.teacher.offline import DataTeacher, wants_explanation
from orca_utils.system_messages import SYSTEM_MESSAGES

REPO = Path(__file__).resolve().parents[1]


def fake_queries(n: int = 12) -> pd.DataFrame:
    """A small table in 01's contract: CoT rows (with rationales) and NIV2 rows."""
    rows = []
    for i in range(n):
        cot = i % 2 == 0
        sm = [1, 7, 11, 5, 2, 16][i % 6] if cot else [1, 2, 9, 13, 15, 5][i % 6]
        rows.append({"id": f"q{i}", "collection": "cot" if cot else "niv2", "task": "gsm8k" if cot else "task_x",
                     "template_type": "zs_opt", "inputs": f"Question {i}: what is {i} + {i}?",
                     "targets": str(2 * i), "rationale": f"{i} plus {i} makes {2 * i}." if cot else "",
                     "is_multiple_choice": False, "system_message_id": sm, "system_message": SYSTEM_MESSAGES[sm]})
    return pd.DataFrame(rows)


def test_data_teacher_answers_only_from_data_shaped_by_system_message():
    teacher = DataTeacher.from_frame(fake_queries())
    assert not wants_explanation(SYSTEM_MESSAGES[1]) and not wants_explanation(SYSTEM_MESSAGES[16])
    assert wants_explanation(SYSTEM_MESSAGES[7]) and wants_explanation(SYSTEM_MESSAGES[11])
    user = "Question 2: what is 2 + 2?"
    short = teacher.complete([{"role": "user", "content": user}], 100)
    assert short.text == "4" and short.finish_reason == "stop"
    steps = teacher.complete([{"role": "system", "content": SYSTEM_MESSAGES[7]}, {"role": "user", "content": user}],
                             100)
    assert steps.text == "2 plus 2 makes 4.\n\nSo the answer is: 4"
    first = teacher.complete([{"role": "system", "content": SYSTEM_MESSAGES[10]},
                              {"role": "user", "content": user}], 100)
    assert first.text.startswith("Answer: 4\n\n2 plus 2")
    # Other collections: the reference output, whatever the system message asks.
    niv2 = teacher.complete([{"role": "system", "content": SYSTEM_MESSAGES[7]},
                             {"role": "user", "content": "Question 3: what is 3 + 3?"}], 100)
    assert niv2.text == "6"
    cut = teacher.complete([{"role": "system", "content": SYSTEM_MESSAGES[7]}, {"role": "user", "content": user}], 3)
    assert cut.finish_reason == "length" and cut.completion_tokens <= 3
    stopped = teacher.complete([{"role": "system", "content": SYSTEM_MESSAGES[7]},
                                {"role": "user", "content": user}], 100, stop=["\n\n"])
    assert stopped.text == "2 plus 2 makes 4."
    from orca_utils.teacher.local_server import ServerFault

    with pytest.raises(ServerFault):
        teacher.complete([{"role": "user", "content": "a query the data does not hold"}], 10)


def test_responses_and_train_frames_follow_the_contract():
    from orca_utils.augmentation import responses_frame, train_frame
    from orca_utils.contracts import RESPONSE_TABLE_COLUMNS, TRAIN_TABLE_COLUMNS
    from orca_utils.schemas import TeacherModelParams
    from orca_utils.teacher import ChatResult, ChatRun

    q = fake_queries(3)
    statuses = ["ok", "truncated", "error"]
    run = ChatRun([ChatResult(f"q{i}", "k", s, "t" if s != "error" else "", "stop", 1, 1, None, 1, False)
                   for i, s in enumerate(statuses)])
    teacher = TeacherModelParams(label="data teacher (FLAN-v2)", model="data-teacher")
    resp = responses_frame(q, run, teacher)
    assert list(resp.columns) == list(RESPONSE_TABLE_COLUMNS) and list(resp["status"]) == statuses
    train = train_frame(resp)
    assert list(train.columns) == list(TRAIN_TABLE_COLUMNS) and list(train["id"]) == ["q0"]


def _fake_upstream(run_dir: Path, overrides: str) -> None:
    from orca_utils.runs import setup_notebook

    _, run01 = setup_notebook("01_sampling", "smoke", run_dir=str(run_dir), overrides=overrides, quiet=True)
    q = fake_queries(12)
    q.to_parquet(run01.path("queries_stage1.parquet"), index=False)
    q.iloc[::2].to_parquet(run01.path("queries_stage2.parquet"), index=False)
    run01.save_metrics({"fake": 1})


def _files_holding(root: Path, secret: str) -> tuple[list[Path], list[Path]]:
    """(every file under `root`, those whose bytes contain `secret`)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return files, [p for p in files if secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_notebook_runs_and_the_api_key_never_lands_in_outputs(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    from orca_utils.runner import kernel_options

    secret = "sk-fake-" + "Zq9" * 12
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    overrides = "02_augmentation.stage2.max_queries=2;02_augmentation.stage2.max_tokens=6"
    _fake_upstream(tmp_path, overrides)
    out = tmp_path / "02_augmentation" / "02_augmentation.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(REPO / "notebooks" / "02_augmentation.ipynb"), str(out),
                               parameters={"profile": "smoke", "run_dir": str(tmp_path), "overrides": overrides},
                               cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3",
                               **kernel_options())
    folder = tmp_path / "02_augmentation"
    for name in ("responses_stage1.parquet", "train_stage1.parquet", "responses_stage2.parquet",
                 "train_stage2.parquet", "metrics.json", "fig_response_length_by_system_message.png"):
        assert (folder / name).exists(), name
    train1 = pd.read_parquet(folder / "train_stage1.parquet")
    assert len(train1) == 12 and (train1["teacher"] == "data teacher (FLAN-v2 references and CoT rationales)").all()
    resp2 = pd.read_parquet(folder / "responses_stage2.parquet")
    assert len(resp2) == 2 and "GPT" not in resp2["teacher"].iloc[0]
    assert not (leaked := _files_holding(tmp_path, secret)[1]), f"the API key leaked into {leaked}"
    # A rerun sends nothing: every response comes from the cache.
    out2 = tmp_path / "rerun.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "02_augmentation.ipynb"), str(out2),
                               parameters={"profile": "smoke", "run_dir": str(tmp_path), "overrides": overrides},
                               cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3",
                               **kernel_options())
    import json

    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert metrics["stage1/sent"] == 0 and metrics["stage2/sent"] == 0 and metrics["stage1/cached"] == 12
    # Nothing either run wrote holds the key: both executed notebooks, the response cache (with its WAL files),
    # tables, figures, metrics ...
    files, leaked = _files_holding(tmp_path, secret)
    assert {out, out2, folder / "teacher_cache.sqlite", folder / "metrics.json"} <= set(files), sorted(files)
    assert not leaked, f"the API key leaked into {leaked}"
    # ... and the scan does see a key where there is one.
    planted = folder / "planted.log"
    planted.write_text(f"Authorization: Bearer {secret}\n")
    assert _files_holding(tmp_path, secret)[1] == [planted]
