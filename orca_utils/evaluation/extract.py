"""Answer extraction: turn a model's free text into the answer a benchmark scores, or report that it could not.

Weak evaluation overestimates small models (and published BBH scores have collapsed from parsing bugs alone), so
every output is read under two conventions, both reported, as lm-evaluation-harness reports `strict-match` and
`flexible-extract`:

`published`: exactly how the benchmark's authors scored, so that our number on a given file equals theirs, item by
item (`extract_published`, `score_published`):
- BBH (suzgunmirac/BIG-Bench-Hard, commit 9ee07bd481feebf959a6b59d61ea57bdcf30964d). The repository ships no
  scoring code; its released model outputs (`code-davinci-002-outputs/code-davinci-002-{cot,direct}/
  <task>_few_shot_template_0-255000.json`, items `{"input", "target", "prediction"}`) come with the accuracy of each
  file (`<task>_few_shot_template_0-255000_eval_metrics.jsonl`, key `accuracy`). The rule: when the output contains
  "So the answer is" (the answer sentence of every BBH chain-of-thought exemplar), the answer is the text after
  its LAST occurrence, whitespace stripped, one trailing period dropped; otherwise (direct answers) the whole
  output, whitespace stripped. The answer is right when it equals the target string exactly (case and all). This
  rule reproduces the released accuracy of all 54 files (27 tasks x CoT/direct, 13,022 items) exactly; a hedge
  "(A) or (B)" is simply not equal to "(B)". Targets that are option text ("Monsters, Inc") are compared as text.
- AGIEval (ruixiangcui/AGIEval, commit 5c77d073fda993f1652eaae3cf5d04cc5fd21d40): `src/post_process.py`,
  `post_process()` reads a zero-shot answer of a single-answer multiple-choice task with
  `find_first_capital_letter`: the first character of the output in {A, B, C, D, E, F}, anywhere in the text ("" if
  none, scored wrong); `src/evaluation.py`, `evaluate_single_sample()`, compares it with the label (`==`). So
  "Among A through E, the answer is C" reads as "A", exactly as AGIEval's own numbers were computed.

`robust` (the default for free-form generations; `extract_answer`): reads the answer a model stated in any common
form, but never credits an answer the model did not give. `answer is None` means unparseable: it is scored as wrong
and counted in the extraction-failure rate that every table reports. Where the answer is looked for:
1. after the LAST answer statement ("the answer is", "answer:", "final answer:", "the correct option is", ...):
   only its first clause (up to the sentence end, a line break, "because" or "since") is read, never the reasoning
   before it. A clause that names two options ("(A) or (B)", "(A) and (B)"), both boolean labels or two numbers
   joined by "or" is a hedge, and one that names no option ("(None of the above)") is unanswered: both are
   extraction failures, not a guess from the reasoning;
2. else a direct answer at the start of the output ("(B)", "B", "B.", "B) 15", "C: 18", "**C**", "No, ...");
3. else the output's last sentence, when the output is complete (it ends a sentence, or is a single line without a
   chain-of-thought opener), naming exactly one option ("The remaining option (C) fits." -> C), one label or a
   number; an output cut off before any final answer (several sentences, the last unfinished) is a failure.

Answer kinds:
- `choice`: a letter option, as "(B)", "B)", "B.", "B:", "**B**", "answer: b", "option B", or the option's text
  instead of its letter (returned as the bare letter, e.g. "B").
- `boolean`: a two-word label set (True/False, Yes/No, valid/invalid), with variants ("yes.", "Not valid", "TRUE").
- `number`: an integer or decimal; commas, currency and units are dropped ("1,234 apples" -> "1234"), number
  words up to twenty are read ("five" -> "5").
- `text`: free text compared after normalization (BBH word_sorting: the word sequence; dyck_languages: the
  bracket sequence, via `kind="brackets"`), after the last answer marker ("so the answer is", "therefore," ...);
  without a marker only a direct answer is read whole (one sentence, extra lines of at most three words), never
  the brackets or words of step-by-step reasoning.

Every rule is tested on real-looking outputs (`tests/test_extract.py`, `tests/test_eval_conventions.py`, which also
holds a few of BBH's released lines).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Extraction", "extract_answer", "extract_choice", "extract_boolean", "extract_number",
           "extract_text", "normalize_target", "score_prediction", "extract_published", "score_published",
           "published_target", "option_letter", "ANSWER_KINDS", "BOOLEAN_LABELS", "CONVENTIONS",
           "BBH_ANSWER_MARKER", "AGIEVAL_LETTERS"]

ANSWER_KINDS = ("choice", "boolean", "number", "text", "brackets")
BOOLEAN_LABELS = {"true_false": ("True", "False"), "yes_no": ("Yes", "No"), "valid": ("valid", "invalid")}
CONVENTIONS = ("robust", "published")
BBH_ANSWER_MARKER = "So the answer is"          # BBH's CoT answer sentence (published rule)
AGIEVAL_LETTERS = "ABCDEF"                       # AGIEval's find_first_capital_letter letter set
LETTERS = "ABCDEFGHIJKLMNOPQR"


@dataclass(frozen=True)
class Extraction:
    """The normalized answer (None when unparseable) and the rule that found it, or why none was found."""

    answer: str | None
    method: str

    @property
    def failed(self) -> bool:
        return self.answer is None


# every answer statement, including the weak connectives; free-text answers (word sorting, dyck) use these
_MARKER = re.compile(
    r"(?:final\s+answer|correct\s+answer|the\s+answer|answer|correct\s+option|correct\s+choice|"
    r"the\s+result)\s*(?:is|would\s+be|will\s+be|should\s+be|=|:|-|would\s+be\s*:)?\s*:?|"
    r"\bso\s+the\s+answer\s+is|\btherefore,?|\bthus,?|\bhence,?",
    re.IGNORECASE)
# a stated final answer: "answer" (or "correct option" ...) followed by a verb or a colon; "therefore", "thus" and
# a bare "answer" ("to answer this, ...") begin reasoning as often as conclusions, so they do not count
_STATED = re.compile(
    r"(?:\b(?:final|correct|right|best)\s+(?:answer|option|choice)|\bthe\s+answer|\banswer)"
    r"\s*(?:is|would\s+be|will\s+be|should\s+be|must\s+be|=|:|-)\s*:?",
    re.IGNORECASE)
_NOISE = re.compile(r"^(?:[\s\"'`*_:\-=>\[]+|option\s+|choice\s+|letter\s+)", re.IGNORECASE)
_CLAUSE_END = re.compile(r"\n|[.!?](?=\s|$)|\b(?:because|since)\b", re.IGNORECASE)
_COT_OPENER = re.compile(r"let'?s\s+think|step\s+by\s+step|let\s+us\s+think", re.IGNORECASE)
_CONNECTIVE = re.compile(r"^(?:so|thus|hence|therefore)\b[\s,:]*", re.IGNORECASE)


def _answer_region(text: str) -> tuple[str, bool]:
    """The text after the last answer marker, weak connectives included (and whether there was one)."""
    last = None
    for m in _MARKER.finditer(text):
        if text[m.end():].strip():          # a marker at the very end says nothing
            last = m
    if last is None:
        return text, False
    return text[last.end():], True


def _stated_region(text: str) -> str | None:
    """The text after the last stated answer ("the answer is", "answer:" ...), None when the output states none."""
    last = None
    for m in _STATED.finditer(text):
        if text[m.end():].strip():
            last = m
    return None if last is None else text[last.end():]


def _clause(region: str) -> str:
    """The answer clause of a region: up to the sentence end, a line break, "because" or "since"."""
    region = region.lstrip()
    m = _CLAUSE_END.search(region)
    return region[:m.start()] if m else region


def _last_sentence(text: str) -> str | None:
    """The output's last sentence when the output is complete; None when it was cut off before concluding."""
    body = text.strip()
    pieces = [p for p in re.split(r"\n+|(?<=[.!?])\s+", body) if p.strip()]
    if not pieces:
        return None
    ended = re.search(r"[.!?][\"'*)\]]*$", body) is not None
    if not ended and (len(pieces) > 1 or _COT_OPENER.search(body)):
        return None
    return pieces[-1]


