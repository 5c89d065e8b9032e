"""Public sources: each dataset's pinned GitHub files, downloaded from a loopback server that serves the shared
data's files at their upstream raw paths, read by the same loaders with the same items as the local copy; the hub
layouts of AGIEval/BBH/TruthfulQA for the contamination check; a FLAN-v2 submix folder in the hub repo's layout.

The served paths are built at test time from `../shared/data/SOURCES.md` (repository @ commit and path there per
folder): a pin in `orca_utils.data` that names another commit or a path outside SOURCES.md is answered 404.
"""
from __future__ import annotations

import filecmp
import os
import re
import socket
import threading
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from orca_utils import data, paths
from orca_utils.data import DATASETS, GITHUB_SOURCES, DatasetNotFoundError, resolve_dataset

SHARED_DATA = Path(os.environ.get("ORCA_SHARED_DIR") or paths.SHARED_DIR) / "data"
NOT_DATA = {"LICENSE", "DATA_LICENSE", "README.md", "manifest.json"}   # kept beside the data, not read by loaders

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "SOURCES.md").is_file(),
                                reason=f"shared data not available ({SHARED_DATA})")


# ---------------------------------------------------------------- SOURCES.md and the loopback server

def sources_md() -> dict[str, tuple[str, str, list[str]]]:
    """folder -> (repo, commit, path patterns there), from SOURCES.md's table ("@ same": the row above's)."""
    out: dict[str, tuple[str, str, list[str]]] = {}
    repo = commit = ""
    for line in (SHARED_DATA / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].endswith("/"):
            continue
        pin = re.search(r"@ ([0-9a-f]{40}|same)", cells[2])
        if not pin:
            continue
        # "originally X; this copy from Y @ c", "Y (a fork of X) @ c": the repository is the first after the last ";"
        repo = re.findall(r"[\w.-]+/[\w.-]+", cells[2][: pin.start()].split(";")[-1])[0]
        commit = commit if pin.group(1) == "same" else pin.group(1)
        patterns = [p.strip().strip("`") for p in cells[3].split(",")]
        out[cells[0].split("/")[0]] = (repo, commit, [p + "*" if p.endswith("/") else p for p in patterns])
    return out


def served_files() -> dict[str, Path]:
    """URL path `/<owner>/<repo>/<commit>/<upstream path>` -> the shared data's copy of that file."""
    table = sources_md()
    out = {}
    for name, gh in GITHUB_SOURCES.items():
        folder = DATASETS[name].local
        repo, commit, patterns = table[folder]
        for upstream, local in gh.files:
            if any(fnmatch(upstream, p) for p in patterns):
                out[f"/{repo}/{commit}/{upstream}"] = SHARED_DATA / folder / local
    return out


class RawServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, Path]):
        super().__init__(("127.0.0.1", 0), RawHandler)
        self.files, self.missing, self.truncated, self.requests = files, set(), set(), []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RawHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        srv: RawServer = self.server
        srv.requests.append(self.path)
        path = srv.files.get(self.path)
        if path is None or self.path in srv.missing:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # a truncated answer promises the whole file and sends half, then the connection closes
        self.wfile.write(body[: len(body) // 2] if self.path in srv.truncated else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = RawServer(served_files())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _no_hub(*args, **kwargs):
    raise ConnectionError("the hub is not used in these tests")


def _public_only(mp: pytest.MonkeyPatch, root: Path, base: str) -> None:
    """No local root (../shared/data hidden, $ORCA_DATA_DIR empty), a fresh cache, GitHub at `base`, no hub."""
    import huggingface_hub

    (root / "empty").mkdir(parents=True, exist_ok=True)
    mp.setattr(data, "SHARED_DIR", root / "no_shared")
    mp.setenv("ORCA_DATA_DIR", str(root / "empty"))
    mp.setenv("ORCA_CACHE_DIR", str(root / "cache"))
    mp.setenv("ORCA_GITHUB_RAW_BASE", base)
    mp.delenv("HF_HUB_OFFLINE", raising=False)
    mp.setattr(huggingface_hub, "snapshot_download", _no_hub)


@pytest.fixture(scope="module")
def public(server, tmp_path_factory):
    """Every pinned dataset downloaded once from the loopback server; the environment stays public-only."""
    mp = pytest.MonkeyPatch()
    _public_only(mp, tmp_path_factory.mktemp("public"), server.base)
    locations = {name: resolve_dataset(name) for name in GITHUB_SOURCES}
    yield locations
    mp.undo()


@pytest.fixture
def fresh(server, tmp_path, monkeypatch):
    """Public-only with an empty cache of its own (for the failure cases)."""
    _public_only(monkeypatch, tmp_path, server.base)
    server.missing.clear()
    server.truncated.clear()
    server.requests.clear()
    return server


# ---------------------------------------------------------------- the pins

def test_pins_are_those_of_sources_md():
    table = sources_md()
    for name, gh in GITHUB_SOURCES.items():
        repo, commit, patterns = table[DATASETS[name].local]
        assert (gh.repo, gh.commit) == (repo, commit), name
        outside = [u for u, _ in gh.files if not any(fnmatch(u, p) for p in patterns)]
        assert not outside, f"{name}: {outside} not under {patterns}"


def test_pins_cover_every_local_data_file():
    for name, gh in GITHUB_SOURCES.items():
        folder = SHARED_DATA / DATASETS[name].local
        local = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name not in NOT_DATA}
        assert {loc for _, loc in gh.files} == local, name


def test_counts_of_the_brief():
    assert sum(u.startswith("bbh/") for u, _ in GITHUB_SOURCES["bbh"].files) == 27
    assert sum(u.startswith("cot-prompts/") for u, _ in GITHUB_SOURCES["bbh"].files) == 27
    assert len(GITHUB_SOURCES["toxigen"].files) == 31
    assert DATASETS["niv2"].github is None and DATASETS["niv2"].hub_id


# ---------------------------------------------------------------- downloaded copies read like the local ones

def test_every_dataset_resolves_from_github_into_the_cache(public):
    for name, loc in public.items():
        gh = GITHUB_SOURCES[name]
        assert loc.from_github and loc.origin == f"github:{gh.label}", name
        assert loc.path == Path(os.environ["ORCA_CACHE_DIR"]) / "data" / f"{name}@{gh.commit[:7]}"
        for _, local in gh.files:
            assert filecmp.cmp(loc.path / local, SHARED_DATA / DATASETS[name].local / local, shallow=False), local
        assert not list(loc.path.rglob("*.part"))


def test_second_resolve_downloads_nothing(public, server):
    before = len(server.requests)
    assert resolve_dataset("bbh").from_github and resolve_dataset("bbh", offline=True).from_github
    assert len(server.requests) == before


def _items(items):
    return [vars(i) for i in items]


@pytest.mark.parametrize("benchmark", ["bbh", "agieval"])
def test_eval_tasks_same_items(public, benchmark):
    from orca_utils.evaluation.tasks import load_benchmark

    remote = load_benchmark(public[benchmark].path, benchmark)
    local = load_benchmark(SHARED_DATA / benchmark, benchmark)
    assert {t: _items(v) for t, v in remote.items()} == {t: _items(v) for t, v in local.items()}
    assert sum(map(len, remote.values())) > 0


def test_bbh_task_file_as_experiment_reads_it(public):
    from orca_utils.experiment.pipeline import load_bbh_items

    pd.testing.assert_frame_equal(load_bbh_items(None, False, "navigate"),
                                  load_bbh_items(str(SHARED_DATA), False, "navigate"))


def test_truthfulqa_same_items(public):
    from orca_utils.safety import load_truthfulqa

    remote, local = load_truthfulqa(), load_truthfulqa(data_dir=SHARED_DATA)
    pd.testing.assert_frame_equal(remote, local)
    assert len(remote) == 817


def test_toxigen_same_prompts(public):
    from orca_utils.safety import list_toxigen_files, load_toxigen_prompts

    pd.testing.assert_frame_equal(list_toxigen_files(), list_toxigen_files(data_dir=SHARED_DATA))
    remote = load_toxigen_prompts(n_per_file=20, seed=3)
    pd.testing.assert_frame_equal(remote, load_toxigen_prompts(n_per_file=20, seed=3, data_dir=SHARED_DATA))
    assert len(list_toxigen_files()) == 31


@pytest.mark.parametrize("name,rows", [("vicuna_bench", 80), ("wizardlm", 218), ("awesome_prompts", 152)])
def test_prompt_sets_same_items(public, name, rows):
    from orca_utils.open_ended import load_prompt_set

    remote = load_prompt_set(name)
    pd.testing.assert_frame_equal(remote, load_prompt_set(name, data_dir=SHARED_DATA))
    assert len(remote) == rows and remote.attrs["origin"].startswith("github:")


def test_fastchat_judge_prompts_same(public):
    from orca_utils.judge import load_fastchat_templates

    pd.testing.assert_frame_equal(load_fastchat_templates(), load_fastchat_templates(data_dir=SHARED_DATA))


def test_flan_task_list_same(public):
    from orca_utils.flan import load_task_list

    remote = load_task_list(public["flan"].path / "flan_collection_info.csv")
    pd.testing.assert_frame_equal(remote, load_task_list(SHARED_DATA / "flan" / "flan_collection_info.csv"))
    assert set(remote["collection"]) >= {"cot", "niv2", "t0", "flan2021"}


def test_flan_cot_same_queries(public):
    from orca_utils.flan import load_cot_dir

    remote, rep_remote = load_cot_dir(public["flan_cot"].path)
    local, rep_local = load_cot_dir(SHARED_DATA / "flan_cot")
    pd.testing.assert_frame_equal(remote, local)
    assert (rep_remote.rows, rep_remote.files, rep_remote.malformed) == \
        (rep_local.rows, rep_local.files, rep_local.malformed)
    assert rep_remote.files == 7 and rep_remote.rows > 0


# ---------------------------------------------------------------- failures: one line naming what and where

def test_404_gives_one_line_naming_the_url(fresh):
    gh = GITHUB_SOURCES["vicuna_bench"]
    upstream = {loc: up for up, loc in gh.files}["reference_answer_gpt-4.jsonl"]
    fresh.missing.add(f"/{gh.repo}/{gh.commit}/{upstream}")
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("vicuna_bench")
    msg = str(info.value)
    assert "\n" not in msg
    assert f"HTTP 404 for {fresh.base}/{gh.repo}/{gh.commit}/{upstream}" in msg
    assert "$ORCA_DATA_DIR" in msg and "hub: no hub source for this dataset" in msg
    folder = Path(os.environ["ORCA_CACHE_DIR"]) / "data" / f"vicuna_bench@{gh.commit[:7]}"
    assert (folder / "question.jsonl").is_file()                      # what completed stays for the next try
    assert sorted(p.name for p in folder.iterdir()) == ["question.jsonl"]
    fresh.missing.clear()
    assert resolve_dataset("vicuna_bench").from_github                # the next try fetches only the rest
    assert sum("question.jsonl" in r for r in fresh.requests) == 1


def test_killed_download_leaves_no_half_file(fresh):
    gh = GITHUB_SOURCES["wizardlm"]
    fresh.truncated.add(f"/{gh.repo}/{gh.commit}/{gh.files[0][0]}")
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"{fresh.base}/{gh.repo}/{gh.commit}/")):
        resolve_dataset("wizardlm")
    folder = Path(os.environ["ORCA_CACHE_DIR"]) / "data" / f"wizardlm@{gh.commit[:7]}"
    assert not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize("how", ["param", "env"])
