"""The two self-justify prompts: what the model reads, and that both end with the instruction the answer
extractor expects."""
from semievol_core.data import Record
from semievol_core.prompts import justify_messages, user_turn

REC = Record("r1", "Sales rose 5% in the quarter.", ["negative", "neutral", "positive"], None)
RESPONSES = ["Answer: C", "The answer is B", "Answer: C", "I cannot tell"]
ANSWERS = ["C", "B", "C", None]


def test_paper_prompt_lists_the_responses_then_the_trained_question():
    [msg] = justify_messages(REC, "choice", RESPONSES, ANSWERS)
    text = msg["content"]
    assert msg["role"] == "user" and text.startswith("4 candidate responses")
    assert "Response 2: The answer is B" in text and "Response 4: I cannot tell" in text
    assert text.endswith(user_turn(REC, "choice"))  # the turn the warm model was trained to answer


def test_tally_prompt_counts_each_answer_with_its_option_text_and_ends_with_the_instruction():
    [msg] = justify_messages(REC, "choice", RESPONSES, ANSWERS, style="tally")
    text = msg["content"]
    assert text.startswith("Sales rose 5% in the quarter.\n\nA. negative\nB. neutral\nC. positive")
    tally = text[text.index("4 attempts"):].splitlines()
    # most given first; an answer the extractor could not read is counted apart
    assert tally[1:4] == ["- C. positive: 2 of 4", "- B. neutral: 1 of 4", "- no readable answer: 1 of 4"]
    assert "The answer is B" not in text  # the extracted answers, not the raw responses
    assert text.endswith("Reply with the letter of the correct option, in the form 'Answer: X'.")


def test_tally_prompt_for_labels_and_numbers_shows_the_answer_itself():
    rec = Record("r2", "Is it?", ["yes", "no", "maybe"], None)
    [msg] = justify_messages(rec, "label", ["Answer: yes", "Answer: no"], ["yes", "no"], style="tally")
    assert "- yes: 1 of 2\n- no: 1 of 2" in msg["content"]
    num = Record("r3", "2 + 2?", None, None)
    [msg] = justify_messages(num, "number", ["Answer: 4", "Answer: 4", "5"], ["4.0", "4.0", "5.0"], style="tally")
    assert "- 4.0: 2 of 3\n- 5.0: 1 of 3" in msg["content"] and msg["content"].endswith("'Answer: <number>'.")