def _strip_lead(region: str) -> str:
    prev = None
    while prev != region:
        prev, region = region, _NOISE.sub("", region, count=1)
    return region


def _norm_words(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def _option_body(option: str) -> str:
    return _norm_words(re.sub(r"^\s*\(?[A-R]\)\s*", "", str(option)))


def option_letter(text: str, options: Sequence[str] | None) -> str | None:
    """The letter of the one option whose text equals `text` (case and punctuation aside); None if not exactly one."""
    if not options:
        return None
    want = _norm_words(str(text))
    hits = [LETTERS[i] for i, opt in enumerate(options) if want and _option_body(opt) == want]
    return hits[0] if len(hits) == 1 else None


# ------------------------------------------------------------------ letters
def _options_named(span: str, options: Sequence[str] | None) -> set[str]:
    """Letters of the options whose text the span names (a name inside a longer named option does not count)."""
    if not options:
        return set()
    hay = f" {_norm_words(span)} "
    hits = []                                  # (start, end, letter)
    for i, opt in enumerate(options):
        body = _option_body(opt)
        if not body:
            continue
        start = hay.find(f" {body} ")
        while start >= 0:
            hits.append((start, start + len(body) + 2, LETTERS[i]))
            start = hay.find(f" {body} ", start + 1)
    kept = [h for h in hits if not any(o[0] <= h[0] and h[1] <= o[1] and o[1] - o[0] > h[1] - h[0] for o in hits)]
    return {h[2] for h in kept}


def _head_letter(s: str, letters: str) -> str | None:
    """A letter answer at the very start: "(B)", "(b)", "B" before a space or punctuation, "b" before punctuation."""
    cls, low = letters, letters.lower()
    m = re.match(rf"\(([{cls}{low}])\)|([{cls}])(?=$|[\s.,:;)!?*\"'])|([{low}])(?=$|[.,:;)!?*\"'])", s)
    return (m.group(1) or m.group(2) or m.group(3)).upper() if m else None


def _letters_named(span: str, letters: str, head: bool) -> set[str]:
    """Option letters a clause names: "(B)" anywhere, "option B", hedges "A or B", and (head) a letter leading it."""
    cls, low = letters, letters.lower()
    after = r"(?=$|[\s.,:;)!?*\"'])"
    named = {x.upper() for x in re.findall(rf"\(([{cls}{low}])\)", span)}
    named |= set(re.findall(rf"(?:\b(?:or|and)\b|/|&)\s*\(?([{cls}])\)?{after}", span))
    named |= set(re.findall(rf"\b(?i:option|choice|letter)\s+\(?([{cls}])\)?{after}", span))
    if head:
        first = _head_letter(_strip_lead(span.strip()), letters)
        if first:
            named.add(first)
    return named


def _choice_in(span: str, options: Sequence[str] | None, letters: str, where: str, head: bool) -> Extraction:
    named = _letters_named(span, letters, head)
    if not named:
        named = _options_named(span, options)
        how = "option_text"
    else:
        how = "letter"
    if len(named) > 1:
        return Extraction(None, f"{where}_names_several_options")
    if named:
        return Extraction(named.pop(), f"{where}+{how}")
    return Extraction(None, f"{where}_names_no_option")


def _direct_letter(text: str, options: Sequence[str] | None, letters: str) -> str | None:
    """A direct answer leading the output: "(B)", "(B) <its text>", "B", "B.", "B) 15", "C: 18", "**C**"."""
    s = re.sub(r"^A:\s*(?=\()", "", _strip_lead(text.strip()))      # "A: (B)" echoes the prompt's answer turn
    m = re.match(rf"\(([{letters}{letters.lower()}])\)", s)
    if m:
        letter, rest = m.group(1).upper(), s[m.end():]
        if re.match(r"[ \t]*(?:$|\n|[.,:;!*])", rest):
            return letter
        body = _option_body(options[LETTERS.index(letter)]) if options and LETTERS.index(letter) < len(options) \
            else ""
        return letter if body and f"{_norm_words(rest)} ".startswith(f"{body} ") else None
    m = re.match(rf"([{letters}])(?:$|[.):*]|\s*$)", s)        # "B", "B.", "B) 12", "B: text"
    if m and not re.fullmatch(r"[A-R]:\s*", s):                   # a bare "A:" echoes the prompt's "A:" turn
        return m.group(1)
    return None


def extract_choice(text: str, options: Sequence[str] | None = None, letters: str = LETTERS) -> Extraction:
    """A letter option (returned as the bare letter, e.g. "B"), read as the module docstring says (robust)."""
    if options:
        letters = letters[:len(options)]
    region = _stated_region(text)
    if region is not None:
        return _choice_in(_clause(region), options, letters, "marker", head=True)
    direct = _direct_letter(text, options, letters)
    if direct:
        return Extraction(direct, "leading_letter")
    last = _last_sentence(text)
    if last is None:
        return Extraction(None, "no_final_answer")
    stripped = _CONNECTIVE.sub("", last)                          # "Thus, B." concludes like "the answer is B"
    return _choice_in(stripped, options, letters, "last_sentence", head=stripped != last)


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

    region = _stated_region(text)
    if region is not None:
        found = {label(m) for m in pattern.finditer(_clause(region))}
        if len(found) > 1:
            return Extraction(None, "marker_names_both_labels")
        return Extraction(found.pop(), "marker+label") if found else Extraction(None, "marker_names_no_label")
    s = _strip_lead(text.strip())
    m = pattern.match(s)
    if m and re.match(r"[ \t]*(?:$|\n|[.,:;!?*)\"'])", s[m.end():]):
        return Extraction(label(m), "leading_label")
    last = _last_sentence(text)
    if last is None:
        return Extraction(None, "no_final_answer")
    hits = list(pattern.finditer(last))
    if not hits:
        return Extraction(None, "no_label")
    alt = rf"\b(?:{re.escape(pos)}|{re.escape(neg)})\b"
    if re.search(rf"{alt}\s*(?:\bor\b|/)\s*{alt}", last, re.IGNORECASE) and len({label(h) for h in hits}) > 1:
        return Extraction(None, "last_sentence_names_both_labels")
    return Extraction(label(hits[-1]), "last_sentence+label")


# ------------------------------------------------------------------ numbers
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUM = re.compile(r"(?<![\w.])[-−–]?\$?\d[\d,]*(?:\.\d+)?(?![\d])")
_WORDS = re.compile(rf"\b({'|'.join(_NUMBER_WORDS)})\b", re.IGNORECASE)


def _clean_number(raw: str) -> str | None:
    s = raw.replace("$", "").replace(",", "").replace("−", "-").replace("–", "-")
    try:
        value = float(s)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def _number_value(raw: str) -> str | None:
    return _NUMBER_WORDS[raw.lower()] if raw.lower() in _NUMBER_WORDS else _clean_number(raw)


def extract_number(text: str) -> Extraction:
    """A number as a canonical string ("1,234.0 apples" -> "1234", "-7" -> "-7", "five" -> "5")."""
    region = _stated_region(text)
    if region is not None:
        head = _clause(region)[:80]
        one = rf"(?:{_NUM.pattern}|\b(?:{'|'.join(_NUMBER_WORDS)})\b)"
        hedge = re.search(rf"({one})\s+or\s+({one})", head, re.IGNORECASE)
        if hedge and _number_value(hedge.group(1).strip()) != _number_value(hedge.group(2).strip()):
            return Extraction(None, "marker_names_several_numbers")
        m, w = _NUM.search(head), _WORDS.search(head)
        if m and (not w or m.start() <= w.start()):
            return Extraction(_clean_number(m.group(0)), "marker+number")
        if w:
            return Extraction(_NUMBER_WORDS[w.group(1).lower()], "marker+number_word")
        return Extraction(None, "marker_names_no_number")
    last = _last_sentence(text)
    if last is None:
        return Extraction(None, "no_final_answer")
    nums = _NUM.findall(last)
    if nums:
        return Extraction(_clean_number(nums[-1]), "last_number")
    w = list(_WORDS.finditer(last))
    if w:
        return Extraction(_NUMBER_WORDS[w[-1].group(1).lower()], "last_number_word")
    return Extraction(None, "no_number")


# ------------------------------------------------------------------ free text
def _direct_text(text: str) -> bool:
    """Whether an output without an answer marker reads as a direct answer (read whole) rather than reasoning
    (a chain-of-thought opener, several sentences, or lines of prose: no final answer to read)."""
    body = text.strip()
    lines = [ln for ln in body.splitlines() if ln.strip()]
    return not (_COT_OPENER.search(body) or len(re.split(r"(?<=[.!?])\s+", body)) > 1
                or any(len(ln.split()) > 3 for ln in lines[1:]))


def extract_text(text: str, brackets: bool = False) -> Extraction:
    """Free-form answers: the word sequence (lowercase, punctuation at word edges dropped), or the bracket
    sequence (`brackets=True`, e.g. "] ) }")."""
    region, marked = _answer_region(text)
    if not marked and not _direct_text(text):
        return Extraction(None, "no_final_answer")
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


# ------------------------------------------------------------------ entry points (robust)
def extract_answer(text: str | None, kind: str, options: Sequence[str] | None = None,
                   labels: Sequence[str] | None = None) -> Extraction:
    """The robust reading: dispatch on `kind` (one of ANSWER_KINDS); None or blank text is unparseable."""
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


def normalize_target(target: str, kind: str, labels: Sequence[str] | None = None,
                     options: Sequence[str] | None = None) -> str:
    """The gold answer in the form `extract_answer` returns ("(C)" -> "C", "1,000" -> "1000").

    A choice target given as option text is mapped to its letter when it equals exactly one option's text
    (`options`); otherwise it raises, naming the target.
    """
    target = str(target).strip()
    if kind == "choice":
        m = re.fullmatch(r"\(?([A-Ra-r])\)?\.?", target)
        if m:
            return m.group(1).upper()
        letter = option_letter(target, options)
        if letter:
            return letter
        if options:
            raise ValueError(f"choice target {target!r}: option text that names no single option "
                             f"(options: {[str(o) for o in options]})")
        raise ValueError(f"choice target {target!r}: expected a letter like 'C' or '(C)'")
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
    """(correct?, extraction) under the robust convention. An unparseable prediction is wrong."""
    ex = extract_answer(text, kind, options, labels)
    return (ex.answer is not None and ex.answer == normalize_target(target, kind, labels, options)), ex


# ------------------------------------------------------------------ the published conventions
def extract_published(text: str | None, benchmark: str) -> Extraction:
    """The answer string the benchmark's authors compared with the target (see the module docstring)."""
    if benchmark not in ("bbh", "agieval"):
        raise ValueError(f"benchmark {benchmark!r}: the published convention is defined for 'bbh' and 'agieval'")
    text = "" if text is None else str(text)
    if benchmark == "agieval":
        for ch in text:                                   # post_process.find_first_capital_letter
            if ch in AGIEVAL_LETTERS:
                return Extraction(ch, "published_first_capital")
        return Extraction(None, "published_no_capital")
    if BBH_ANSWER_MARKER in text:
        answer = text.split(BBH_ANSWER_MARKER)[-1].strip()
        answer = answer.removesuffix(".")
        return Extraction(answer or None, "published_after_marker")
    return Extraction(text.strip() or None, "published_whole_output")


def published_target(target: str, benchmark: str) -> str:
    """The gold string the published rule compares with: BBH's target as given (stripped), AGIEval's label letter."""
    target = str(target).strip()
    if benchmark == "agieval":
        m = re.fullmatch(r"\(?([A-Ra-r])\)?\.?", target)
        if not m:
            raise ValueError(f"AGIEval label {target!r}: expected a letter like 'C'")
        return m.group(1).upper()
    if not target:
        raise ValueError("BBH target is empty")
    return target


def score_published(text: str | None, target: str, benchmark: str) -> tuple[bool, Extraction]:
    """(correct?, extraction) exactly as the benchmark's authors scored: string equality with the target."""
    ex = extract_published(text, benchmark)
    return ex.answer is not None and ex.answer == published_target(target, benchmark), ex
