"""MathVista (testmini) with MathVista's rule-based extraction and normalisation.

MathVista's official pipeline extracts the answer from a free-form response with a GPT model
after a few rules; aki runs the rules only, and labels the result so (``extraction``). The rules
(:func:`extract`): an empty response is unparsed; a multiple-choice response that equals an option
text is that option; an option letter read as in MathVista's normaliser (``(B)``) or by the rule
of :mod:`aki.eval.choices` picks that option; an integer / float question takes a response that
*is* a number; "The answer is "X"." gives X. Anything else is unparsed (and wrong).
Normalisation (:func:`normalize`): an option text outside the options becomes the closest option
(edit distance); integers become ``str(int(float(x)))``; floats are rounded to the question's
``precision``; lists are compared as text. Right when the normalised text equals the answer.
"""

from __future__ import annotations

import re
from collections import defaultdict

from aki.eval.choices import match_option
from aki.eval.items import BadRow, is_missing
from aki.eval.layouts import LETTERS, _as_list

MAX_NEW_TOKENS = 256
_QUICK = re.compile(r'The answer is "(.*)"\.')


def prepare(row: dict) -> dict:
    for col in ("answer", "question_type", "answer_type"):
        if is_missing(row.get(col)):
            raise BadRow(row["where"], f"MathVista row without {col!r}")
    choices = row.get("choices")
    row["choices"] = [str(c) for c in _as_list(choices)] if not is_missing(choices) else []
    if row["question_type"] == "multi_choice" and not row["choices"]:
        raise BadRow(row["where"], "MathVista multiple-choice row without choices")
    precision = row.get("precision")
    row["precision"] = int(float(precision)) if not is_missing(precision) else None
    return row


def prompt(row: dict) -> str:
    """The question as published: VLMEvalKit's ``question`` (= MathVista's ``query``) holds the
    hint, the question and the choices."""
    return row["question"]


def extract(response: str | None, row: dict) -> str | None:
    text = (response or "").strip()
    if not text:
        return None
    choices = row["choices"]
    if row["question_type"] == "multi_choice":
        if text in choices:
            return text
        letter = re.findall(r"\(([a-zA-Z])\)", text)
        options = {LETTERS[i]: c for i, c in enumerate(choices)}
        pick = letter[0].upper() if letter and letter[0].upper() in options else match_option(text, options)
        if pick in options:
            return options[pick]
    if row["answer_type"] == "integer":
        try:
            return str(int(text))
        except ValueError:
            pass
    if row["answer_type"] == "float":
        try:
            return str(float(text))
        except ValueError:
            pass
    m = _QUICK.search(text)
    return m.group(1) if m else None


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize(extraction: str, row: dict) -> str | None:
    if row["question_type"] == "multi_choice":
        if extraction in row["choices"]:
            return extraction
        return min(row["choices"], key=lambda c: _edit_distance(extraction, c))
    try:
        if row["answer_type"] == "integer":
            return str(int(float(extraction)))
        if row["answer_type"] == "float":
            return str(round(float(extraction), row["precision"] or 0))
    except ValueError:
        return None
    return str(extraction)


def score(rows: list[dict]) -> dict:
    hits, unparsed = [], 0
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        got = extract(r.get("prediction"), r)
        unparsed += got is None
        norm = normalize(got, r) if got is not None else None
        hit = norm is not None and norm.strip() == str(r["answer"]).strip()
        hits.append(hit)
        groups[str(r["question_type"])].append(hit)
        if r.get("task"):
            groups[f"task: {r['task']}"].append(hit)
    return {
        "overall": 100.0 * sum(hits) / len(hits) if hits else None,
        "per_group": {k: 100.0 * sum(v) / len(v) for k, v in sorted(groups.items())},
        "n": len(rows),
        "unparsed": unparsed,
        "extraction": "rule-based (MathVista's rules and normalisation; no GPT extractor)",
    }


def headline(scores: dict) -> dict[str, float | None]:
    return {"MathVista": scores.get("overall")}


__all__ = ["extract", "headline", "normalize", "prepare", "prompt", "score"]
