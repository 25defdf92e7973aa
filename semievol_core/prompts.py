"""Chat messages for inference (0..k shots), self-justification and training. The backend applies the
model's chat template; the format asked for here is the one answers.extract reads."""
from __future__ import annotations

from collections import Counter

from .answers import LETTERS, format_answer
from .data import Record

Messages = list[dict]


def _instruction(task: str, options: list[str] | None) -> str:
    if task == "choice":
        return "Reply with the letter of the correct option, in the form 'Answer: X'."
    if task == "label":
        return f"Reply with one of {', '.join(options)}, in the form 'Answer: <label>'."
    return "Reply with the number, in the form 'Answer: <number>'."


def question_block(record: Record, task: str) -> str:
    parts = [record.question.strip()]
    if task == "choice":
        parts.append("\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(record.options)))
    elif task == "label":
        parts.append("Options: " + ", ".join(record.options))
    return "\n\n".join(parts)


def user_turn(record: Record, task: str) -> str:
    return f"{question_block(record, task)}\n\n{_instruction(task, record.options)}"


def inference_messages(record: Record, task: str, shots: list[Record] = ()) -> Messages:
    """Retrieved labeled examples become earlier turns of the same chat (in-context propagation)."""
    messages: Messages = []
    for shot in shots:
        messages.append({"role": "user", "content": user_turn(shot, task)})
        messages.append({"role": "assistant", "content": format_answer(shot.answer, task)})
    messages.append({"role": "user", "content": user_turn(record, task)})
    return messages


def justify_messages(record: Record, task: str, responses: list[str], answers: list[str | None] = (),
                     style: str = "paper") -> Messages:
    """Self-justification (paper section 3.3): the model reads its n disagreeing responses and decides.

    paper: the responses listed, then the same question and instruction the warm model was trained on, so its
    reply keeps the trained answer format (a warm model that learned the label prior answers from the question
    alone and returns that prior). tally: the question first, then each distinct extracted answer with how many
    of the n responses gave it, then the instruction: the candidates are what the model reads last."""
    if style == "tally":
        counts = Counter(a for a in answers if a is not None)
        lines = [f"- {_shown(a, record, task)}: {c} of {len(answers)}" for a, c in counts.most_common()]
        if len(answers) > sum(counts.values()):
            lines.append(f"- no readable answer: {len(answers) - sum(counts.values())} of {len(answers)}")
        text = (f"{question_block(record, task)}\n\n{len(answers)} attempts at this question answered:\n"
                + "\n".join(lines) + "\n\nWeigh the attempts and decide which answer is correct. "
                + _instruction(task, record.options))
        return [{"role": "user", "content": text}]
    listed = "\n\n".join(f"Response {i + 1}: {r.strip() or '(empty)'}" for i, r in enumerate(responses))
    text = (f"{len(responses)} candidate responses to the question below disagree:\n\n{listed}\n\n"
            f"Judge which answer is correct.\n\n{user_turn(record, task)}")
    return [{"role": "user", "content": text}]


def _shown(answer: str, record: Record, task: str) -> str:
    """An extracted answer as a reader of the question sees it: a choice letter with its option's text."""
    if task == "choice" and answer in LETTERS[:len(record.options)]:
        return f"{answer}. {record.options[LETTERS.index(answer)]}"
    return str(answer)


def training_example(record: Record, task: str, answer: str) -> tuple[Messages, str]:
    """(prompt messages, target response): the 0-shot prompt and the format the prompts ask for."""
    return inference_messages(record, task), format_answer(answer, task)
