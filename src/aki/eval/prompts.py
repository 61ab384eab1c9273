"""Benchmark prompts built the way VLMEvalKit builds them, so that scores compare with published ones.

These are evaluation-protocol prompts (the paper scored every benchmark but CV-Bench through
VLMEvalKit); the training/task prompts live in :mod:`aki.prompts`, and CV-Bench uses the release's
own prompt from there (:func:`aki.prompts.options_prompt`). The image always comes before the text
(I&T): VLMEvalKit puts the image message first for every benchmark used here.
"""

from __future__ import annotations

import re

MCQ_INSTRUCTION = "Please select the correct answer from the options above. \n"
"""VLMEvalKit's closing line of a multiple-choice prompt (trailing space and newline included)."""
_IMAGE_TAG = re.compile(r"<image \d+>")


def mcq_prompt(question: str, options: dict[str, str], hint: str | None = None) -> str:
    """VLMEvalKit's multiple-choice prompt (MMBench, SEED-Bench, MMMU, RealWorldQA)::

        Hint: {hint}
        Question: {question}
        Options:
        A. ...
        Please select the correct answer from the options above. \\n

    (no ``Hint`` line without a hint; no options block for an open question).
    """
    text = f"Hint: {hint}\n" if hint else ""
    text += f"Question: {question}\n"
    if options:
        text += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items())
        text += MCQ_INSTRUCTION
    return text


def strip_image_tags(text: str) -> str:
    """MMMU's inline ``<image k>`` tags removed (VLMEvalKit splits the text there; aki, like the
    paper, gives the model only the first image, placed before the text)."""
    return _IMAGE_TAG.sub("", text)


def first_image_tag(text: str) -> int | None:
    """The number k of the first ``<image k>`` tag in ``text`` (1-based), or None."""
    m = _IMAGE_TAG.search(text)
    return int(m.group(0)[7:-1]) if m else None


__all__ = ["MCQ_INSTRUCTION", "first_image_tag", "mcq_prompt", "strip_image_tags"]
