"""Chain tasks with difficulty as a dial, for notebook 09: a state-tracking family a small student can execute.

`lie_chain` is BBH's web_of_lies generalised to chains of any length: "Question: A lies. B says A tells the truth.
C says B lies. ... Does Z tell the truth?" Its answer is the parity of the number of "lies" in the question, the
classic case where answer-only training fails as the chain grows while step-by-step supervision makes it learnable
for small transformers. The input format is BBH's exactly (so the 250 real web_of_lies items are its real-data check
at their own length, 5 people), but the generator
- sets the number of people (`steps`, 2 to `MAX_PEOPLE`), so the difficulty curve can run far past BBH's 5;
- draws names from `NAMES`: 40 short common names and every name of the BBH items, so the real items are in
  distribution.

Its trace names no one. Line k is person k's state, from the claim of the k-th statement and line k-1's state:

    1: lies.
    2: says tells the truth, so lies.
    3: says lies, so tells the truth.

Why this trace (chosen by piloting, docs/09_explanation_vs_answer.md): an earlier trace that named each speaker
("B says A tells the truth, but A lies, so B lies.") was never learned by the laptop students (0% of whole traces at
up to 2M tokens): they learned its grammar and logic but wrote the same one or two names on every item instead of
copying them from the question. Without names, and with each line numbered so the student can find the k-th
statement, a 2-layer student reproduced 97-100% of whole traces at 1.6M tokens. The same solver writes BBH's
web_of_lies traces (`symbolic.solve_web_of_lies`), so the teacher's responses are the same whichever of the two
tasks it detects.

`truth_lookup` is its contrast for the prompt-erasure ablation, a task where a direct answer suffices: the question
states every person's truthfulness and asks about one of them ("Question: A lies. B tells the truth. Does B tell
the truth?"); the answer is one lookup.

The solvers return `(answer, full steps, key steps)`; `symbolic` wraps them in its `Solution` and registers both
tasks (`symbolic.CHAIN_TASKS`). This module imports nothing of the package.
"""
from __future__ import annotations

import random
import re

__all__ = ["CHAIN_TASKS", "CHAIN_NAMES", "BBH_NAMES", "NAMES", "MAX_PEOPLE", "BBH_SOURCE", "LIES_RE", "LOOKUP_RE",
           "verb", "solve_lie_chain", "generate_lie_chain", "solve_truth_lookup", "generate_truth_lookup",
           "count_people"]

CHAIN_TASKS = ("lie_chain", "truth_lookup")
# The BBH task whose real items a chain task is checked on (at their own length); truth_lookup has none.
BBH_SOURCE = {"lie_chain": "web_of_lies"}
# 40 short common names, and every name of BBH's web_of_lies items (names are vocabulary, not test items:
# `symbolic.generate_problems` still excludes every BBH input). A chain draws its people from both (`NAMES`), so the
# 250 real items are in distribution; the trace never copies a name, so names may take several tokens.
CHAIN_NAMES = ("Alice Bob Carol Dave Eve Frank Grace Henry Ivan Jack Kate Laura Mary Nick Oscar Paul Rose Sam Tom "
               "Anna Ben Chris Dan Emma Fred Gary Helen Jane Karl Lisa Mike Nora Pete Ruth Steve Tina Will Amy Joe "
               "Kim").split()
BBH_NAMES = ("Alejandro Alexis Amberly Andree Antwan Audrie Bernita Christie Conception Crista Dallas Delbert Delfina "
             "Elanor Fidel Fletcher Gwenn Helene Inga Jamey Jaymie Jerry Jim Ka Kandi Kristian Leda Lorine Maybelle "
             "Michael Michaela Millicent Millie Osvaldo Phoebe Rashida Raymond Ryan Sal Shalonda Shaunda Shenna "
             "Sherrie Sima Tamika Teressa Vernell Vina Willian Yoland").split()
NAMES = tuple(dict.fromkeys(CHAIN_NAMES + BBH_NAMES))
MAX_PEOPLE = 40
LIES_RE = re.compile(r"^Question: (\w+) (tells the truth|lies)\. ((?:\w+ says \w+ (?:tells the truth|lies)\. )+)"
                     r"Does (\w+) tell the truth\?$")
