"""POPE scoring with LLaVA's yes/no rule.

An answer is reduced to its first sentence (text before the first "."), commas are dropped, and it
counts as "no" when its space-separated words include "No", "not" or "no"; otherwise "yes"
(exactly LLaVA's ``eval_pope.py``). Metrics per category and overall: accuracy, precision,
recall, F1 (positive class "yes") and yes_ratio = predicted yes / N (not the ground-truth yes
share). All metrics are percentages (0-100); a metric whose denominator is zero is 0.0.
``overall`` pools every row; ``average`` is the mean of the per-category metrics.
"""

from __future__ import annotations

from collections import defaultdict

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def parse_yes_no(text: str) -> str:
    """LLaVA's rule: 'no' if the first sentence's words include No/not/no, else 'yes'."""
    text = text or ""
    if text.find(".") != -1:
        text = text.split(".")[0]
    text = text.replace(",", "")
    words = text.split(" ")
    if "No" in words or "not" in words or "no" in words:
        return "no"
    return "yes"


def _label(label) -> str:
    lab = str(label).strip().lower()
    if lab not in ("yes", "no"):
        raise ValueError(f"POPE label must be yes/no, got {label!r}")
    return lab


def metrics(preds: list[str], labels: list[str]) -> dict:
    tp = sum(p == "yes" and g == "yes" for p, g in zip(preds, labels, strict=True))
    fp = sum(p == "yes" and g == "no" for p, g in zip(preds, labels, strict=True))
    tn = sum(p == "no" and g == "no" for p, g in zip(preds, labels, strict=True))
    fn = sum(p == "no" and g == "yes" for p, g in zip(preds, labels, strict=True))
    n = len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": 100.0 * (tp + tn) / n if n else 0.0,
        "precision": 100.0 * precision,
        "recall": 100.0 * recall,
        "f1": 100.0 * f1,
        "yes_ratio": 100.0 * (tp + fp) / n if n else 0.0,
        "n": n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def score(rows: list[dict]) -> dict:
    """Rows carry ``label`` (yes/no), ``prediction`` (free text) and ``category``.

    Returns ``{category: metrics, ..., "overall": metrics, "average": {metric: mean}}``.
    """
    groups: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    allp, alll = [], []
    for r in rows:
        p, g = parse_yes_no(r.get("prediction", "")), _label(r["label"])
        cat = r.get("category", "all")
        groups[cat][0].append(p)
        groups[cat][1].append(g)
        allp.append(p)
        alll.append(g)
    out: dict = {cat: metrics(p, g) for cat, (p, g) in sorted(groups.items())}
    cats = list(out)
    out["overall"] = metrics(allp, alll)
    out["average"] = {m: sum(out[c][m] for c in cats) / len(cats) for m in METRICS} if cats else {}
    return out
