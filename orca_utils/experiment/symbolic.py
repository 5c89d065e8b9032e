"""Programmatically solvable Big-Bench Hard tasks: generators of fresh problems, and solvers that explain.

Nine BBH tasks have problems a program can both write and solve: `boolean_expressions`,
`multistep_arithmetic_two`, `object_counting`, `dyck_languages`, `web_of_lies`, `tracking_shuffled_objects` with
three, five and seven objects, and `navigate`. For each one this module holds
- a generator that draws a fresh problem in the exact BBH input format (`generate_problems` excludes every input
  that equals a BBH test item, so training never sees the benchmark), with an optional number of steps (`steps`:
  swaps, instructions, operators, people, ...; `STEP_UNITS`, read back by `count_steps`) for the difficulty curve,
  and
- a solver that returns the answer and the steps that lead to it, at two levels of detail: `full` (every rewrite,
  stack move, swap or move, the GPT-4-like "complex explanation trace") and `short` (only the key intermediate
  results, the ChatGPT-like "easier teacher" of Orca's progressive learning).

`explain(task, text, style)` writes the response of each style (`answer` | `short` | `full`); every style ends
with the same sentence, "So the answer is X.", so one extractor scores them all. The teacher that serves these
responses through the OpenAI-compatible local server is `orca_utils.experiment.symbolic_teacher`.

Two generated task families that are not BBH tasks are registered beside them (`CHAIN_TASKS`, from
`experiment.chains`): `lie_chain` (web_of_lies with the number of people as a dial, 2 to 40) and `truth_lookup`
(its direct-answer contrast). `ALL_TASKS` holds both groups; `TASKS` stays the nine BBH tasks.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from . import chains

__all__ = ["TASKS", "CHAIN_TASKS", "ALL_TASKS", "BBH_SOURCE", "TSO_TASKS", "ANSWER_KINDS", "ANSWER_LABELS",
           "STEP_UNITS", "STYLES", "Solution", "score", "solve", "explain", "count_steps", "options_of",
           "generate_input", "generate_problems", "detect_task", "answer_sentence", "TRACE_VERSION"]

# Versions the teacher's traces: part of notebook 09's run key and of its teacher-cache file names, so that a
# changed trace never reuses responses or students made with the old one. Bump it when a solver's steps change.
TRACE_VERSION = "trace2"

TSO_TASKS = ("tracking_shuffled_objects_three_objects", "tracking_shuffled_objects_five_objects",
             "tracking_shuffled_objects_seven_objects")
TASKS = ("boolean_expressions", "multistep_arithmetic_two", "object_counting", "dyck_languages", "web_of_lies",
         *TSO_TASKS, "navigate")
CHAIN_TASKS = chains.CHAIN_TASKS
ALL_TASKS = (*TASKS, *CHAIN_TASKS)
BBH_SOURCE = {**{t: t for t in TASKS}, **chains.BBH_SOURCE}     # whose real BBH items a task is evaluated on
# How `orca_utils.evaluation.extract.score_prediction` reads each task's answer (kind, and labels for booleans).
ANSWER_KINDS = {"boolean_expressions": "boolean", "multistep_arithmetic_two": "number",
                "object_counting": "number", "dyck_languages": "brackets", "web_of_lies": "boolean",
                **{t: "choice" for t in TSO_TASKS}, "navigate": "boolean",
                **{t: "boolean" for t in CHAIN_TASKS}}
ANSWER_LABELS: dict[str, tuple[str, str] | None] = {"web_of_lies": ("Yes", "No"), "navigate": ("Yes", "No"),
                                                    **{t: ("Yes", "No") for t in CHAIN_TASKS}}
# What one reasoning step is, per task: `count_steps` counts them, `generate_input(..., steps=k)` sets them.
STEP_UNITS = {"boolean_expressions": "operators", "multistep_arithmetic_two": "operators",
              "object_counting": "items", "dyck_languages": "symbols", "web_of_lies": "people",
              **{t: "swaps" for t in TSO_TASKS}, "navigate": "instructions",
              **{t: "people" for t in CHAIN_TASKS}}
STYLES = ("answer", "short", "full")


@dataclass(frozen=True)
class Solution:
    answer: str
    steps: list[str]        # the full trace, one line per step
    key_steps: list[str]    # the short explanation: only the key intermediate results


def answer_sentence(answer: str) -> str:
    return f"So the answer is {answer}."


# ---------------------------------------------------------------- boolean_expressions
_BOOL_TOKENS = {"True", "False", "not", "and", "or", "(", ")"}


def _reduce_flat(tokens: list[str]) -> list[str]:
    """One rewrite inside a parenthesis-free span: `not V`, else the leftmost `V and V`, else `V or V`."""
    for i in range(len(tokens) - 1, -1, -1):              # rightmost `not` directly before a value
        if tokens[i] == "not" and i + 1 < len(tokens) and tokens[i + 1] in ("True", "False"):
            return tokens[:i] + [str(tokens[i + 1] == "False")] + tokens[i + 2:]
    for op in ("and", "or"):
        for i in range(1, len(tokens) - 1):
            if tokens[i] == op and tokens[i - 1] in ("True", "False") and tokens[i + 1] in ("True", "False"):
                a, b = tokens[i - 1] == "True", tokens[i + 1] == "True"
                value = (a and b) if op == "and" else (a or b)
                return tokens[:i - 1] + [str(value)] + tokens[i + 2:]
    raise ValueError(f"cannot reduce boolean expression {' '.join(tokens)!r}")


def _reduce_bool(tokens: list[str]) -> list[str]:
    """One rewrite: inside the first innermost parenthesis (dropping `( V )`), else at top level."""
    opens = [i for i, t in enumerate(tokens) if t == "("]
    for start in reversed(opens):
        end = tokens.index(")", start)
        if "(" in tokens[start + 1:end]:
            continue
        inner = tokens[start + 1:end]
        if len(inner) == 1:
            return tokens[:start] + inner + tokens[end + 1:]
        return tokens[:start + 1] + _reduce_flat(inner) + tokens[end:]
    return _reduce_flat(tokens)


def solve_boolean_expressions(text: str) -> Solution:
    tokens = text.split()
    if not tokens or tokens[-1] != "is" or not set(tokens[:-1]) <= _BOOL_TOKENS:
        raise ValueError(f"not a boolean_expressions problem: {text!r}")
    tokens = tokens[:-1]
    states = [" ".join(tokens)]
    while len(tokens) > 1:
        tokens = _reduce_bool(tokens)
        states.append(" ".join(tokens))
    steps = [f"{states[0]}"] + [f"= {s}" for s in states[1:]]
    key = [f"{states[0]}"] + [f"= {s}" for s in states[1:-1][1::2]] + [f"= {states[-1]}"] if len(states) > 1 \
        else steps
    return Solution(tokens[0], steps, key)


def _random_bool_expr(rng: random.Random, depth: int) -> list[str]:
    roll = rng.random()
    if depth <= 0 or roll < 0.3:
        return [rng.choice(["True", "False"])]
    if roll < 0.5:
        return ["not"] + _random_bool_expr(rng, depth - 1)
    if roll < 0.65:
        return ["("] + _random_bool_expr(rng, depth - 1) + [")"]
    return _random_bool_expr(rng, depth - 1) + [rng.choice(["and", "or"])] + _random_bool_expr(rng, depth - 1)


def generate_boolean_expressions(rng: random.Random, steps: int | None = None) -> str:
    """`steps`: the number of operators (`not`, `and`, `or`); BBH's items hold 1-7, mostly 2-5."""
    for _ in range(100_000):                               # BBH items have exactly 8 tokens before "is"
        tokens = _random_bool_expr(rng, 4)
        if len(tokens) == 8 and (steps is None or sum(t in ("not", "and", "or") for t in tokens) == steps):
            return " ".join(tokens) + " is"
    raise ValueError(f"boolean_expressions: no 8-token expression with {steps} operators drawn")


