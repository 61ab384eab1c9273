"""Task prompts and chat messages, written once for training, evaluation, the CLI and the demo.

The task prompts are the official release's (``shared/reference/official-aki.md``, "Task
prompts"): the instruction comes *before* the question, and option lists end with a newline.
LLaVA's evaluation convention (question, newline, instruction) is a separate, named builder,
used only where a benchmark's own protocol asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aki.constants import ORDERS

SHORT_ANSWER = "Answer the question using a single word or phrase."
"""VQAv2, GQA, OCR-VQA (and VSR before its yes/no instruction)."""
YES_NO = "Please answer yes or no."
OPTION_LETTER = "Answer with the option's letter from the given choices directly."
"""A-OKVQA, ScienceQA, CV-Bench."""
REGION = "Provide a short description for this region."
"""RefCOCO, RefCOCO+, RefCOCOg, Visual Genome."""
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def short_answer_prompt(question: str) -> str:
    """``Answer the question using a single word or phrase. {question}`` (VQAv2 / GQA / OCR-VQA)."""
    return f"{SHORT_ANSWER} {question.strip()}"


def yes_no_prompt(question: str) -> str:
    """VSR: the short-answer prompt with the yes/no instruction after the question."""
    return f"{SHORT_ANSWER} {question.strip()} {YES_NO}"


def options_prompt(question: str, options: Sequence[str], context: str | None = None) -> str:
    """``{instruction} [Context: ..\\n]{question}\\nOptions:\\nA. ..\\nB. ..\\n``.

    The official A-OKVQA / ScienceQA training prompt and the official CV-Bench evaluation prompt:
    every option line, the last included, ends with a newline.
    """
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options can be lettered; got {len(options)}.")
    text = f"{OPTION_LETTER} "
    if context and context.strip():
        text += f"Context: {context.strip()}\n"
    text += f"{question.strip()}\nOptions:\n"
    return text + "".join(f"{LETTERS[k]}. {o}\n" for k, o in enumerate(options))


def llava_short_answer_prompt(question: str) -> str:
    """LLaVA's evaluation convention (POPE and other short-answer benchmarks): question, newline,
    then the short-answer instruction."""
    return f"{question.strip()}\n{SHORT_ANSWER}"


def user_message(text: str, n_images: int = 1, order: str = "I&T") -> dict:
    """A user chat message with ``n_images`` image items before (I&T) or after (T&I) the text."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; got {order!r}.")
    images = [{"type": "image"} for _ in range(n_images)]
    txt = [{"type": "text", "text": text}]
    return {"role": "user", "content": images + txt if order == "I&T" else txt + images}


def assistant_message(text: str) -> dict:
    """An assistant chat message holding ``text``."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def qa_messages(question: str, answer: str, n_images: int = 1, order: str = "I&T") -> list[dict]:
    """A single-turn conversation: the user's question with its image(s), then the answer."""
    return [user_message(question, n_images, order), assistant_message(answer)]


__all__ = [
    "LETTERS",
    "OPTION_LETTER",
    "REGION",
    "SHORT_ANSWER",
    "YES_NO",
    "assistant_message",
    "llava_short_answer_prompt",
    "options_prompt",
    "qa_messages",
    "short_answer_prompt",
    "user_message",
    "yes_no_prompt",
]
