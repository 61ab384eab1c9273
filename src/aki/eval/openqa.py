"""Exact match for short open answers (attribute lookup, counting).

Normalisation (both sides): lowercase, "colour"/"color" spellings unified, punctuation removed,
articles (a, an, the) dropped, number words (zero..twenty) turned into digits, whitespace
collapsed. Scores are percentages (0-100).
"""

from __future__ import annotations

import re
from collections import defaultdict

NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
]  # fmt: skip
_NUM = {w: str(i) for i, w in enumerate(NUMBER_WORDS)}
_ARTICLES = {"a", "an", "the"}


def normalize(text: str) -> str:
    text = (text or "").lower().replace("color", "colour").replace("gray", "grey")
    text = re.sub(r"[^\w\s]", " ", text)
    words = [_NUM.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def exact_match(prediction: str, answer: str) -> bool:
    return normalize(prediction) == normalize(answer)


def score(rows: list[dict]) -> dict:
    """Rows carry ``answer`` and ``prediction`` (optionally ``task``).

    Returns ``accuracy`` (exact match after normalisation), ``first_word`` (the prediction's first
    normalised word equals a one-word answer, a lenient variant), ``n`` and ``per_task``.
    """
    hits, firsts = [], []
    tasks: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        ok = exact_match(r.get("prediction", ""), r["answer"])
        p = normalize(r.get("prediction", "")).split()
        firsts.append(bool(p) and p[0] == normalize(r["answer"]))
        hits.append(ok)
        if r.get("task") is not None:
            tasks[r["task"]].append(ok)
    n = len(rows)
    out = {
        "accuracy": 100.0 * sum(hits) / n if n else 0.0,
        "first_word": 100.0 * sum(firsts) / n if n else 0.0,
        "n": n,
    }
    if tasks:
        out["per_task"] = {t: 100.0 * sum(v) / len(v) for t, v in sorted(tasks.items())}
    return out