# ---------------------------------------------------------------- multistep_arithmetic_two
_ARITH = re.compile(r"^\(\((.*)\) ([-+*]) \((.*)\)\) =$")


def _arith_terms(expr: str) -> list[str]:
    parts = expr.split()
    if len(parts) % 2 == 0 or any(not re.fullmatch(r"-?\d+", p) for p in parts[0::2]) \
            or any(p not in "+-*" for p in parts[1::2]):
        raise ValueError(f"not a flat arithmetic expression: {expr!r}")
    return parts


def _reduce_arith(parts: list[str]) -> list[str]:
    """One rewrite: the leftmost `*`, else the leftmost `+`/`-` (left to right)."""
    ops = parts[1::2]
    k = ops.index("*") if "*" in ops else 0
    i = 2 * k + 1
    a, op, b = int(parts[i - 1]), parts[i], int(parts[i + 1])
    value = a * b if op == "*" else a + b if op == "+" else a - b
    return parts[:i - 1] + [str(value)] + parts[i + 2:]


def _trace_arith(name: str, expr: str) -> tuple[int, str, str]:
    parts = _arith_terms(expr)
    states = [" ".join(parts)]
    while len(parts) > 1:
        parts = _reduce_arith(parts)
        states.append(" ".join(parts))
    return int(parts[0]), f"{name} = " + " = ".join(states) + ".", f"{name} = {parts[0]}."


