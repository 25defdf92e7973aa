"""Answer extraction and scoring for the three task types: choice letters, numbers, closed labels."""
from __future__ import annotations

import math
import re

LETTERS = "ABCDEFGHIJ"  # choice tasks index 2 to 10 options

_ANSWER_TAG = re.compile(r"\banswer\b\s*\**\s*(?:is\s*)?[:：]\s*\**", re.IGNORECASE)
# A number: optional sign, optional currency, then a fraction (3/4), or thousands groups or plain digits with
# optional decimals and exponent (1.5e3: without it the number would be read as 1.5), then an optional %.
_NUMBER = re.compile(r"(?<![\w.])([-−–]?)\s?\$?(\d+/\d+(?![\d/])|(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
                     r"(?:[eE][-+]?\d+)?)\s?(%?)")
_LETTER_UPPER = re.compile(r"^[\(\[]?([A-J])(?:[\)\].:,]|\s|$)")
_LETTER_LOWER = re.compile(r"^[\(\[]?([a-j])(?:[\)\]]|\.?\s*$|[.:]\s)")
_OPTION_WORD = re.compile(r"^option\s*[\(\[]?([A-Ja-j])\b", re.IGNORECASE)


def parse_number(text: str, whole: bool = False) -> float | None:
    """First number in text; handles '%', '$', thousands separators, unicode minus, exponents, fractions.
    whole: the text must be nothing but the number (a gold answer: '4 or 5' is not 4). None when there is
    no finite number."""
    text = str(text)
    m = _NUMBER.fullmatch(text.strip()) if whole else _NUMBER.search(text)
    if not m:
        return None
    sign, digits, _pct = m.groups()
    top, _, bottom = digits.replace(",", "").partition("/")
    if bottom and not float(bottom):
        return None
    value = float(top) / float(bottom) if bottom else float(top)
    if not math.isfinite(value):
        return None
    return -value if sign else value


def format_number(value: float) -> str:
    return repr(float(value))


def _clean(text: str) -> str:
    return re.sub(r"[*_`]", "", text).strip()


def _answer_span(response: str) -> str | None:
    """Text after the last 'Answer:' tag (to the end of its line, or the next non-empty line)."""
    tags = list(_ANSWER_TAG.finditer(response))
    if not tags:
        return None
    rest = response[tags[-1].end():]
    for line in rest.splitlines() or [""]:
        if _clean(line):
            return _clean(line)
    return ""


def answer_key(text: str) -> str:
    """What answers are matched by: case, punctuation and spacing ignored."""
    return re.sub(r"[^\w%.-]+", " ", text.lower()).strip(" .")


def _match_text(span: str, choices: list[str]) -> int | None:
    """Index of the choice the span names: exact text first, then a unique choice it starts with."""
    s = answer_key(span)
    if not s:
        return None
    exact = [i for i, c in enumerate(choices) if answer_key(c) == s]
    if exact:
        return exact[0]
    prefix = [i for i, c in enumerate(choices) if answer_key(c) and s.startswith(answer_key(c) + " ")]
    return prefix[0] if len(prefix) == 1 else None


def _choice_from(span: str, options: list[str]) -> str | None:
    span = span.strip()
    letters = LETTERS[: len(options)]
    for pattern in (_OPTION_WORD, _LETTER_UPPER, _LETTER_LOWER):
        m = pattern.match(span)
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
    i = _match_text(span, options)
    return letters[i] if i is not None else None


def extract(response: str, task: str, options: list[str] | None = None) -> str | None:
    """The answer a response gives, canonical for the task, or None. The last 'Answer:' wins; a response
    without the tag counts only when it is nothing but an answer (a bare letter, option text or number)."""
    if response is None:
        return None
    span = _answer_span(response)
    bare = span is None
    if bare:
        span = _clean(response)
        if "\n" in span or len(span) > 80:
            return None
    if task == "choice":
        return _choice_from(span, options or [])
    if task == "label":
        i = _match_text(span, options or [])
        return options[i] if i is not None else None
    if task == "number":
        if bare and not _NUMBER.fullmatch(span.rstrip(".")):
            return None
        value = parse_number(span)
        return None if value is None else format_number(value)
    raise ValueError(f"unknown task type {task!r}")


def is_correct(predicted: str | None, gold: str | None, task: str) -> bool:
    if predicted is None or gold is None:
        return False
    if task == "number":
        p, g = float(predicted), float(gold)
        return math.isclose(p, g, rel_tol=1e-2, abs_tol=1e-9)
    return predicted == gold


def format_answer(answer: str, task: str) -> str:
    """The response format every prompt asks for, and every training target uses."""
    return f"Answer: {answer}"