LOOKUP_RE = re.compile(r"^Question: ((?:\w+ (?:tells the truth|lies)\. )+)Does (\w+) tell the truth\?$")
_CLAIM = re.compile(r"(\w+) says (\w+) (tells the truth|lies)\.")
_FACT = re.compile(r"(\w+) (tells the truth|lies)\.")


def verb(truthful: bool) -> str:
    return "tells the truth" if truthful else "lies"


def count_people(task: str, text: str) -> int:
    """The number of people in a problem (the chain's length: `lie_chain`'s steps, `truth_lookup`'s list)."""
    if task == "lie_chain":
        return len(_CLAIM.findall(text)) + 1
    return len(_FACT.findall(text))


def solve_lie_chain(text: str) -> tuple[str, list[str], list[str]]:
    """(answer, full trace, key steps). The trace names no one: line k is person k's state, from the claim of the
    k-th statement (copied) and line k-1's state: "1: lies." then "2: says tells the truth, so lies." ... Each
    statement must speak of the previous speaker (a chain, as in every BBH item)."""
    match = LIES_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a lie_chain problem: {text[:80]!r}")
    first, said_first, claims, asked = match.groups()
    truth = {first: said_first == "tells the truth"}
    steps = [f"1: {said_first}."]
    previous = first
    for k, (speaker, subject, said) in enumerate(_CLAIM.findall(claims), 2):
        if subject != previous:
            raise ValueError(f"lie_chain: {speaker} speaks of {subject}, not of the previous speaker {previous}, "
                             f"in {text[:80]!r}")
        truth[speaker] = (said == "tells the truth") == truth[subject]
        steps.append(f"{k}: says {said}, so {verb(truth[speaker])}.")
        previous = speaker
    if asked != previous:
        raise ValueError(f"lie_chain: the question asks about {asked}, not the last speaker {previous}, in "
                         f"{text[:80]!r}")
    key = [" ".join(f"{k}: {'truth' if value else 'lies'}." for k, value in enumerate(truth.values(), 1))]
    return ("Yes" if truth[asked] else "No"), steps, key


def _people(rng: random.Random, steps: int | None, lo: int, hi: int, task: str) -> list[str]:
    n = steps if steps is not None else rng.randint(lo, hi)
    if not 2 <= n <= MAX_PEOPLE:
        raise ValueError(f"{task}: {n} people (expected 2-{MAX_PEOPLE})")
    return rng.sample(list(NAMES), n)


def generate_lie_chain(rng: random.Random, steps: int | None = None) -> str:
    """`steps`: the number of people (None: 3-8, the default training range)."""
    names = _people(rng, steps, 3, 8, "lie_chain")
    parts = [f"Question: {names[0]} {verb(rng.random() < 0.5)}."]
    parts += [f"{b} says {a} {verb(rng.random() < 0.5)}." for a, b in zip(names, names[1:])]
    return " ".join(parts) + f" Does {names[-1]} tell the truth?"


def solve_truth_lookup(text: str) -> tuple[str, list[str], list[str]]:
    match = LOOKUP_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a truth_lookup problem: {text[:80]!r}")
    facts, asked = match.groups()
    truth = {name: said == "tells the truth" for name, said in _FACT.findall(facts)}
    if asked not in truth:
        raise ValueError(f"truth_lookup: the question asks about {asked}, who is not listed, in {text[:80]!r}")
    line = f"{asked} {verb(truth[asked])}."
    return ("Yes" if truth[asked] else "No"), [line], [line]


def generate_truth_lookup(rng: random.Random, steps: int | None = None) -> str:
    """`steps`: the number of people listed (None: 3-8); the question asks about one of them."""
    names = _people(rng, steps, 3, 8, "truth_lookup")
    facts = " ".join(f"{n} {verb(rng.random() < 0.5)}." for n in names)
    return f"Question: {facts} Does {rng.choice(names)} tell the truth?"