def test_offline_skips_the_download_and_says_so(fresh, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset("bbh", offline=how == "param")
    msg = str(info.value)
    assert f"github: {GITHUB_SOURCES['bbh'].label} (skipped: offline" in msg
    assert "hub: lukaemon/bbh (skipped: offline)" in msg
    assert fresh.requests == []


def test_raw_base_default_is_github():
    gh = GITHUB_SOURCES["truthfulqa"]
    assert gh.url("datasets/TruthfulQA.csv", base=data.GITHUB_RAW_BASE) == (
        "https://raw.githubusercontent.com/benedictflorance/truthfulqa_experiments/"
        "6fdfd38288e86296582a584694df5cf43d1f634a/datasets/TruthfulQA.csv")


# ---------------------------------------------------------------- contamination on the hub layouts

EVAL_SENTENCE = ("Which of the following statements about the migratory habits of arctic terns crossing the "
                 "southern ocean in early spring is best supported")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hub_fixtures(root: Path) -> dict[str, Path]:
    """Tiny snapshots in the hub layouts the loaders read: lukaemon/bbh, lm-eval's AGIEval copies, truthful_qa."""
    from orca_utils.evaluation.tasks import task_specs

    bbh, agieval, tqa = root / "lukaemon_bbh", root / "agieval", root / "truthful_qa"
    for spec in task_specs("bbh"):
        (bbh / spec.name).mkdir(parents=True)
        text = f"{EVAL_SENTENCE} ({spec.name})?" if spec.name == "navigate" else f"Question of {spec.name}?"
        pd.DataFrame({"input": [text], "target": ["Yes"]}).to_parquet(bbh / spec.name / "test-00000-of-00001.parquet")
    for spec in task_specs("agieval"):
        (agieval / spec.name.replace("-", "_")).mkdir(parents=True)
        query = f"Q: {EVAL_SENTENCE} ({spec.name})? Answer Choices: (A)x (B)y\nA: Among A through B, the answer is"
        pd.DataFrame({"query": [query if spec.name == "lsat-ar" else f"Q: {spec.name}?"], "choices": [["(A)x", "(B)y"]],
                      "gold": [[1]]}).to_parquet(agieval / spec.name.replace("-", "_") / "test-00000-of-00001.parquet")
    (tqa / "generation").mkdir(parents=True)
    pd.DataFrame({"type": ["Adversarial", "Non-Adversarial"], "category": ["Misc", "Misc"],
                  "question": [f"{EVAL_SENTENCE} by the evidence?", "What colour is the sky?"],
                  "best_answer": ["Terns migrate.", "Blue."],
                  "correct_answers": [["Terns migrate.", "They fly south."], ["Blue."]],
                  "incorrect_answers": [["Terns stay home."], ["Green."]],
                  "source": ["x", "y"]}).to_parquet(tqa / "generation" / "validation-00000-of-00001.parquet")
    return {"lukaemon/bbh": bbh, "baber/agieval": agieval, "truthfulqa/truthful_qa": tqa}


def test_contamination_reads_hub_snapshots(tmp_path, monkeypatch):
    import huggingface_hub

    from orca_utils.sampling.contamination import build_index, load_eval_texts, scan_queries

    snapshots = _hub_fixtures(tmp_path / "hub")
    _public_only(monkeypatch, tmp_path, f"http://127.0.0.1:{_closed_port()}")      # GitHub unreachable
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, repo_type, allow_patterns: str(snapshots[repo_id]))
    for name in ("agieval", "bbh", "truthfulqa"):
        assert resolve_dataset(name).from_hub
    texts = load_eval_texts(["agieval", "bbh", "truthfulqa"], offline=False)
    assert {k: len(v) for k, v in texts.items()} == {"agieval": 8, "bbh": 27, "truthfulqa": 2}
    report = scan_queries(build_index(texts), ["q_planted", "q_clean"],
                          [f"Consider: {EVAL_SENTENCE}. Explain.", "an unrelated training query"])
    hits = report.summary.set_index("eval_set")["items_with_overlap"].to_dict()
    assert hits == {"agieval": 1, "bbh": 1, "truthfulqa": 1}
    assert report.overlapping_query_ids == {"q_planted"}


