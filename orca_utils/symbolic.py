"""Programmatically solvable Big-Bench Hard tasks: generators of fresh problems, and solvers that explain.

Five BBH tasks have problems a program can both write and solve: `boolean_expressions`,
`multistep_arithmetic_two`, `object_counting`, `dyck_languages` and `web_of_lies`. For each one this module holds
- a generator that draws a fresh problem in the exact BBH input format (`generate_problems` excludes every input
  that equals a BBH test item, so training never sees the benchmark), and
- a solver that returns the answer and the steps that lead to it, at two levels of detail: `full` (every rewrite
  or stack move, the GPT-4-like "complex explanation trace") and `short` (only the key intermediate results, the
  ChatGPT-like "easier teacher" of Orca's progressive learning).

`explain(task, text, style)` writes the response of each style (`answer` | `short` | `full`); every style ends
with the same sentence, "So the answer is X.", so one extractor scores them all. The teacher that serves these
responses through the OpenAI-compatible local server is `orca_utils.symbolic_teacher`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["TASKS", "ANSWER_KINDS", "ANSWER_LABELS", "STYLES", "Solution", "score", "solve", "explain",
           "generate_input", "generate_problems", "detect_task", "answer_sentence"]

TASKS = ("boolean_expressions", "multistep_arithmetic_two", "object_counting", "dyck_languages", "web_of_lies")
# How `orca_utils.extract.score_prediction` reads each task's answer (kind, and labels for booleans).
ANSWER_KINDS = {"boolean_expressions": "boolean", "multistep_arithmetic_two": "number",
                "object_counting": "number", "dyck_languages": "brackets", "web_of_lies": "boolean"}
ANSWER_LABELS: dict[str, tuple[str, str] | None] = {"web_of_lies": ("Yes", "No")}
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


def generate_boolean_expressions(rng: random.Random) -> str:
    while True:                                            # BBH items have exactly 8 tokens before "is"
        tokens = _random_bool_expr(rng, 4)
        if len(tokens) == 8:
            return " ".join(tokens) + " is"


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


def generate_multistep_arithmetic_two(rng: random.Random) -> str:
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


def generate_object_counting(rng: random.Random) -> str:
    asked = rng.choice(sorted({c for _, _, c in _ITEMS}))
    pool = [item for item in _ITEMS if item[2] == asked]
    others = [item for item in _ITEMS if item[2] != asked]
    n_items = rng.randint(2, 10)
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


def generate_dyck_languages(rng: random.Random) -> str:
    symbols: list[str] = []
    stack: list[str] = []
    length = rng.randint(3, 30)
    while len(symbols) < length or not stack:
        if stack and rng.random() < 0.45:
            symbols.append(_PAIRS[stack.pop()])
        else:
            opener = rng.choice(list(_PAIRS))
            symbols.append(opener)
            stack.append(opener)
    return _DYCK_PREFIX + " ".join(symbols)


# ---------------------------------------------------------------- web_of_lies
# Every name of the BBH task's items (names are vocabulary, not test items; `generate_problems` still excludes
# every BBH input). Each BBH item: one person's truthfulness, four "X says Y tells the truth/lies", a question.
_NAMES = ("Alejandro Alexis Amberly Andree Antwan Audrie Bernita Christie Conception Crista Dallas Delbert Delfina "
          "Elanor Fidel Fletcher Gwenn Helene Inga Jamey Jaymie Jerry Jim Ka Kandi Kristian Leda Lorine Maybelle "
          "Michael Michaela Millicent Millie Osvaldo Phoebe Rashida Raymond Ryan Sal Shalonda Shaunda Shenna Sherrie "
          "Sima Tamika Teressa Vernell Vina Willian Yoland").split()
_LIES = re.compile(r"^Question: (\w+) (tells the truth|lies)\. ((?:\w+ says \w+ (?:tells the truth|lies)\. )+)"
                   r"Does (\w+) tell the truth\?$")
_CLAIM = re.compile(r"(\w+) says (\w+) (tells the truth|lies)\.")


def _verb(truthful: bool) -> str:
    return "tells the truth" if truthful else "lies"


def solve_web_of_lies(text: str) -> Solution:
    match = _LIES.match(text.strip())
    if not match:
        raise ValueError(f"not a web_of_lies problem: {text!r}")
    first, verb, claims, asked = match.groups()
    truth = {first: verb == "tells the truth"}
    steps = [f"{first} {verb}."]
    for speaker, subject, said in _CLAIM.findall(claims):
        if subject not in truth:
            raise ValueError(f"web_of_lies: {speaker} speaks of {subject}, who is not known yet, in {text!r}")
        claim = said == "tells the truth"
        truth[speaker] = claim == truth[subject]
        link = "and" if claim == truth[subject] else "but"
        steps.append(f"{speaker} says {subject} {said}, {link} {subject} {_verb(truth[subject])}, "
                     f"so {speaker} {_verb(truth[speaker])}.")
    if asked not in truth:
        raise ValueError(f"web_of_lies: the question asks about {asked}, who says nothing, in {text!r}")
    key = [" ".join(f"{name}: {'truth' if value else 'lies'}." for name, value in truth.items())]
    return Solution("Yes" if truth[asked] else "No", steps, key)


def generate_web_of_lies(rng: random.Random) -> str:
    names = rng.sample(_NAMES, 5)
    parts = [f"Question: {names[0]} {_verb(rng.random() < 0.5)}."]
    parts += [f"{b} says {a} {_verb(rng.random() < 0.5)}." for a, b in zip(names, names[1:])]
    return " ".join(parts) + f" Does {names[-1]} tell the truth?"


# ---------------------------------------------------------------- task dispatch
_SOLVERS = {"boolean_expressions": solve_boolean_expressions,
            "multistep_arithmetic_two": solve_multistep_arithmetic_two,
            "object_counting": solve_object_counting, "dyck_languages": solve_dyck_languages,
            "web_of_lies": solve_web_of_lies}
_GENERATORS = {"boolean_expressions": generate_boolean_expressions,
               "multistep_arithmetic_two": generate_multistep_arithmetic_two,
               "object_counting": generate_object_counting, "dyck_languages": generate_dyck_languages,
               "web_of_lies": generate_web_of_lies}


def _check_task(task: str) -> None:
    if task not in _SOLVERS:
        raise ValueError(f"unknown symbolic task {task!r}: expected one of {list(TASKS)}")


def detect_task(text: str) -> str:
    """Which task a problem belongs to, from its format alone."""
    text = text.strip()
    if text.startswith(_DYCK_PREFIX):
        return "dyck_languages"
    if _COUNTING.match(text):
        return "object_counting"
    if _ARITH.match(text):
        return "multistep_arithmetic_two"
    if _LIES.match(text):
        return "web_of_lies"
    if text.endswith(" is") and set(text.split()[:-1]) <= _BOOL_TOKENS:
        return "boolean_expressions"
    raise ValueError(f"not a problem of any symbolic task ({list(TASKS)}): {text[:80]!r}")


def solve(task: str, text: str) -> Solution:
    _check_task(task)
    return _SOLVERS[task](text)


def explain(task: str, text: str, style: str) -> str:
    """The response in one style: `answer` (only the final sentence), `short` (key steps), `full` (every step)."""
    if style not in STYLES:
        raise ValueError(f"unknown explanation style {style!r}: expected one of {list(STYLES)}")
    sol = solve(task, text)
    lines = [] if style == "answer" else sol.key_steps if style == "short" else sol.steps
    return "\n".join([*lines, answer_sentence(sol.answer)])


def score(task: str, prediction: str | None, target: str):
    """(correct?, extraction) of a prediction for `task`, read by the project's extractor as notebook 06 reads it."""
    from .extract import score_prediction

    _check_task(task)
    return score_prediction(prediction, target, ANSWER_KINDS[task], labels=ANSWER_LABELS.get(task))


def generate_input(task: str, rng: random.Random) -> str:
    _check_task(task)
    return _GENERATORS[task](rng)


def generate_problems(task: str, n: int, seed: int, exclude: set[str] | frozenset[str] = frozenset(),
                      max_tries_factor: int = 50) -> list[str]:
    """`n` distinct fresh inputs of `task`, none equal (after whitespace normalisation) to anything in `exclude`."""
    _check_task(task)
    rng = random.Random(f"{task}:{seed}")
    banned = {" ".join(x.split()) for x in exclude}
    seen: set[str] = set()
    out: list[str] = []
    for _ in range(n * max_tries_factor):
        if len(out) == n:
            break
        text = _GENERATORS[task](rng)
        key = " ".join(text.split())
        if key in banned or key in seen:
            continue
        seen.add(key)
        out.append(text)
    if len(out) < n:
        raise ValueError(f"{task}: could only draw {len(out)} distinct fresh problems of the {n} asked")
    return out
