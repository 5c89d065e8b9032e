"""Answer extraction: turn a model's free text into the answer a benchmark scores, or report that it could not.

Published BBH scores have collapsed from parsing bugs alone, so every rule here is tested on real-looking outputs
(`tests/test_extract.py`). One entry point, `extract_answer(text, kind, options=None, labels=None)`, returns an
`Extraction(answer, method)`; `answer is None` means unparseable: it is scored as wrong and counted in the
extraction-failure rate that every table reports. `score_prediction(text, target, kind, ...)` extracts and compares.

Answer kinds:
- `choice`: a letter option. Accepts "(B)", "B)", "B.", "B:", "**B**", "The answer is B", "answer: b",
  "Option B", the option's text instead of its letter, and takes the LAST stated answer.
- `boolean`: a two-word label set (True/False, Yes/No, valid/invalid), with variants ("yes.", "Not valid", "TRUE").
- `number`: an integer or decimal; commas, currency and units are dropped ("1,234 apples" -> "1234"), number
  words up to twenty are read ("five" -> "5").
- `text`: free text compared after normalization (BBH word_sorting: the word sequence; dyck_languages: the
  bracket sequence, via `kind="brackets"`).

Where the answer is looked for: after the last answer marker ("the answer is", "answer:", "final answer", "so the
answer is", "therefore,"), else the whole text (for direct outputs). Chain-of-thought outputs ("Let's think step
by step ... So the answer is (B).") and direct outputs ("(B)") thus score the way published BBH numbers were scored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Extraction", "extract_answer", "extract_choice", "extract_boolean", "extract_number",
           "extract_text", "normalize_target", "score_prediction", "ANSWER_KINDS", "BOOLEAN_LABELS"]

ANSWER_KINDS = ("choice", "boolean", "number", "text", "brackets")
BOOLEAN_LABELS = {"true_false": ("True", "False"), "yes_no": ("Yes", "No"), "valid": ("valid", "invalid")}


@dataclass(frozen=True)
class Extraction:
    """The normalized answer (None when unparseable) and the rule that found it (for error analysis)."""

    answer: str | None
    method: str

    @property
    def failed(self) -> bool:
        return self.answer is None


_MARKER = re.compile(
    r"(?:final\s+answer|correct\s+answer|the\s+answer|answer|correct\s+option|correct\s+choice|"
    r"the\s+result)\s*(?:is|would\s+be|will\s+be|should\s+be|=|:|-|would\s+be\s*:)?\s*:?|"
    r"\bso\s+the\s+answer\s+is|\btherefore,?|\bthus,?|\bhence,?",
    re.IGNORECASE)
_NOISE = re.compile(r"^(?:[\s\"'`*_:\-=>\[]+|option\s+|choice\s+|letter\s+)", re.IGNORECASE)


def _answer_region(text: str) -> tuple[str, bool]:
    """The text after the last answer marker (and whether there was one)."""
    last = None
    for m in _MARKER.finditer(text):
        if text[m.end():].strip():          # a marker at the very end says nothing
            last = m
    if last is None:
        return text, False
    return text[last.end():], True


def _strip_lead(region: str) -> str:
    prev = None
    while prev != region:
        prev, region = region, _NOISE.sub("", region, count=1)
    return region


# ------------------------------------------------------------------ letters
def extract_choice(text: str, options: Sequence[str] | None = None, letters: str = "ABCDEFGHIJKLMNOPQR"
                   ) -> Extraction:
    """A letter option (returned as the bare letter, e.g. "B")."""
    if options:
        letters = letters[:len(options)]
    cls = f"[{letters}{letters.lower()}]"
    region, marked = _answer_region(text)
    head = _strip_lead(region)
    if marked:
        # an upper-case letter may be followed by words ("B because ..."); a lower-case one only by punctuation,
        # so that "the answer is a dog" is not read as (A)
        m = re.match(rf"\(({cls})\)|([{letters}])(?=$|[\s.,:;)!?*\"'])|([{letters.lower()}])(?=$|[.,:;)!?*\"'])",
                     head)
        if m:
            return Extraction((m.group(1) or m.group(2) or m.group(3)).upper(), "marker+letter")
        found = _option_text(head[:200], options)
        if found:
            return Extraction(found, "marker+option_text")
    # whole text: the last parenthesised letter "(B)"
    parens = re.findall(rf"\(([{letters}])\)", text)
    if parens:
        return Extraction(parens[-1], "last_parenthesised")
    stripped = _strip_lead(text.strip())
    m = re.match(rf"([{letters}])(?:$|[.):*]|\s*$)", stripped)    # direct answers: "B", "B.", "B) 12", "B: text"
    if m and not re.fullmatch(r"[A-R]:\s*", stripped):               # a bare "A:" echoes the prompt's "A:" turn
        return Extraction(m.group(1), "leading_letter")
    m = re.search(rf"(?:^|\n)\s*\**([{letters}])[.)]\**\s", text)  # "B. text" on a line
    if m:
        return Extraction(m.group(1), "line_letter")
    found = _option_text(text, options)
    if found:
        return Extraction(found, "option_text")
    return Extraction(None, "no_letter")


def _norm_words(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def _option_text(text: str, options: Sequence[str] | None) -> str | None:
    """The letter of the option whose text the answer names (the last named one; longest text wins ties)."""
    if not options:
        return None
    hay = f" {_norm_words(text)} "
    best = None
    for i, opt in enumerate(options):
        body = _norm_words(re.sub(r"^\s*\(?[A-R]\)\s*", "", opt))
        if not body:
            continue
        pos = hay.rfind(f" {body} ")
        if pos >= 0 and (best is None or pos > best[0] or (pos == best[0] and len(body) > best[1])):
            best = (pos, len(body), "ABCDEFGHIJKLMNOPQR"[i])
    return best[2] if best else None


# ------------------------------------------------------------------ booleans
_NEGATED = {"valid": r"not\s+valid|invalid", "true": r"not\s+true", "yes": r"(?!)"}


def extract_boolean(text: str, labels: Sequence[str] = ("True", "False")) -> Extraction:
    """One of two labels (returned as given in `labels`). "not valid" counts as "invalid"."""
    pos, neg = labels
    words = {pos.lower(): pos, neg.lower(): neg}
    neg_pattern = rf"\b(?:{_NEGATED.get(pos.lower(), '(?!)')})\b"
    pattern = re.compile(rf"{neg_pattern}|\b({re.escape(pos)}|{re.escape(neg)})\b", re.IGNORECASE)

    def label(m: re.Match) -> str:
        return words[m.group(1).lower()] if m.group(1) else neg

    region, marked = _answer_region(text)
    if marked:
        m = pattern.search(region[:120])
        if m:
            return Extraction(label(m), "marker+label")
    m = pattern.match(_strip_lead(text.strip()))
    if m:
        return Extraction(label(m), "leading_label")
    hits = list(pattern.finditer(text))
    if hits:
        return Extraction(label(hits[-1]), "last_label")
    return Extraction(None, "no_label")


# ------------------------------------------------------------------ numbers
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUM = re.compile(r"(?<![\w.])[-−–]?\$?\d[\d,]*(?:\.\d+)?(?![\d])")


def _clean_number(raw: str) -> str | None:
    s = raw.replace("$", "").replace(",", "").replace("−", "-").replace("–", "-")
    try:
        value = float(s)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def extract_number(text: str) -> Extraction:
    """A number as a canonical string ("1,234.0 apples" -> "1234", "-7" -> "-7", "five" -> "5")."""
    region, marked = _answer_region(text)
    words = re.compile(rf"\b({'|'.join(_NUMBER_WORDS)})\b", re.IGNORECASE)
    if marked:
        head = region[:80]
        m, w = _NUM.search(head), words.search(head)
        if m and (not w or m.start() <= w.start()):
            return Extraction(_clean_number(m.group(0)), "marker+number")
        if w:
            return Extraction(_NUMBER_WORDS[w.group(1).lower()], "marker+number_word")
    nums = _NUM.findall(text)
    if nums:
        return Extraction(_clean_number(nums[-1]), "last_number")
    w = list(words.finditer(text))
    if w:
        return Extraction(_NUMBER_WORDS[w[-1].group(1).lower()], "last_number_word")
    return Extraction(None, "no_number")


# ------------------------------------------------------------------ free text
def extract_text(text: str, brackets: bool = False) -> Extraction:
    """Free-form answers: the word sequence (lowercase, punctuation at word edges dropped), or the bracket
    sequence (`brackets=True`, e.g. "] ) }")."""
    region, marked = _answer_region(text)
    region = region.strip().split("\n\n")[0] if marked else text.strip()
    if brackets:
        seq = re.findall(r"[()\[\]{}<>]", region)
        return Extraction(" ".join(seq), "marker+brackets" if marked else "brackets") if seq else \
            Extraction(None, "no_brackets")
    if marked and ":" in region[:40] and re.match(r"^[^:]{0,30}:", region):   # "... is: apple banana"
        region = region.split(":", 1)[1]
    words = [w.strip(".,;:!?\"'`*()[]").lower() for w in region.replace(",", " ").split()]
    words = [w for w in words if w]
    return Extraction(" ".join(words), "marker+text" if marked else "text") if words else \
        Extraction(None, "empty")


# ------------------------------------------------------------------ entry points
def extract_answer(text: str | None, kind: str, options: Sequence[str] | None = None,
                   labels: Sequence[str] | None = None) -> Extraction:
    """Dispatch on `kind` (one of ANSWER_KINDS); None or blank text is unparseable."""
    if kind not in ANSWER_KINDS:
        raise ValueError(f"answer kind {kind!r}: expected one of {ANSWER_KINDS}")
    if text is None or not str(text).strip():
        return Extraction(None, "empty_output")
    text = str(text)
    if kind == "choice":
        return extract_choice(text, options)
    if kind == "boolean":
        return extract_boolean(text, labels or ("True", "False"))
    if kind == "number":
        return extract_number(text)
    return extract_text(text, brackets=kind == "brackets")


def normalize_target(target: str, kind: str, labels: Sequence[str] | None = None) -> str:
    """The gold answer in the form `extract_answer` returns ("(C)" -> "C", "1,000" -> "1000")."""
    target = str(target).strip()
    if kind == "choice":
        m = re.fullmatch(r"\(?([A-Ra-r])\)?\.?", target)
        if not m:
            raise ValueError(f"choice target {target!r}: expected a letter like 'C' or '(C)'")
        return m.group(1).upper()
    if kind == "boolean":
        for lab in labels or ("True", "False"):
            if target.lower() == lab.lower():
                return lab
        raise ValueError(f"boolean target {target!r}: expected one of {list(labels or ('True', 'False'))}")
    if kind == "number":
        value = _clean_number(target)
        if value is None:
            raise ValueError(f"number target {target!r}: not a number")
        return value
    extracted = extract_text(target, brackets=kind == "brackets").answer
    return extracted or ""


def score_prediction(text: str | None, target: str, kind: str, options: Sequence[str] | None = None,
                     labels: Sequence[str] | None = None) -> tuple[bool, Extraction]:
    """(correct?, extraction). An unparseable prediction is wrong."""
    ex = extract_answer(text, kind, options, labels)
    return (ex.answer is not None and ex.answer == normalize_target(target, kind, labels)), ex
