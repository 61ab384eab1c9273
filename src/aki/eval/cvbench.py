"""CV-Bench scoring, the official way by default.

Official (the release's CV-Bench script): the prompt is
:func:`aki.prompts.options_prompt` (every option line ends with a newline), and a prediction is
right only if it *is* the answer's letter ("A"; surrounding whitespace ignored). Formula:
2D = (accuracy on source ADE20K + accuracy on source COCO) / 2, 3D = accuracy on source Omni3D,
overall = (2D + 3D) / 2. Percentages.

``lenient`` repeats the scores with :func:`extract_letter`, which also reads "(A)", "A.", "The
answer is A" and an option's text: a second, clearly labelled number, never the official one.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict

from aki.eval.items import BadRow, is_missing
from aki.prompts import options_prompt

SOURCES_2D = ("ADE20K", "COCO")
SOURCES_3D = ("Omni3D",)
LETTERS = string.ascii_uppercase
MAX_NEW_TOKENS = 16


def _norm(text: str) -> str:
    text = text.lower().strip()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def extract_letter(
    prediction: str, choices: list[str] | None = None, n_choices: int | None = None
) -> str | None:
    """The option letter a free-form answer picks, or None.

    Recognised: "(B)", "B", "B.", "b)", "B: text", "The answer is B", "Answer: (B)", "option B",
    and, when ``choices`` are given, the option text itself if it matches exactly one choice
    (exact match after normalisation first, then a unique whole-word occurrence).
    """
    if prediction is None:
        return None
    n = len(choices) if choices else (n_choices or 6)
    valid = LETTERS[:n]
    text = prediction.strip()
    # "(B)" anywhere (first one wins)
    m = re.search(r"\(([A-Za-z])\)", text)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    # the whole answer is a letter, optionally with punctuation: "B", "B.", "b)", "B:"
    m = re.fullmatch(r"\(?([A-Za-z])[\.\):]?", text)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    # leading letter followed by punctuation and text: "B. right", "b) right", "B: right"
    m = re.match(r"([A-Za-z])[\.\):]\s", text)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    # leading capital letter as a word followed by text: "B right" (not "A red circle")
    m = re.match(r"([A-Z])\s", text)
    if m and m.group(1) in valid and m.group(1) != "A" and m.group(1) != "I":
        return m.group(1)
    # "the answer is B", "answer: B", "option B", "choice (B)"
    m = re.search(r"(?i:answer|option|choice)\s*(?i:is|:)?\s*\(?([A-Z])\b", text)
    if m and m.group(1) in valid:
        return m.group(1)
    if choices:
        p = _norm(text)
        normed = [_norm(str(c)) for c in choices]
        exact = [i for i, c in enumerate(normed) if c and c == p]
        if len(exact) == 1:
            return LETTERS[exact[0]]
        contained = [i for i, c in enumerate(normed) if c and re.search(rf"\b{re.escape(c)}\b", p)]
        if len(contained) == 1:
            return LETTERS[contained[0]]
    return None


def answer_letter(answer: str) -> str:
    """'(A)' / 'A' -> 'A'."""
    m = re.search(r"[A-Za-z]", answer or "")
    if not m:
        raise ValueError(f"answer without a letter: {answer!r}")
    return m.group(0).upper()


def official_letter(prediction: str | None, n_choices: int | None = None) -> str | None:
    """The letter a prediction *is* (official exact match), or None."""
    text = (prediction or "").strip()
    valid = LETTERS[: n_choices or 26]
    return text if len(text) == 1 and text in valid else None


def prepare(row: dict) -> dict:
    if is_missing(row.get("answer")) or not row.get("choices"):
        raise BadRow(row["where"], "CV-Bench row without answer or choices")
    try:
        answer_letter(row["answer"])
    except ValueError as err:
        raise BadRow(row["where"], str(err)) from err
    if is_missing(row.get("source")):
        raise BadRow(row["where"], "CV-Bench row without a source (ADE20K, COCO or Omni3D)")
    return row


def prompt(row: dict) -> str:
    """The release's CV-Bench prompt (not the file's own ``prompt`` field)."""
    return options_prompt(row["question"], row["choices"])


def is_correct(row: dict) -> bool:
    """Official exact match."""
    letter = official_letter(row.get("prediction"), len(row.get("choices") or []) or None)
    return letter is not None and letter == answer_letter(row["answer"])


def _pct(hits: list[bool]) -> float:
    return 100.0 * sum(hits) / len(hits)


def _formula(rows: list[dict], letters: list[str | None]) -> dict:
    by_source: dict[str, list[bool]] = defaultdict(list)
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r, letter in zip(rows, letters, strict=True):
        ok = letter is not None and letter == answer_letter(r["answer"])
        by_source[r["source"]].append(ok)
        if r.get("task") is not None:
            by_task[r["task"]].append(ok)
    notes = []
    per_source = {s: _pct(v) for s, v in sorted(by_source.items())}
    extra = sorted(set(per_source) - set(SOURCES_2D) - set(SOURCES_3D))
    if extra:
        notes.append(f"sources outside the official formula (reported, not scored): {extra}")

    def group(sources: tuple[str, ...], name: str) -> float | None:
        have = [per_source[s] for s in sources if s in per_source]
        missing = [s for s in sources if s not in per_source]
        if missing and have:
            notes.append(f"{name}: no rows for {missing}; {name} is the mean over "
                         f"{[s for s in sources if s in per_source]}")
        if not have:
            notes.append(f"{name}: no rows for {list(sources)}; {name} is None")
            return None
        return sum(have) / len(have)

    two = group(SOURCES_2D, "2D")
    three = group(SOURCES_3D, "3D")
    present = [v for v in (two, three) if v is not None]
    if len(present) == 1:
        notes.append("overall is the only group present, not the mean of 2D and 3D")
    out = {
        "2D": two,
        "3D": three,
        "overall": sum(present) / len(present) if present else None,
        "per_source": per_source,
        "n": len(rows),
        "n_per_source": {s: len(v) for s, v in sorted(by_source.items())},
        "unparsed": sum(letter is None for letter in letters),
        "notes": notes,
    }
    if by_task:
        out["per_task"] = {t: _pct(v) for t, v in sorted(by_task.items())}
    return out


def score(rows: list[dict]) -> dict:
    """Score CV-Bench predictions.

    Rows carry ``source``, ``answer`` ("(A)"), ``prediction`` and optionally ``choices`` and
    ``task``. Returns the official numbers (``2D``, ``3D``, ``overall``, ``per_source``,
    ``per_task``, ``n``, ``n_per_source``, ``unparsed`` = predictions that are not exactly one
    option letter, ``notes``) and ``lenient``: the same with :func:`extract_letter`. When a source
    group is missing the score is computed from what exists and ``notes`` says so; a group with no
    rows at all is None.
    """
    official = [official_letter(r.get("prediction"), len(r.get("choices") or []) or None) for r in rows]
    lenient = [extract_letter(r.get("prediction", ""), r.get("choices")) for r in rows]
    out = _formula(rows, official)
    out["scoring"] = "official exact letter match"
    out["lenient"] = {**_formula(rows, lenient), "scoring": "lenient letter extraction (not official)"}
    return out


def headline(scores: dict) -> dict[str, float | None]:
    return {"CV-Bench2D": scores.get("2D"), "CV-Bench3D": scores.get("3D")}
