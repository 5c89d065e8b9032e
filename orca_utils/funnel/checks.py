"""Row checks of the funnel: refusals and non-answers, and the teacher's answer against FLAN's target.

Refusals (`refusal_reason`): a response is rejected when it is empty or whitespace ("empty"), when one of
`REFUSAL_PATTERNS` (case-insensitive; curly apostrophes read as straight ones) starts within its first `head_chars`
characters ("refusal"), or when the whole response, trailing punctuation aside, is one of `NON_ANSWERS`
("non_answer"). A phrase quoted further into a real answer ("... the reply 'I cannot fulfill that request' is
what a chatbot says ...") is kept.

Label agreement (`label_check`): FLAN's target, when it can be compared, against the teacher's final answer as the
project's robust reader (`orca_utils.evaluation.extract`, 05/06's extractor) reads it. The target is read first: a
CoT row without a rationale holds its rationale and answer together in `targets` (the hub's CoT submix), so its
final answer is the text after the last answer marker ("So the answer is (C)."). Then, in this order:
- a letter ("C", "(C)"; a lowercase "c" only on a multiple-choice query): `choice`, with the query's options
  (`parse_options`), so that "(C)", "C." and the text of option C all agree with "(C)";
- one of a label pair of `BOOLEAN_LABELS` (yes/no, true/false, valid/invalid): `boolean`;
- a number: `number` ("1,000" = "1000");
- the text of exactly one of the query's options: `choice` (its letter);
- a short answer (at most `max_answer_words` words): `text`, agreeing when the target's words appear, in order, in
  the answer the reader found or right after an explicit "answer:" / "the answer is" (lenient on purpose: "the
  capital of angola is luanda" agrees with "Luanda"); on a query with options ("Sentence A: ..."), it disagrees
  only when the answer names another option, and an answer naming none is `no_answer`;
- anything else (a summary, a translation, a long free answer): `not_comparable`.
Outcomes: "agrees", "label_disagrees", "no_answer" (the target is comparable but the reader found no final answer in
the response, e.g. a hedge "(A) or (C)"), "not_comparable" (also for an id without a query row).

The reader errs too (a rationale's "2 points / answer = 48" reads as a stated answer 48), and FLAN's own labels have
noise (a gsm8k rationale ending on 64 under the target 66): a disagreement is a flag to look at, and dropping such
rows is a param (`label_agreement.drop_disagreeing`, off by default).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from ..evaluation.extract import BOOLEAN_LABELS, extract_answer, extract_text, normalize_target, option_letter

__all__ = ["REFUSAL_PATTERNS", "NON_ANSWERS", "LABEL_OUTCOMES", "refusal_reason", "parse_options", "gold_answer",
           "label_check"]

# Refusals and deflections of chat models, each matched near the start of the response only.
REFUSAL_PATTERNS = (
    r"as an ai(?: language)? model",
    r"as a(?:n ai)? language model",
    r"i(?:'m| am) (?:sorry|afraid),? but i (?:can't|cannot|can not|won't|will not|am unable|'m unable|am not able)",
    r"i apologi[sz]e,? but i (?:can't|cannot|can not|won't|am unable|'m unable)",
    r"(?:sorry, )?i (?:can't|cannot|can not) (?:fulfill|comply|assist|help with|provide|answer|complete|do that)",
    r"i(?:'m| am) (?:unable|not able) to",
    r"i (?:won't|will not) be able to",
    r"i must (?:decline|refuse)",
    r"i(?:'m| am) not (?:allowed|permitted|comfortable) to",
)
# Whole responses that answer nothing (compared lowercased, trailing punctuation and quotes aside).
NON_ANSWERS = ("i don't know", "i do not know", "i'm not sure", "i am not sure", "not sure", "no answer",
               "i can't answer that", "i cannot answer that", "no comment")
LABEL_OUTCOMES = ("agrees", "label_disagrees", "no_answer", "not_comparable")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_OPTION_HEADER = re.compile(r"(?im)^.*?\b(?:options|answer choices|choices|choose (?:your answer )?from|"
                            r"select from|pick from)[ \t]*[:\-][ \t]*(.*)$")
_LETTER_LINE = re.compile(r"^\s*(?:-\s*)?\(?([A-R])\)\s*\S")
_BULLET = re.compile(r"^\s*-\s+(\S.*)$")
# The cue a zero-shot CoT template appends after the question (and so after its last option): "... - no Let's think
# first. Stream of consciousness:" (orca_utils.flan.COT_ZS_TEMPLATES and FLAN-v2's own CoT templates).
_COT_CUE = re.compile(r"\s+(?:Let's|Let me|Let us|Hmmm|Stream of consciousness|Detailed solution|Think|Now)\b.*$")
_LETTER_TARGET = re.compile(r"\(?([A-Ra-r])\)?\.?")
_STATED_TEXT = r"\banswer(?: is| would be| should be)? "          # + the answer's words: "Answer: Sentence B"
_NUMBER_TARGET = re.compile(r"[-\u2212]?\$?\d[\d,]*(?:\.\d+)?")


def refusal_reason(response, head_chars: int = 100, extra_patterns: Sequence[str] = ()) -> tuple[str, str] | None:
    """(reason, what matched) when the response is empty, a refusal or a non-answer, else None."""
    text = "" if response is None else str(response)
    if not text.strip():
        return "empty", "empty or whitespace response"
    text = text.strip().translate(_APOSTROPHES)
    whole = text.lower().rstrip(" .!?\"'")
    if whole in NON_ANSWERS:
        return "non_answer", whole
    head = text[:head_chars + 120]
    for pattern in (*REFUSAL_PATTERNS, *extra_patterns):
        m = re.search(pattern, head, re.IGNORECASE)
        if m and m.start() < head_chars:
            return "refusal", m.group(0)
    return None


def parse_options(query: str) -> list[str] | None:
    """The options a multiple-choice query lists ("Options:\\n- (A) DNA\\n- (B) ...", "(A) 300" lines, "OPTIONS:\\n-
    yes\\n- no"), as written after any bullet; None when it lists fewer than two."""
    text = str(query or "")
    header = None
    for header in _OPTION_HEADER.finditer(text):
        pass                                          # the last options block
    if header is not None:
        inline = header.group(1).strip()
        rest = text[header.end():].splitlines()[1:]         # the lines after the header's own
        lines = ([inline] if inline else []) + rest
        if inline and re.search(r"\([A-R]\)\s*\S.*\s\([A-R]\)\s*\S", inline):      # "Options: (A) 1 (B) 2"
            lines = re.split(r"\s+(?=\([A-R]\)\s)", inline)
    else:
        start = next((i for i, ln in enumerate(text.splitlines()) if re.match(r"^\s*(?:-\s*)?\(?A\)\s*\S", ln)), None)
        if start is None:
            return None
        lines = text.splitlines()[start:]
    options = []
    for line in lines:
        m = _LETTER_LINE.match(line) or _BULLET.match(line)
        if not m:
            if options or line.strip():
                break
            continue
        options.append(re.sub(r"^\s*-\s*", "", line).strip())
    if options:
        options[-1] = _COT_CUE.sub("", options[-1]).strip()
    return options if len(options) >= 2 else None


def gold_answer(target, rationale="", collection: str = "", max_answer_words: int = 4) -> str:
    """The answer to compare with: the target, or for a CoT row whose target holds its rationale too, the text
    after the target's last answer marker ("" when it has none)."""
    target = str(target or "").strip()
    if collection == "cot" and not str(rationale or "").strip() and len(target.split()) > max_answer_words:
        ex = extract_text(target)
        return ex.answer if ex.answer and ex.method.startswith("marker") else ""
    return target


def _kind(gold: str, options: list[str] | None, multiple_choice: bool, max_answer_words: int):
    """(kind, normalized gold, labels, options) of a target, or None when it cannot be compared."""
    if not gold:
        return None
    if _LETTER_TARGET.fullmatch(gold) and (multiple_choice or options or gold.isupper() or "(" in gold):
        letter = normalize_target(gold, "choice")
        fits = options and "ABCDEFGHIJKLMNOPQR".index(letter) < len(options)
        return "choice", letter, None, options if fits else None
    for labels in BOOLEAN_LABELS.values():
        if gold.lower() in (lab.lower() for lab in labels):
            return "boolean", normalize_target(gold, "boolean", labels), labels, None
    if _NUMBER_TARGET.fullmatch(gold):
        return "number", normalize_target(gold, "number"), None, None
    letter = option_letter(gold, options)
    if letter:
        return "choice", letter, None, options
    if len(gold.split()) <= max_answer_words and _words(gold):
        return "text", _words(gold), None, options
    return None


def _words(text: str) -> str:
    """Lowercased words, punctuation at their edges dropped (as `extract_text` normalizes an answer)."""
    words = (w.strip(".,;:!?\"'`*()[]").lower() for w in str(text).replace(",", " ").split())
    return " ".join(w for w in words if w)


def _text_outcome(response: str, gold: str, options: list[str] | None) -> tuple[str, str | None, str]:
    """(outcome, answer, method) of a short free-text target. The answer is what `extract_text` reads (after the
    last answer marker, or a direct answer); an explicit statement "answer: <x>" anywhere counts too (an
    answer-first response whose explanation ends in "thus ..."). With options, the other options (their first
    words when the target is how an option begins, "Sentence A") are what a wrong answer names; an answer naming
    none of them is `no_answer`, not a disagreement."""
    ex = extract_text(response)
    found = f" {ex.answer} " if ex.answer else ""
    said = _words(response)
    bodies = [_words(o) for o in options or []]
    begins = [b == gold or b.startswith(gold + " ") for b in bodies]          # the option(s) the target names
    n = len(gold.split())
    others = [" ".join(b.split()[:n]) if any(begins) else b for b, mine in zip(bodies, begins) if not mine]

    def named(x: str) -> bool:
        return f" {x} " in found or re.search(_STATED_TEXT + re.escape(x) + r"\b", said) is not None

    if named(gold):
        return "agrees", ex.answer, ex.method
    if any(named(o) for o in others if o):
        return "label_disagrees", ex.answer, ex.method
    if ex.answer is None or others:
        return "no_answer", ex.answer, ex.method if ex.answer is None else "names_no_option"
    return "label_disagrees", ex.answer, ex.method


def label_check(response, query: str, target, rationale="", collection: str = "", multiple_choice: bool = False,
                max_answer_words: int = 4) -> dict:
    """{outcome (one of LABEL_OUTCOMES), kind, gold, answer, method} for one response (module docstring)."""
    gold = gold_answer(target, rationale, collection, max_answer_words)
    options = parse_options(query)
    kind = _kind(gold, options, bool(multiple_choice), max_answer_words)
    if kind is None:
        return {"outcome": "not_comparable", "kind": "", "gold": gold, "answer": None, "method": "target"}
    kind, want, labels, options = kind
    if kind == "text":
        outcome, answer, method = _text_outcome(str(response or ""), want, options)
        return {"outcome": outcome, "kind": kind, "gold": want, "answer": answer, "method": method}
    ex = extract_answer(response, kind, options=options, labels=labels)
    if ex.answer is None:
        return {"outcome": "no_answer", "kind": kind, "gold": want, "answer": None, "method": ex.method}
    return {"outcome": "agrees" if ex.answer == want else "label_disagrees", "kind": kind, "gold": want,
            "answer": ex.answer, "method": ex.method}
