"""SEED-Bench, image part (SEED-I): multiple choice among four options, scored by letter.

Accuracy (x 100) overall and per ``category`` (question dimension). Options are read from answers
by the rule in :mod:`aki.eval.choices`; unmatched answers are wrong.
"""

from __future__ import annotations

from aki.eval.choices import accuracy_by, check_options, match_option
from aki.eval.prompts import mcq_prompt

MAX_NEW_TOKENS = 16


def prepare(row: dict) -> dict:
    return check_options(row, "SEED-Bench")


def prompt(row: dict) -> str:
    return mcq_prompt(row["question"], row["options"], row.get("hint") or None)


def score(rows: list[dict]) -> dict:
    picks = [match_option(r.get("prediction"), r["options"]) for r in rows]
    hits = [p == r["answer"] for r, p in zip(rows, picks, strict=True)]
    return {
        "overall": 100.0 * sum(hits) / len(hits) if hits else None,
        "per_category": accuracy_by(rows, hits, "category"),
        "n": len(rows),
        "unparsed": sum(p is None or p == "Z" for p in picks),
        "matching": "rule-based option matching (no GPT judge); unmatched answers are wrong",
    }


def headline(scores: dict) -> dict[str, float | None]:
    return {"SEED-I": scores.get("overall")}


__all__ = ["headline", "prepare", "prompt", "score"]
