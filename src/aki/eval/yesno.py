"""Reading "yes" or "no" from a free-text answer: the three published rules, each named.

- :func:`vlmevalkit_yes_no`: VLMEvalKit's rule (MME and POPE in the paper's Table 1): the answer
  is lowercased, punctuation handled as in the VQA evaluation (see :func:`vqa_punctuation`), split
  into words; "Yes" if ``yes`` is a word and ``no`` is not, "No" for the reverse, else "Unknown".
- :func:`mme_tool_yes_no`: the MME evaluation tool's rule, with the normalisation lmms-eval adds
  (lowercase, trim, periods removed): exactly ``yes``/``no``; a single ``y``/``n``; else ``yes``
  or ``no`` inside the first four characters (``yes`` first); else "other".
- :func:`llava_yes_no` (POPE, in :mod:`aki.eval.pope`): LLaVA's POPE rule.

Every rule returns a label that is never "no" for an empty answer.
"""

from __future__ import annotations

import re

_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
          ",", "?", "!"]  # fmt: skip
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_LONE_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")


def vqa_punctuation(text: str) -> str:
    """The VQA evaluation's punctuation step, as VLMEvalKit applies it.

    Each mark is deleted when it touches a space (or when the text has a comma inside a number),
    else replaced by a space; then up to 32 periods not between digits are deleted (the count
    limit is VLMEvalKit's, kept so that the same answers get the same labels).
    """
    out = text
    has_number_comma = _COMMA_IN_NUMBER.search(text) is not None
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _LONE_PERIOD.sub("", out, count=32)


def vlmevalkit_yes_no(answer: str | None) -> str:
    """"Yes", "No" or "Unknown" (VLMEvalKit's rule)."""
    words = vqa_punctuation((answer or "").lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "no" in words and "yes" not in words:
        return "No"
    return "Unknown"


def mme_tool_yes_no(answer: str | None) -> str:
    """"yes", "no" or "other" (MME's evaluation tool, with lmms-eval's normalisation)."""
    text = (answer or "").lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


__all__ = ["mme_tool_yes_no", "vlmevalkit_yes_no", "vqa_punctuation"]
