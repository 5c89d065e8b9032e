"""Exact and near duplicates among texts (queries or responses), the first occurrence kept.

- Exact: the same text once case and whitespace are set aside (compared by a 128-bit digest).
- Near: the Jaccard similarity of the two texts' sets of word `shingle_words`-grams is at least `threshold`.
  Candidates come from `datasketch`'s MinHash LSH (`num_perm` permutations, its bands chosen for `threshold`);
  each candidate is then checked with the exact Jaccard, so a reported pair is always at or above the threshold
  (a pair near the threshold may be missed: LSH is probabilistic).
- Boilerplate: a shingle found in at least `boilerplate_share` of one task's texts is left out of that task's sets
  before the near comparison. NIv2 queries are a long task definition plus a short instance, so whole queries of one
  task look alike: on the shared NIv2 sample (40 tasks, 2,369 queries), 933 of the 1,770 query pairs of one task
  (bless semantic relations) reach 0.9 on whole texts. With the task's shared shingles left out, no pair of distinct
  instances of any task reaches 0.9; the closest (one word apart under one template: "giraffe has head?" vs
  "giraffe has person?") reach 0.85, and 82 pairs reach 0.8. In a task of a few rows everything the rows share is
  left out, so near duplicates there are missed (exact ones never are): missing one costs a duplicate, a false
  match costs a distinct row.

Defaults (`params.DedupParams`): word 5-grams, as Lee et al. (2022, "Deduplicating Training Data Makes Language
Models Better") shingle web text; threshold 0.9 rather than their 0.8, since FLAN's queries are short and
templated, and 0.8 drops distinct NIv2 instances (above). Distinct FLAN CoT questions stay below 0.55.

Memory: the LSH holds about `num_perm` x 8 bytes per text compared; the sets are recomputed for the candidates.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .params import DedupParams

__all__ = ["Duplicate", "normalize", "shingles", "boilerplate", "jaccard", "find_duplicates"]

@dataclass(frozen=True)
class Duplicate:
    """Text `position` repeats the kept text at `of` (positions in the input order): exactly, or near with
    `jaccard` (of the shingle sets, boilerplate left out)."""

    position: int
    of: int
    reason: str             # "exact_duplicate" | "near_duplicate"
    jaccard: float


def normalize(text: str) -> str:
    """Lowercase, whitespace collapsed: what "the same text" means for exact duplicates."""
    return " ".join(str(text).lower().split())


def shingles(text: str, k: int) -> set[str]:
    """The set of word k-grams of `text` (words: lowercased, split at whitespace, punctuation kept, so that
    "x<0" and "x>0" differ; a text of fewer than k words is one shingle)."""
    words = str(text).lower().split()
    if not words:
        return set()
    return {" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))}


def boilerplate(sets: Sequence[set[str]], share: float) -> set[str]:
    """The shingles found in at least `share` of `sets` (one task's texts)."""
    if len(sets) < 2:
        return set()
    df = Counter(s for one in sets for s in one)
    need = share * len(sets)
    return {s for s, n in df.items() if n >= need}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def find_duplicates(texts: Sequence[str], groups: Sequence[str], params: DedupParams) -> list[Duplicate]:
    """Every text that repeats an earlier kept one, in input order. `groups` (one per text, e.g. the task) says
    whose shared shingles are boilerplate. Texts of fewer than `min_words` words are never compared."""
    if len(texts) != len(groups):
        raise ValueError(f"find_duplicates: {len(texts)} texts but {len(groups)} groups")
    texts = ["" if t is None else str(t) for t in texts]
    eligible = [len(t.split()) >= max(1, params.min_words) for t in texts]
    found: dict[int, Duplicate] = {}
    first: dict[bytes, int] = {}
    for i, text in enumerate(texts):
        if not eligible[i]:
            continue
        key = hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()
        if key in first:
            found[i] = Duplicate(i, first[key], "exact_duplicate", 1.0)
        else:
            first[key] = i
    if params.threshold < 1.0:
        found.update(_near(texts, groups, params, [e and i not in found for i, e in enumerate(eligible)]))
    return [found[i] for i in sorted(found)]


def _near(texts: list[str], groups: Sequence[str], params: DedupParams, todo: list[bool]) -> dict[int, Duplicate]:
    from datasketch import MinHash, MinHashLSH

    k = params.shingle_words
    common: dict[str, set[str]] = {}
    if params.boilerplate_share is not None:
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            if todo[i]:
                members.setdefault(str(g), []).append(i)
        common = {g: boilerplate([shingles(texts[i], k) for i in idx], params.boilerplate_share)
                  for g, idx in members.items()}

    def content(i: int) -> set[str]:
        return shingles(texts[i], k) - common.get(str(groups[i]), set())

    template = MinHash(num_perm=params.num_perm, seed=1)
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    out: dict[int, Duplicate] = {}
    for i, text in enumerate(texts):
        if not todo[i]:
            continue
        mine = content(i)
        if not mine:                     # nothing beyond its task's boilerplate: nothing to compare
            continue
        sketch = template.copy()         # shares the permutations: no new random draw per text
        sketch.update_batch([s.encode("utf-8") for s in mine])
        hits = sorted((j, jaccard(mine, content(j))) for j in lsh.query(sketch))
        match = next(((j, sim) for j, sim in hits if sim >= params.threshold), None)
        if match is not None:
            out[i] = Duplicate(i, match[0], "near_duplicate", round(match[1], 4))
        else:
            lsh.insert(i, sketch)
    return out
