"""The Orca paper's 16 system messages (Table 2, the paper's numbering) and which ones each FLAN-v2 collection uses.

Orca pairs every training query with one system message, drawn from a subset that depends on the query's FLAN-v2
collection (the paper's figure of relative frequencies per collection). The texts below are verbatim from the
paper, including its grammar slips ("User will you give you", "who always provide"); a test checks them against
`reference/orca_paper_tables.json`. Message 1 is the empty system message.

The per-collection id sets come from one replica's reading of that figure (status `single-source` in the reference
file: the paper's bar heights were not found), so by default each message is drawn uniformly from its collection's
set; `assign_system_messages(..., weights=...)` takes other frequencies. Ids 8 and 10 are for multiple-choice
queries only (a statement of the paper): Flan2021 multiple-choice queries draw from {8, 10}, its other queries from
{3, 4, 7}, and no other query ever gets 8 or 10.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .reference import paper_block

__all__ = ["SYSTEM_MESSAGES", "MULTIPLE_CHOICE_ONLY", "COLLECTION_MESSAGE_IDS", "COLLECTION_IDS_STATUS",
           "allowed_message_ids", "message_weights", "assign_system_messages"]

SYSTEM_MESSAGES: dict[int, str] = {
    1: "",
    2: "You are an AI assistant. Provide a detailed answer so user don't need to search outside to understand the "
       "answer.",
    3: "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    4: "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old.",
    5: "You are an AI assistant that follows instruction extremely well. Help as much as you can.",
    6: "You are an AI assistant that helps people find information. Provide a detailed answer so user don't need to "
       "search outside to understand the answer.",
    7: "You are an AI assistant. User will you give you a task. Your goal is to complete the task as faithfully as "
       "you can. While performing the task think step-by-step and justify your steps.",
    8: "You should describe the task and explain your answer. While answering a multiple choice question, first "
       "output the correct answer(s). Then explain why other answers are wrong. Think like you are answering to a "
       "five year old.",
    9: "Explain how you used the definition to come up with the answer.",
    10: "You are an AI assistant. You should describe the task and explain your answer. While answering a multiple "
        "choice question, first output the correct answer(s). Then explain why other answers are wrong. You might "
        "need to use additional knowledge to answer the question.",
    11: "You are an AI assistant that helps people find information. User will you give you a question. Your task is "
        "to answer as faithfully as you can. While answering think step-by-step and justify your answer.",
    12: "User will you give you a task with some instruction. Your job is follow the instructions as faithfully as "
        "you can. While answering think step-by-step and justify your answer.",
    13: "You are a teacher. Given a task, you explain in simple steps what the task is asking, any guidelines it "
        "provides and how to use those guidelines to find the answer.",
    14: "You are an AI assistant, who knows every language and how to translate one language to another. Given a "
        "task, you explain in simple steps what the task is asking, any guidelines that it provides. You solve the "
        "task and show how you used the guidelines to solve the task.",
    15: "Given a definition of a task and a sample input, break the definition into small parts. Each of those parts "
        "will have some instruction. Explain their meaning by showing an example that meets the criteria in the "
        "instruction. Use the following format:\nPart #: a key part of the definition.\nUsage: Sample response that "
        "meets the criteria from the key part. Explain why you think it meets the criteria.",
    16: "You are an AI assistant that helps people find information.",
}

MULTIPLE_CHOICE_ONLY: frozenset[int] = frozenset({8, 10})

# Reference-file keys -> (collection, which queries): "all", "multiple_choice" or "other".
_REFERENCE_KEYS = {
    "CoT": ("cot", "all"), "NIV2": ("niv2", "all"), "T0": ("t0", "all"),
    "FLAN2021_multiple_choice": ("flan2021", "multiple_choice"), "FLAN2021_other": ("flan2021", "other"),
}


def _collection_ids() -> tuple[dict[str, dict[str, tuple[int, ...]]], str]:
    block = paper_block("system_message_collections")
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, ids in block["from_replica"]["mapping"].items():
        collection, which = _REFERENCE_KEYS[key]
        out.setdefault(collection, {})[which] = tuple(int(i) for i in ids)
    return out, f"{block['status']}: {block['status_detail']}"


COLLECTION_MESSAGE_IDS, COLLECTION_IDS_STATUS = _collection_ids()


def allowed_message_ids(collection: str, is_multiple_choice: bool) -> tuple[int, ...]:
    """The system-message ids a query of `collection` may get (8 and 10 only ever for multiple-choice queries)."""
    if collection not in COLLECTION_MESSAGE_IDS:
        raise KeyError(f"collection {collection!r}: no system-message set; expected one of "
                       f"{sorted(COLLECTION_MESSAGE_IDS)}")
    sets = COLLECTION_MESSAGE_IDS[collection]
    if "all" in sets:
        ids = sets["all"]
        return ids if is_multiple_choice else tuple(i for i in ids if i not in MULTIPLE_CHOICE_ONLY)
    return sets["multiple_choice" if is_multiple_choice else "other"]


def message_weights(collection: str, is_multiple_choice: bool,
                    weights: Mapping[str, Mapping[int, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) for one group of queries: uniform over the allowed set unless `weights[collection]`
    gives relative frequencies (ids outside the allowed set are an error; allowed ids it omits get weight 0)."""
    ids = np.array(allowed_message_ids(collection, is_multiple_choice), dtype=np.int64)
    given = (weights or {}).get(collection)
    if not given:
        return ids, np.full(len(ids), 1.0 / len(ids))
    unknown = sorted(int(i) for i in given if int(i) not in SYSTEM_MESSAGES)
    if unknown:
        raise ValueError(f"system_message_weights.{collection}: ids {unknown} are not system messages (1..16)")
    union = sorted({i for ids_ in COLLECTION_MESSAGE_IDS[collection].values() for i in ids_})
    outside = sorted(int(i) for i in given if int(i) not in union)
    if outside:
        raise ValueError(f"system_message_weights.{collection}: ids {outside} are not in the collection's set {union}")
    probs = np.array([float(given.get(int(i), given.get(str(i), 0.0))) for i in ids])
    if (probs < 0).any() or probs.sum() <= 0:
        raise ValueError(f"system_message_weights.{collection}: weights must be >= 0 with a positive sum for ids "
                         f"{ids.tolist()}, got {dict(given)}")
    return ids, probs / probs.sum()


def assign_system_messages(collections, is_multiple_choice, seed: int,
                           weights: Mapping[str, Mapping[int, float]] | None = None) -> np.ndarray:
    """One system-message id per query, drawn from its collection's allowed set (vectorised; deterministic per seed).

    `collections` and `is_multiple_choice` are equal-length array-likes. Groups are drawn in a fixed order, so the
    result depends only on the inputs and the seed.
    """
    collections = np.asarray(collections, dtype=object)
    mc = np.asarray(is_multiple_choice, dtype=bool)
    if collections.shape != mc.shape:
        raise ValueError(f"collections ({collections.shape}) and is_multiple_choice ({mc.shape}) differ in length")
    out = np.zeros(len(collections), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for collection in sorted(set(collections.tolist())):
        for flag in (False, True):
            rows = np.flatnonzero((collections == collection) & (mc == flag))
            if len(rows):
                ids, probs = message_weights(collection, flag, weights)
                out[rows] = rng.choice(ids, size=len(rows), p=probs)
    return out