def test_contamination_local_layout_unchanged():
    from orca_utils.sampling.contamination import load_eval_texts

    texts = load_eval_texts(["agieval", "bbh", "truthfulqa"], data_dir=SHARED_DATA)
    assert {k: len(v) for k, v in texts.items()} == {"agieval": 3546, "bbh": 6511, "truthfulqa": 817}


# ---------------------------------------------------------------- FLAN-v2 submix, streamed from a hub-layout folder

def _submix_folder(root: Path) -> Path:
    """A submix repo in the layout of DataProvenanceInitiative/<x>_submix_original: README.md with the dataset card's
    config (data/train-*) and data/train-*.parquet with columns inputs, targets, task_source, task_name,
    template_type."""
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text(
        "---\ndataset_info:\n  features:\n  - name: inputs\n    dtype: string\n  - name: targets\n    dtype: string\n"
        "  - name: task_source\n    dtype: string\n  - name: task_name\n    dtype: string\n  - name: template_type\n"
        "    dtype: string\n  splits:\n  - name: train\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: data/train-*\n---\n# Dataset Card for \"cot_submix_original\"\n")
    rows = [("Is the sky blue? Options:\n- yes\n- no", "yes", "cot_creak", "zs_opt"),
            ("How many legs has a cat?", "4", "cot_gsm8k", "zs_noopt"),
            ("Q: 1+1? A: 2\n\nQ: 2+2?", "4", "cot_gsm8k", "fs_noopt"),
            ("Which word rhymes?", "x", "bigbench_rhymes", "zs_noopt"),
            ("   ", "empty", "cot_qasc", "zs_noopt"),
            ("What do plants need?", "light", "cot_qasc", "zs_noopt")]
    pd.DataFrame(rows, columns=["inputs", "targets", "task_name", "template_type"]).assign(task_source="CoT")[
        ["inputs", "targets", "task_source", "task_name", "template_type"]].to_parquet(
        root / "data" / "train-00000-of-00001-0123456789abcdef.parquet")
    return root


def test_flan_submix_streams_from_a_local_hub_layout_folder(tmp_path):
    from orca_utils.flan import LoadReport, iter_hub_submix
    from orca_utils.sampling.stages import load_hub_collection

    folder = str(_submix_folder(tmp_path / "cot_submix_original"))
    raw = list(iter_hub_submix(folder))
    assert len(raw) == 6 and set(raw[0]) == {"inputs", "targets", "task_source", "task_name", "template_type"}
    report = LoadReport(source=folder, collection="cot")
    df = load_hub_collection("cot", folder, quota=10, max_rows_per_task=None, seed=0, report=report)
    assert sorted(df["task"]) == ["cot_creak", "cot_gsm8k", "cot_qasc"]          # zero-shot, no Big-Bench, no empty
    assert df.set_index("task").loc["cot_creak", "template_type"] == "zs_opt"
    assert bool(df.set_index("task").loc["cot_creak", "is_multiple_choice"])
    assert report.malformed["empty inputs"] == 1
