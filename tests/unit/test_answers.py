import pytest

from semievol_core.answers import extract, format_answer, is_correct, parse_number

FPB = ["negative", "neutral", "positive"]
ARC = ["Archaea", "Eubacteria", "Eukaryota", "Protista"]
TEN = [f"option {i}" for i in range(10)]

CHOICE = [
    ("Answer: A", FPB, "A"),
    ("Answer: A.", FPB, "A"),
    ("Answer: (A)", FPB, "A"),
    ("Answer: **A**", FPB, "A"),
    ("**Answer:** B", FPB, "B"),
    ("Answer: a", FPB, "A"),
    ("answer: c", FPB, "C"),
    ("Answer: A) negative", FPB, "A"),
    ("Answer: B. neutral", FPB, "B"),
    ("Answer: [C]", FPB, "C"),
    ("Answer: neutral", FPB, "B"),
    ("Answer: Positive.", FPB, "C"),
    ("Answer: a neutral", FPB, None),  # neither a bare letter nor an option's text: no answer
    ("Answer: Option B", FPB, "B"),
    ("Answer: option (c)", FPB, "C"),
    ("The sentence reports a loss. Answer: A", FPB, "A"),
    ("Answer: B\nWait, reconsidering.\nAnswer: C", FPB, "C"),  # the last Answer: wins
    ("Answer:\nC", FPB, "C"),
    ("The answer is: D", ARC, "D"),
    ("Answer : C", ARC, "C"),
    ("Answer: Eukaryota", ARC, "C"),
    ("Answer: eukaryota, since animals have nuclei", ARC, "C"),
    ("Answer: E", ARC, None),  # outside the four options
    ("Answer: J", TEN, "J"),
    ("Answer: ", FPB, None),
    ("I think it is positive overall.", FPB, None),  # no tag and not a bare answer
    ("B", FPB, "B"),
    ("(b)", FPB, "B"),
    ("neutral", FPB, "B"),
    ("Answer: Bassistant", FPB, None),  # a glued next turn must not read as B
    ("", FPB, None),
]

NUMBER = [
    ("Answer: 42", "42.0"),
    ("Answer: 348.0", "348.0"),
    ("Answer: 348.0.", "348.0"),
    ("Answer: 1,234", "1234.0"),
    ("Answer: 1,234,567.5", "1234567.5"),
    ("Answer: -17", "-17.0"),
    ("Answer: −3.5", "-3.5"),
    ("Answer: 45%", "45.0"),
    ("Answer: $1,200", "1200.0"),
    ("Answer: .5", "0.5"),
    ("So 3 apples plus 4 apples. Answer: 7 apples", "7.0"),
    ("Answer: 12\nAnswer: 13", "13.0"),
    ("Answer: none", None),
    ("7", "7.0"),
    ("There are 7 of them.", None),
    ("Answer: 1.5e3", "1500.0"),  # read as 1.5 before exponents were part of a number
    ("Answer: 2.5E-2", "0.025"),
    ("Answer: 3/4", "0.75"),  # read as 3 before fractions were
    ("Answer: 1/0", None),
]

LABEL = [
    ("Answer: positive", "positive"),
    ("Answer: Positive", "positive"),
    ("Answer: **negative**", "negative"),
    ("Answer: neutral sentiment", "neutral"),
    ("Answer: mixed", None),
    ("negative", "negative"),
]


@pytest.mark.parametrize("text,options,want", CHOICE)
def test_choice(text, options, want):
    assert extract(text, "choice", options) == want


@pytest.mark.parametrize("text,want", NUMBER)
def test_number(text, want):
    assert extract(text, "number") == want


@pytest.mark.parametrize("text,want", LABEL)
def test_label(text, want):
    assert extract(text, "label", FPB) == want


def test_enough_cases():
    assert len(CHOICE) + len(NUMBER) + len(LABEL) >= 40


def test_number_tolerance_and_scoring():
    assert is_correct("100.5", "100.0", "number")  # within 1e-2 relative
    assert not is_correct("102.0", "100.0", "number")
    assert is_correct("-0.0", "0.0", "number")
    assert not is_correct(None, "A", "choice")
    assert is_correct("B", "B", "choice") and not is_correct("A", "B", "choice")
    assert parse_number("348.0") == 348.0 and parse_number("no digits") is None


def test_round_trip_of_the_trained_format():
    for task, options, answer in [("choice", FPB, "C"), ("number", None, "12.5"), ("label", FPB, "neutral")]:
        assert extract(format_answer(answer, task), task, options) == answer


def test_gold_numbers_are_whole_and_finite():
    assert parse_number("3/4/2020") == 3.0  # a date is not a fraction
    assert parse_number(" $1,200 ", whole=True) == 1200.0 and parse_number("1e+20", whole=True) == 1e20
    for text in ("4 or 5", "7 apples", "1e999", "1/0", "1 1/2", "e5", ""):
        assert parse_number(text, whole=True) is None, text