def solve_multistep_arithmetic_two(text: str) -> Solution:
    match = _ARITH.match(text.strip())
    if not match:
        raise ValueError(f"not a multistep_arithmetic_two problem: {text!r}")
    left, op, right = match.groups()
    a, full_a, short_a = _trace_arith("A", left)
    b, full_b, short_b = _trace_arith("B", right)
    value = a * b if op == "*" else a + b if op == "+" else a - b
    last = f"A {op} B = {a} {op} {b} = {value}."
    return Solution(str(value), [full_a, full_b, last], [short_a, short_b, last])


def generate_multistep_arithmetic_two(rng: random.Random, steps: int | None = None) -> str:
    if steps not in (None, 7):
        raise ValueError("multistep_arithmetic_two: every problem has 7 operators (steps=7)")

    def flat() -> str:
        nums = [str(rng.randint(-9, 9)) for _ in range(4)]
        ops = [rng.choice("+-*") for _ in range(3)]
        return " ".join(x for pair in zip(nums, ops + [""]) for x in pair if x)
    return f"(({flat()}) {rng.choice('+-*')} ({flat()})) ="


# ---------------------------------------------------------------- object_counting
# (singular, plural, category); every item of the BBH task is here (tests check all 250 items are solved).
_ITEMS = [
    *[(s, p, "musical instruments") for s, p in [
        ("accordion", "accordions"), ("clarinet", "clarinets"), ("drum", "drums"), ("flute", "flutes"),
        ("piano", "pianos"), ("trombone", "trombones"), ("trumpet", "trumpets"), ("violin", "violins")]],
    *[(s, p, "fruits") for s, p in [
        ("apple", "apples"), ("banana", "bananas"), ("blackberry", "blackberries"), ("grape", "grapes"),
        ("nectarine", "nectarines"), ("orange", "oranges"), ("peach", "peaches"), ("plum", "plums"),
        ("raspberry", "raspberries"), ("strawberry", "strawberries")]],
    *[(s, p, "vegetables") for s, p in [
        ("cabbage", "cabbages"), ("carrot", "carrots"), ("cauliflower", "cauliflowers"), ("garlic", "garlics"),
        ("head of broccoli", "heads of broccoli"), ("lettuce head", "lettuce heads"), ("onion", "onions"),
        ("potato", "potatoes"), ("stalk of celery", "stalks of celery"), ("yam", "yams")]],
    *[(s, p, "animals") for s, p in [
        ("bear", "bears"), ("cat", "cats"), ("chicken", "chickens"), ("cow", "cows"), ("dog", "dogs"),
        ("donkey", "donkeys"), ("duck", "ducks"), ("fish", "fish"), ("frog", "frogs"), ("goat", "goats"),
        ("mouse", "mice"), ("pig", "pigs"), ("rabbit", "rabbits"), ("snail", "snails"), ("snake", "snakes")]],
    *[(s, p, "objects") for s, p in [
        ("bed", "beds"), ("car", "cars"), ("chair", "chairs"), ("couch", "couches"), ("fridge", "fridges"),
        ("lamp", "lamps"), ("microwave", "microwaves"), ("oven", "ovens"), ("stove", "stoves"),
        ("table", "tables"), ("toaster", "toasters")]],
]
_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5}
_LOOKUP = {**{s: (s, 1, c) for s, _, c in _ITEMS}, **{p: (p, 0, c) for _, p, c in _ITEMS}}
_COUNTING = re.compile(r"^I have (.*)\. How many (.*) do I have\?$")


def _parse_item(phrase: str) -> tuple[str, int, str]:
    word, _, rest = phrase.partition(" ")
    count = 1 if word in ("a", "an") else _NUMBERS.get(word)
    if count is None or rest not in _LOOKUP:
        raise ValueError(f"unknown object_counting item {phrase!r}")
    name, _, category = _LOOKUP[rest]
    return name, count, category


def solve_object_counting(text: str) -> Solution:
    match = _COUNTING.match(text.strip())
    if not match:
        raise ValueError(f"not an object_counting problem: {text!r}")
    listing, asked = match.groups()
    items = [_parse_item(p) for p in re.split(r", and |, | and ", listing) if p]
    relevant = [(name, count) for name, count, category in items if category == asked]
    counts = [str(c) for _, c in relevant] or ["0"]
    total = sum(c for _, c in relevant)
    full = [f"We first identify the {asked} on the list and include their quantity in parentheses:",
            *[f"- {name} ({count})" for name, count in relevant],
            f"Now, let's add the numbers in parentheses: {' + '.join(counts)} = {total}."]
    return Solution(str(total), full, [f"{asked.capitalize()}: {' + '.join(counts)} = {total}."])


