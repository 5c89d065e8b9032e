"""Contamination check: 13-gram overlap between sampled training queries and the evaluation sets.

As in GPT-3's and lm-evaluation-harness's decontamination: text is lowercased, punctuation is deleted, and split on
whitespace; two texts overlap when they share any n-gram of n = 13 tokens. The evaluation side is small, so its
n-grams go into one hashed index (sorted 64-bit hashes, each with the evaluation item holding it); the training side,
which can be millions of queries, is streamed through the index in chunks and never held as a whole.

The report says per evaluation set how many items share at least one 13-gram with some training query (with
examples), and which training queries overlap (`drop_overlapping` removes them). Evaluation items shorter than n
tokens cannot be checked this way and are counted as `items_too_short`.
"""
from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.sets import local_tasks, read_agieval, read_bbh

__all__ = ["normalize_tokens", "ngram_hashes", "NgramIndex", "ContaminationReport", "build_index",
           "scan_queries", "drop_overlapping", "load_eval_texts", "EVAL_SETS"]

EVAL_SETS = ("agieval", "bbh", "truthfulqa", "vicuna_bench", "wizardlm", "awesome_prompts")
_TABLE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)


def normalize_tokens(text: str) -> list[str]:
    """Lowercase, delete ASCII punctuation, split on whitespace (the lm-eval / GPT-3 decontamination recipe)."""
    return text.translate(_TABLE).lower().split()


def _hash(gram: str) -> int:
    # Python's own string hash: fast, 64-bit, and consistent within a process, which is all the index needs
    # (it is built and queried in the same process, never saved).
    return hash(gram)


def _grams(toks: list[str], n: int):
    return map(" ".join, zip(*(toks[i:] for i in range(n))))


def ngram_hashes(text: str, n: int = 13) -> list[int]:
    """64-bit hashes of every n-gram of the normalized text (valid within one process)."""
    return list(map(_hash, _grams(normalize_tokens(text), n)))


@dataclass
class NgramIndex:
    """Sorted n-gram hashes of the evaluation side, each with its owner (eval set code << 32 | item index)."""

    n: int
    hashes: np.ndarray                                    # int64, sorted
    owners: np.ndarray                                    # int64, aligned with `hashes`
    names: list[str]                                      # eval set code -> name
    texts: dict[str, list[str]]                           # eval set -> its item texts
    too_short: dict[str, int]

    def lookup(self, gram_hash: int) -> list[tuple[str, int]]:
        lo = int(np.searchsorted(self.hashes, gram_hash, side="left"))
        hi = int(np.searchsorted(self.hashes, gram_hash, side="right"))
        return [(self.names[int(o) >> 32], int(o) & 0xFFFFFFFF) for o in self.owners[lo:hi]]


def build_index(eval_texts: Mapping[str, list[str]], n: int = 13) -> NgramIndex:
    """The hashed n-gram index of the evaluation side (two numpy arrays, searched by bisection)."""
    hashes: list[int] = []
    owners: list[int] = []
    too_short = {}
    names = list(eval_texts)
    for code, name in enumerate(names):
        short = 0
        for i, text in enumerate(eval_texts[name]):
            item_hashes = set(map(_hash, _grams(normalize_tokens(text), n)))
            short += not item_hashes
            hashes.extend(item_hashes)
            owners.extend([(code << 32) | i] * len(item_hashes))
        too_short[name] = short
    h = np.array(hashes, dtype=np.int64)
    order = np.argsort(h, kind="stable")
    return NgramIndex(n, h[order], np.array(owners, dtype=np.int64)[order], names,
                      {k: list(v) for k, v in eval_texts.items()}, too_short)


@dataclass
class ContaminationReport:
    summary: pd.DataFrame                                  # one row per eval set
    examples: pd.DataFrame                                 # eval set, eval item, training query id, shared n-gram
    overlapping_query_ids: set[str] = field(default_factory=set)


