"""RealWorldQA: mostly multiple choice, a few open answers (numbers, words).

With option columns (VLMEvalKit's TSV) the prompt is VLMEvalKit's multiple-choice prompt and the
option is read by the rule of :mod:`aki.eval.choices`. In the published layout the question text
already holds the choices ("A. ...") and its own instruction and is asked as written; a letter
answer is then matched against the options read from that text, and an open answer must equal
the reference after lowercasing and trimming a final period. Accuracy x 100.
"""

from __future__ import annotations

import re

from aki.eval.choices import match_option
from aki.eval.items import BadRow, is_missing
from aki.eval.prompts import mcq_prompt

MAX_NEW_TOKENS = 16
_OPTION_LINE = re.compile(r"^\s*([A-F])[\.\)]\s+(.+?)\s*$", re.MULTILINE)


def prepare(row: dict) -> dict:
    if is_missing(row.get("answer")):
        raise BadRow(row["where"], "RealWorldQA row without an answer")
    row["answer"] = str(row["answer"]).strip()
    row["asked_with_options"] = bool(row.get("options"))
    if not row["options"]:
        row["options"] = {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(row["question"])}
    return row


def prompt(row: dict) -> str:
    if row["asked_with_options"]:
        return mcq_prompt(row["question"], row["options"], row.get("hint") or None)
    return row["question"]


def _normal(text: str) -> str:
    return text.lower().strip().rstrip(".")


def score(rows: list[dict]) -> dict:
    hits, unparsed = [], 0
    for r in rows:
        pred = r.get("prediction") or ""
        if r["answer"] in r["options"]:
            pick = match_option(pred, r["options"])
            unparsed += pick is None or pick == "Z"
            hits.append(pick == r["answer"])
        else:
            unparsed += not pred.strip()
            hits.append(bool(pred.strip()) and _normal(pred) == _normal(r["answer"]))
    return {"overall": 100.0 * sum(hits) / len(hits) if hits else None, "n": len(rows), "unparsed": unparsed,
            "matching": "rule-based option matching (no GPT judge); open answers by exact match"}


def headline(scores: dict) -> dict[str, float | None]:
    return {"RealWorldQA": scores.get("overall")}


__all__ = ["headline", "prepare", "prompt", "score"]