def generate_object_counting(rng: random.Random, steps: int | None = None) -> str:
    """`steps`: the number of listed items (BBH: 2-10)."""
    asked = rng.choice(sorted({c for _, _, c in _ITEMS}))
    pool = [item for item in _ITEMS if item[2] == asked]
    others = [item for item in _ITEMS if item[2] != asked]
    n_items = rng.randint(2, 10) if steps is None else steps
    if not 2 <= n_items <= 20:
        raise ValueError(f"object_counting: {n_items} items (expected 2-20)")
    n_asked = rng.randint(1, min(n_items, len(pool)))
    chosen = rng.sample(pool, n_asked) + rng.sample(others, n_items - n_asked)
    rng.shuffle(chosen)
    phrases = []
    for singular, plural, _ in chosen:
        count = 1 if rng.random() < 0.7 else rng.randint(2, 5)
        if count == 1:
            phrases.append(("an " if singular[0] in "aeiou" else "a ") + singular)
        else:
            phrases.append(f"{[k for k, v in _NUMBERS.items() if v == count][0]} {plural}")
    listing = ", ".join(phrases[:-1]) + ", and " + phrases[-1]
    return f"I have {listing}. How many {asked} do I have?"


# ---------------------------------------------------------------- dyck_languages
_DYCK_PREFIX = "Complete the rest of the sequence, making sure that the parentheses are closed properly. Input: "
_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}


def solve_dyck_languages(text: str) -> Solution:
    if not text.startswith(_DYCK_PREFIX):
        raise ValueError(f"not a dyck_languages problem: {text[:80]!r}")
    stack: list[str] = []
    steps = []
    for symbol in text[len(_DYCK_PREFIX):].split():
        if symbol in _PAIRS:
            stack.append(symbol)
        elif stack and _PAIRS[stack[-1]] == symbol:
            stack.pop()
        else:
            raise ValueError(f"dyck_languages: unbalanced symbol {symbol!r} in {text!r}")
        steps.append(f"{symbol} {''.join(stack) or '-'}")   # compact: the stack after the symbol
    answer = " ".join(_PAIRS[s] for s in reversed(stack))
    close = f"Unclosed: {' '.join(stack)}. Close them in reverse order: {answer}."
    return Solution(answer, ["Stack after each symbol:", *steps, close], [close])


def generate_dyck_languages(rng: random.Random, steps: int | None = None) -> str:
    """`steps`: the number of symbols in the input (BBH: 3-30 or so)."""
    for _ in range(10_000):
        symbols: list[str] = []
        stack: list[str] = []
        length = rng.randint(3, 30) if steps is None else steps
        while len(symbols) < length or not stack:
            if stack and rng.random() < 0.45:
                symbols.append(_PAIRS[stack.pop()])
            else:
                opener = rng.choice(list(_PAIRS))
                symbols.append(opener)
                stack.append(opener)
        if steps is None or len(symbols) == steps:
            return _DYCK_PREFIX + " ".join(symbols)
    raise ValueError(f"dyck_languages: no input of {steps} symbols drawn")


# ---------------------------------------------------------------- web_of_lies
# Every name of the BBH task's items (names are vocabulary, not test items; `generate_problems` still excludes
# every BBH input). Each BBH item: one person's truthfulness, four "X says Y tells the truth/lies", a question.
_NAMES = chains.BBH_NAMES
_LIES = chains.LIES_RE                  # the same format as lie_chain


_verb = chains.verb


def solve_web_of_lies(text: str) -> Solution:
    """BBH's web_of_lies is `lie_chain` at 5 people: the same solver and trace (`chains.solve_lie_chain`)."""
    if not _LIES.match(text.strip()):
        raise ValueError(f"not a web_of_lies problem: {text!r}")
    return Solution(*chains.solve_lie_chain(text))


def generate_web_of_lies(rng: random.Random, steps: int | None = None) -> str:
    """`steps`: the number of people. BBH's items all have 5; training problems take 5 half the time and 3-7
    otherwise, so that the difficulty curve is measured inside the training distribution."""
    people = steps if steps is not None else 5 if rng.random() < 0.5 else rng.randint(3, 7)
    if not 2 <= people <= len(_NAMES):
        raise ValueError(f"web_of_lies: {people} people (expected 2-{len(_NAMES)})")
    names = rng.sample(_NAMES, people)
    parts = [f"Question: {names[0]} {_verb(rng.random() < 0.5)}."]
    parts += [f"{b} says {a} {_verb(rng.random() < 0.5)}." for a, b in zip(names, names[1:])]
    return " ".join(parts) + f" Does {names[-1]} tell the truth?"