def scan_queries(index: NgramIndex, ids: Iterable[str], texts: Iterable[str], max_examples: int = 3,
                 progress: bool = False, chunk_queries: int = 10_000) -> ContaminationReport:
    """Stream training queries through the index in chunks (hash in Python, membership test in numpy)."""
    hit_items: dict[str, set[int]] = defaultdict(set)
    hit_queries: dict[str, set[str]] = defaultdict(set)
    examples: list[dict] = []
    shown: dict[str, int] = defaultdict(int)
    pairs = zip(ids, texts)
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc=f"{index.n}-gram scan", unit="query")
    n = index.n
    while True:
        chunk = list(islice(pairs, chunk_queries))
        if not chunk:
            break
        grams = [list(_grams(normalize_tokens(text), n)) for _, text in chunk]
        flat = np.fromiter((_hash(g) for gs in grams for g in gs), dtype=np.int64,
                           count=sum(len(gs) for gs in grams))
        at = np.minimum(np.searchsorted(index.hashes, flat), max(0, len(index.hashes) - 1))
        hit = index.hashes[at] == flat if len(index.hashes) else np.zeros(len(flat), bool)
        if not hit.any():
            continue
        which = np.repeat(np.arange(len(chunk)), [len(gs) for gs in grams])
        offsets = np.concatenate([[0], np.cumsum([len(gs) for gs in grams])])
        for pos in np.flatnonzero(hit):
            q = int(which[pos])
            qid, gram = chunk[q][0], grams[q][pos - offsets[q]]
            for name, item in index.lookup(int(flat[pos])):
                if item not in hit_items[name] and shown[name] < max_examples:
                    shown[name] += 1
                    examples.append({"eval_set": name, "eval_item": item, "eval_text": index.texts[name][item][:160],
                                     "query_id": qid, "shared_ngram": gram})
                hit_items[name].add(item)
                hit_queries[name].add(qid)
    rows = []
    for name, texts_ in index.texts.items():
        rows.append({"eval_set": name, "items": len(texts_), "items_too_short": index.too_short.get(name, 0),
                     "items_with_overlap": len(hit_items[name]),
                     "overlap_pct": round(100 * len(hit_items[name]) / max(1, len(texts_)), 2),
                     "training_queries_overlapping": len(hit_queries[name])})
    all_q = set().union(*hit_queries.values()) if hit_queries else set()
    return ContaminationReport(pd.DataFrame(rows), pd.DataFrame(examples, columns=[
        "eval_set", "eval_item", "eval_text", "query_id", "shared_ngram"]), all_q)


def drop_overlapping(df: pd.DataFrame, report: ContaminationReport) -> pd.DataFrame:
    """`df` without the training queries that share an n-gram with any evaluation item."""
    return df[~df["id"].isin(report.overlapping_query_ids)].reset_index(drop=True)


# The evaluation sets' item texts, for the local layout and the hub snapshots alike: AGIEval, BBH and TruthfulQA are
# read by `orca_utils.evaluation.sets` (the readers the evaluation notebooks use), the open-ended sets by
# `orca_utils.evaluation.prompt_sets.load_prompt_set` (the loaders notebook 07 uses).
def _agieval_text(row: dict) -> str:
    if "query" in row:                                     # lm-eval's hub copies: the question as asked
        return str(row["query"])
    options = row.get("options")
    options = " ".join(map(str, options)) if options is not None and not isinstance(options, str) else options
    return "\n".join(x for x in (row.get("passage"), row.get("question"), options) if isinstance(x, str) and x)


def _tasks(root: Path, benchmark: str) -> list[str]:
    """Every task file of the local folder (AGIEval: the English tasks and math), else the engine's tasks of the hub
    copy (AGIEval's English tasks, BBH's 27)."""
    from ..evaluation.tasks import task_specs

    return local_tasks(root, benchmark) or [spec.name for spec in task_specs(benchmark)]


def _agieval(root: Path) -> list[str]:
    return [_agieval_text(row) for task in _tasks(root, "agieval") for row in read_agieval(root, task)]


def _bbh(root: Path) -> list[str]:
    return [str(row["input"]) for task in _tasks(root, "bbh") for row in read_bbh(root, task)]


def load_eval_texts(names: Iterable[str], data_dir: str | None = None, offline: bool = True) -> dict[str, list[str]]:
    """The text of every item of each evaluation set (what a model is asked), read through the data root."""
    from ..data import resolve_dataset
    from ..evaluation.sets import load_truthfulqa
    from ..evaluation.prompt_sets import load_prompt_set

    readers = {"agieval": _agieval, "bbh": _bbh}
    out = {}
    for name in names:
        if name in readers:
            out[name] = readers[name](Path(resolve_dataset(name, data_dir, offline).path))
        elif name == "truthfulqa":
            out[name] = load_truthfulqa(data_dir, offline)["question"].astype(str).tolist()
        elif name in ("vicuna_bench", "wizardlm", "awesome_prompts"):
            out[name] = load_prompt_set(name, data_dir, offline)["prompt"].astype(str).tolist()
        else:
            raise ValueError(f"evaluation set {name!r}: expected one of {list(EVAL_SETS)}")
    return out