# ---------------------------------------------------------------- tracking_shuffled_objects (3, 5, 7 objects)
# The five scenes of the BBH items, verbatim: (intro, start, holding pattern, trade sentence, swap verb, question
# pattern, object pool). Every object of the BBH items is in its scene's pool; the options list the objects in the
# order they were handed out, so option letters name the objects (tests check all 750 items are solved).
_PEOPLE = ("Alice", "Bob", "Claire", "Dave", "Eve", "Fred", "Gertrude")
_SCENES = [
    ("are friends and avid readers who occasionally trade books", ("At the start of the semester, they each buy "
     "one new book"), "{p} gets {o}", "As the semester proceeds, they start trading around the new books.",
     "swap books",
     "At the end of the semester, {p} has",
     ["Catch-22", "Frankenstein", "Hound of the Baskervilles", "Lolita", "Moby Dick", "The Fellowship of the Ring",
      "The Great Gatsby", "The Odyssey", "The Pearl", "Ulysses"]),
    ("are dancers at a square dance", "At the start of a song, they each have a partner", "{p} is dancing with {o}",
     "Throughout the song, the dancers often trade partners.", "switch partners",
     "At the end of the dance, {p} is dancing with",
     ["Helga", "Izzi", "Jamie", "Karl", "Lola", "Melissa", "Ophelia", "Patrick", "Rodrigo", "Sam"]),
    ("are playing a game", "At the start of the game, they are each holding a ball", "{p} has a {o}",
     "As the game progresses, pairs of players trade balls.", "swap balls", "At the end of the game, {p} has the",
     [f"{c} ball" for c in "black blue brown green orange pink purple red white yellow".split()]),
    ("are holding a white elephant gift exchange", ("At the start of the event, they are each holding a present of "
     "a different color"), "{p} has a {o}", "As the event progresses, pairs of people swap gifts.", "swap their gifts",
     "At the end of the event, {p} has the",
     ["black ball", "blue present", "brown present", "green present", "orange ball", "pink ball", "purple present",
      "red present", "white present", "yellow present"]),
    ("are on the same team in a soccer match", "At the start of the match, they are each assigned to a position",
     "{p} is playing {o}", "As the game progresses, pairs of players occasionally swap positions.",
     "trade positions", "At the end of the match, {p} is playing",
     ["benchwarmer", "center midfielder", "cheerleader", "fullback", "goalkeeper", "left midfielder", "left winger",
      "right midfielder", "right winger", "striker"]),
]
_TSO_COUNTS = {"tracking_shuffled_objects_three_objects": 3, "tracking_shuffled_objects_five_objects": 5,
               "tracking_shuffled_objects_seven_objects": 7}
_SWAP = re.compile(r"(?:First|Then|Finally), (\w+) and (\w+) (?:swap books|switch partners|swap balls|"
                   r"swap their gifts|trade positions)\.")
_TSO_ASKED = re.compile(r"At the end of the \w+, (\w+) (?:has the|has|is dancing with|is playing)\nOptions:\n")


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + (", and " if len(parts) > 2 else " and ") \
        + parts[-1]


def _state(people: list[str], holds: dict[str, str]) -> str:
    return ", ".join(f"{p} {holds[p]}" for p in people)


def _solve_tso(text: str, n: int) -> Solution:
    people = list(_PEOPLE[:n])
    if not text.startswith(_join(people) + " are "):
        raise ValueError(f"not a tracking_shuffled_objects problem with {n} objects: {text[:80]!r}")
    options = re.findall(r"^\(([A-G])\) (.*)$", text, re.MULTILINE)
    asked = _TSO_ASKED.search(text)
    swaps = _SWAP.findall(text.split("\n")[1] if "\n" in text else "")
    if len(options) != n or not asked or not swaps:
        raise ValueError(f"tracking_shuffled_objects: cannot read options, swaps or question in {text[:80]!r}")
    holds = {p: letter for p, (letter, _) in zip(people, options)}   # objects in the order they were handed out
    steps = [f"Start: {_state(people, holds)}."]
    for a, b in swaps:
        if a not in holds or b not in holds or a == b:
            raise ValueError(f"tracking_shuffled_objects: bad swap {a} and {b} in {text[:80]!r}")
        holds[a], holds[b] = holds[b], holds[a]
        steps.append(f"{a} and {b} swap: {_state(people, holds)}.")
    who = asked.group(1)
    final = f"{who} has {holds[who]}."
    return Solution(f"({holds[who]})", [*steps, final], [f"At the end: {_state(people, holds)}.", final])


def _generate_tso(rng: random.Random, n: int, steps: int | None) -> str:
    """`steps`: the number of swaps. BBH's items have n swaps for n objects; training problems take n half the
    time and 1..min(n+2, 7) otherwise, so that the difficulty curve is measured inside the training distribution
    (7 at most: a 7-object problem with 9 swaps and its full trace no longer fit 512 task-tokenizer tokens)."""
    swaps = steps if steps is not None else n if rng.random() < 0.5 else rng.randint(1, min(n + 2, 7))
    if swaps < 1:
        raise ValueError(f"tracking_shuffled_objects: {swaps} swaps (expected >= 1)")
    intro, start, holding, trade, verb, question, pool = rng.choice(_SCENES)
    people = list(_PEOPLE[:n])
    objects = rng.sample(pool, n)
    pairs = [rng.sample(people, 2) for _ in range(swaps)]
    words = ["First"] + ["Then"] * (swaps - 2) + ["Finally"] * (swaps > 1)
    moves = " ".join(f"{w}, {a} and {b} {verb}." for w, (a, b) in zip(words, pairs))
    listing = _join([holding.format(p=p, o=o) for p, o in zip(people, objects)])
    options = "\n".join(f"({'ABCDEFG'[i]}) {o}" for i, o in enumerate(objects))
    return (f"{_join(people)} {intro}. {start}: {listing}.\n{trade} {moves} "
            f"{question.format(p=rng.choice(people))}\nOptions:\n{options}")


# ---------------------------------------------------------------- navigate
# Two families, as in BBH: "Always face forward." then moves forward/backward/left/right, or plain "Take N steps."
# moves mixed with turns. Position (x east, y north) starts at (0, 0) facing north.
_NAV_PREFIX = "If you follow these instructions, do you return to the starting point? "
_NAV_SUFFIX = "\nOptions:\n- Yes\n- No"
_NAV_STEP = re.compile(r"^(?:Take (\d+) steps?(?: (forward|backward|left|right))?|Turn (left|right|around))$")
_HEADINGS = ("north", "east", "south", "west")
_DELTA = {"north": (0, 1), "east": (1, 0), "south": (0, -1), "west": (-1, 0)}
_TURN = {"forward": 0, "right": 1, "around": 2, "backward": 2, "left": 3}


def _nav_instructions(text: str) -> tuple[bool, list[str]]:
    if not (text.startswith(_NAV_PREFIX) and text.endswith(_NAV_SUFFIX)):
        raise ValueError(f"not a navigate problem: {text[:80]!r}")
    body = text[len(_NAV_PREFIX):-len(_NAV_SUFFIX)].strip()
    parts = [p.strip() for p in body.split(".") if p.strip()]
    forward = bool(parts) and parts[0] == "Always face forward"
    return forward, parts[1:] if forward else parts


def _pos(x: int, y: int) -> str:
    return f"({x}, {y})"


def solve_navigate(text: str) -> Solution:
    _, instructions = _nav_instructions(text)        # "Always face forward" changes nothing: heading stays north
    x = y = heading = 0
    steps = ["Start at (0, 0), facing north."]
    for ins in instructions:
        m = _NAV_STEP.match(ins)
        if not m:
            raise ValueError(f"navigate: unknown instruction {ins!r} in {text[:80]!r}")
        count, way, turn = m.groups()
        if turn:
            heading = (heading + _TURN[turn]) % 4
            steps.append(f"{ins}: facing {_HEADINGS[heading]}.")
            continue
        dx, dy = _DELTA[_HEADINGS[(heading + _TURN[way or "forward"]) % 4]]
        x, y = x + dx * int(count), y + dy * int(count)
        steps.append(f"{ins}: {_pos(x, y)}.")
    home = x == 0 and y == 0
    final = f"End at {_pos(x, y)}: {'back at the start' if home else 'not the start'}."
    return Solution("Yes" if home else "No", [*steps, final], [final])


def _take(n: int, way: str | None = None) -> str:
    return f"Take {n} step{'s' * (n != 1)}{' ' + way if way else ''}"


def _balanced(rng: random.Random, m: int) -> list[int] | None:
    """`m` signed step counts (1-10 each) summing to zero, in random order (None when m == 1)."""
    if m == 0:
        return []
    if m == 1:
        return None
    p = rng.randint(1, m - 1)
    q = m - p
    for _ in range(200):
        total = rng.randint(max(p, q), 10 * min(p, q))
        parts = []
        for k, sign in ((p, 1), (q, -1)):
            cuts = sorted(rng.sample(range(1, total), k - 1)) if k > 1 else []
            sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
            parts += [sign * s for s in sizes]
        if all(1 <= abs(v) <= 10 for v in parts):
            rng.shuffle(parts)
            return parts
    return None


def _nav_forward(rng: random.Random, k: int, home: bool) -> list[str] | None:
    if not home:
        moves = [(rng.randint(1, 10), rng.choice(["forward", "backward", "left", "right"])) for _ in range(k)]
    else:
        nx = rng.randint(0, k)
        xs, ys = _balanced(rng, nx), _balanced(rng, k - nx)
        if xs is None or ys is None:
            return None
        moves = [(abs(v), "right" if v > 0 else "left") for v in xs] + \
                [(abs(v), "forward" if v > 0 else "backward") for v in ys]
        rng.shuffle(moves)
    return ["Always face forward"] + [_take(n, w) for n, w in moves]


def _nav_turning(rng: random.Random, k: int, home: bool) -> list[str] | None:
    if not home:
        turns = ["Turn left", "Turn right", "Turn around"]
        return [_take(rng.randint(1, 10)) if rng.random() < 0.55 else rng.choice(turns) for _ in range(k)]
    m = rng.randint(2, max(2, k - 1))                     # moves; the rest of the k instructions are turns
    nx = rng.randint(0, m)
    xs, ys = _balanced(rng, nx), _balanced(rng, m - nx)
    if xs is None or ys is None:
        return None
    legs = [(abs(v), 1 if v > 0 else 3) for v in xs] + [(abs(v), 0 if v > 0 else 2) for v in ys]
    rng.shuffle(legs)
    out, heading = [], 0
    for n, way in legs:
        turn = (way - heading) % 4
        if turn:
            out.append(f"Turn {['', 'right', 'around', 'left'][turn]}")
        heading = way
        out.append(_take(n))
    while len(out) < k:                                   # turns that change nothing about the position
        out.insert(rng.randint(0, len(out)), f"Turn {rng.choice(['left', 'right', 'around'])}")
    return out if len(out) == k else None


def generate_navigate(rng: random.Random, steps: int | None = None) -> str:
    """`steps`: the number of instructions (BBH: 2-9, "Always face forward" not counted). Half the problems
    return to the start."""
    k = rng.randint(2, 9) if steps is None else steps
    if k < 1:
        raise ValueError(f"navigate: {k} instructions (expected >= 1)")
    home = rng.random() < 0.5 and k >= 2
    for _ in range(10_000):
        parts = (_nav_forward if rng.random() < 0.5 else _nav_turning)(rng, k, home)
        if parts is None:
            continue
        text = _NAV_PREFIX + ". ".join(parts) + "." + _NAV_SUFFIX
        if (solve_navigate(text).answer == "Yes") == home:
            return text
    raise ValueError(f"navigate: no problem with {k} instructions drawn")


# ---------------------------------------------------------------- task dispatch
def _chain_solver(solver):
    def solve_chain(text: str) -> Solution:
        return Solution(*solver(text))
    return solve_chain


_SOLVERS = {"boolean_expressions": solve_boolean_expressions,
            "multistep_arithmetic_two": solve_multistep_arithmetic_two,
            "object_counting": solve_object_counting, "dyck_languages": solve_dyck_languages,
            "web_of_lies": solve_web_of_lies, "navigate": solve_navigate,
            **{t: (lambda text, n=n: _solve_tso(text, n)) for t, n in _TSO_COUNTS.items()},
            "lie_chain": _chain_solver(chains.solve_lie_chain),
            "truth_lookup": _chain_solver(chains.solve_truth_lookup)}
_GENERATORS = {"boolean_expressions": generate_boolean_expressions,
               "multistep_arithmetic_two": generate_multistep_arithmetic_two,
               "object_counting": generate_object_counting, "dyck_languages": generate_dyck_languages,
               "web_of_lies": generate_web_of_lies, "navigate": generate_navigate,
               **{t: (lambda rng, steps=None, n=n: _generate_tso(rng, n, steps)) for t, n in _TSO_COUNTS.items()},
               "lie_chain": chains.generate_lie_chain, "truth_lookup": chains.generate_truth_lookup}
assert set(_SOLVERS) == set(_GENERATORS) == set(ALL_TASKS) == set(ANSWER_KINDS) == set(STEP_UNITS)


def _check_task(task: str) -> None:
    if task not in _SOLVERS:
        raise ValueError(f"unknown symbolic task {task!r}: expected one of {list(ALL_TASKS)}")


def detect_task(text: str) -> str:
    """Which task a problem belongs to, from its format alone (a `lie_chain` problem has web_of_lies' format and
    is detected as web_of_lies: both tasks have the same solver and trace)."""
    text = text.strip()
    if text.startswith(_DYCK_PREFIX):
        return "dyck_languages"
    if _COUNTING.match(text):
        return "object_counting"
    if _ARITH.match(text):
        return "multistep_arithmetic_two"
    if _LIES.match(text):
        return "web_of_lies"
    if text.startswith(_NAV_PREFIX):
        return "navigate"
    if chains.LOOKUP_RE.match(text):
        return "truth_lookup"
    for task, n in sorted(_TSO_COUNTS.items(), key=lambda kv: -kv[1]):
        if text.startswith(_join(list(_PEOPLE[:n])) + " are "):
            return task
    if text.endswith(" is") and set(text.split()[:-1]) <= _BOOL_TOKENS:
        return "boolean_expressions"
    raise ValueError(f"not a problem of any symbolic task ({list(TASKS)}): {text[:80]!r}")


def solve(task: str, text: str) -> Solution:
    _check_task(task)
    return _SOLVERS[task](text)


def count_steps(task: str, text: str) -> int:
    """The number of reasoning steps of a problem, in the task's unit (`STEP_UNITS`): the knob the difficulty
    curve sets (`generate_input(..., steps=k)` draws problems with exactly k)."""
    _check_task(task)
    if task == "boolean_expressions":
        return sum(t in ("not", "and", "or") for t in text.split())
    if task == "multistep_arithmetic_two":
        return 7
    if task == "object_counting":
        return len([p for p in re.split(r", and |, | and ", _COUNTING.match(text.strip()).group(1)) if p])
    if task == "dyck_languages":
        return len(text[len(_DYCK_PREFIX):].split())
    if task == "web_of_lies":
        return chains.count_people("lie_chain", text)
    if task in CHAIN_TASKS:
        return chains.count_people(task, text)
    if task == "navigate":
        return len(_nav_instructions(text)[1])
    return len(_SWAP.findall(text))


def explain(task: str, text: str, style: str) -> str:
    """The response in one style: `answer` (only the final sentence), `short` (key steps), `full` (every step)."""
    if style not in STYLES:
        raise ValueError(f"unknown explanation style {style!r}: expected one of {list(STYLES)}")
    sol = solve(task, text)
    lines = [] if style == "answer" else sol.key_steps if style == "short" else sol.steps
    return "\n".join([*lines, answer_sentence(sol.answer)])


def options_of(text: str) -> list[str] | None:
    """The option texts of a multiple-choice input (lines "(A) text"), None when it lists none."""
    found = [m.group(1).strip() for m in re.finditer(r"^\([A-R]\)\s*(.*)$", text, re.MULTILINE)]
    return found or None


def score(task: str, prediction: str | None, target: str, question: str | None = None):
    """(correct?, extraction) of a prediction for `task`, read by the project's extractor as notebook 06 reads it.
    Multiple-choice tasks read the options from `question` (so an answer given as the option's text counts)."""
    from ..evaluation.extract import score_prediction

    _check_task(task)
    options = options_of(question) if question and ANSWER_KINDS[task] == "choice" else None
    return score_prediction(prediction, target, ANSWER_KINDS[task], options=options,
                            labels=ANSWER_LABELS.get(task))


def generate_input(task: str, rng: random.Random, steps: int | None = None) -> str:
    """One fresh input of `task`; `steps` sets its number of steps (`STEP_UNITS`), None draws the training mix."""
    _check_task(task)
    return _GENERATORS[task](rng, steps)


def generate_problems(task: str, n: int, seed: int | str, exclude: set[str] | frozenset[str] = frozenset(),
                      max_tries_factor: int = 50, steps: int | tuple[int, int] | None = None) -> list[str]:
    """`n` distinct fresh inputs of `task`, none equal (after whitespace normalisation) to anything in `exclude`;
    `steps` fixes their number of steps (the difficulty curve's held-out problems), or `(lo, hi)` draws it uniformly
    per problem (a chain task's training range)."""
    _check_task(task)
    if isinstance(steps, (tuple, list)):
        lo, hi = steps
        if not 1 <= lo <= hi:
            raise ValueError(f"{task}: steps range {steps} (expected 1 <= lo <= hi)")
        rng = random.Random(f"{task}:{seed}:range{lo}-{hi}")
        draw = lambda: _GENERATORS[task](rng, rng.randint(lo, hi))          # noqa: E731
    else:
        rng = random.Random(f"{task}:{seed}" if steps is None else f"{task}:{seed}:steps{steps}")
        draw = lambda: _GENERATORS[task](rng, steps)                         # noqa: E731
    banned = {" ".join(x.split()) for x in exclude}
    seen: set[str] = set()
    out: list[str] = []
    for _ in range(n * max_tries_factor):
        if len(out) == n:
            break
        text = draw()
        key = " ".join(text.split())
        if key in banned or key in seen:
            continue
        seen.add(key)
        out.append(text)
    if len(out) < n:
        raise ValueError(f"{task}: could only draw {len(out)} distinct fresh problems of the {n} asked")
    return out
