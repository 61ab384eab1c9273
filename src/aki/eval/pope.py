"""POPE: yes/no object-existence questions in three splits (random, popular, adversarial).

Headline (LLaVA's rule, as in the release's evaluation): an answer is cut to its first sentence
(text before the first "."), commas are dropped, and it is "no" when its space-separated words
include "No", "not" or "no", otherwise "yes". aki departs from LLaVA's script in one place: an
empty answer is *empty*, never read as "yes" (or "no"): it counts as wrong and is reported.

Metrics per category and overall: accuracy, precision, recall, F1 (positive class "yes") and
yes_ratio = predicted yes / N (not the ground-truth share, which one toolkit reports under that
name). Percentages; a metric whose denominator is zero is 0.0. ``overall`` pools every row,
``average`` is the mean over categories.

``vlmevalkit`` repeats the scores under VLMEvalKit's yes/no rule (:mod:`aki.eval.yesno`), whose
``overall_f1`` (F1 over all rows) is the POPE number of the paper's Table 1.
"""

from __future__ import annotations

from collections import defaultdict

from aki.eval.items import BadRow
from aki.eval.yesno import vlmevalkit_yes_no

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
EMPTY = "empty"
MAX_NEW_TOKENS = 16


def parse_yes_no(text: str | None) -> str:
    """LLaVA's rule ("yes"/"no"); ``"empty"`` for an answer with no text."""
    text = text or ""
    if not text.strip():
        return EMPTY
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


def prepare(row: dict) -> dict:
    try:
        row["label"] = _label(row.get("label", row.get("answer")))
    except ValueError as err:
        raise BadRow(row["where"], str(err)) from err
    return row


def prompt(row: dict) -> str:
    """The question as written in the file (VLMEvalKit asks POPE's question alone; LLaVA's question
    file already carries its short-answer instruction)."""
    return row["question"]


def metrics(preds: list[str], labels: list[str]) -> dict:
    tp = sum(p == "yes" and g == "yes" for p, g in zip(preds, labels, strict=True))
    fp = sum(p == "yes" and g == "no" for p, g in zip(preds, labels, strict=True))
    tn = sum(p == "no" and g == "no" for p, g in zip(preds, labels, strict=True))
    fn = sum(p != "yes" and g == "yes" for p, g in zip(preds, labels, strict=True))
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


def _grouped(rows: list[dict], preds: list[str]) -> dict:
    groups: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    labels = []
    for r, p in zip(rows, preds, strict=True):
        g = _label(r.get("label", r.get("answer")))
        labels.append(g)
        cat = r.get("category", "all")
        groups[cat][0].append(p)
        groups[cat][1].append(g)
    out: dict = {cat: metrics(p, g) for cat, (p, g) in sorted(groups.items())}
    cats = list(out)
    out["overall"] = metrics(preds, labels)
    out["average"] = {m: sum(out[c][m] for c in cats) / len(cats) for m in METRICS} if cats else {}
    return out


def score(rows: list[dict]) -> dict:
    """Rows carry ``label`` (or ``answer``) yes/no, ``prediction`` and ``category``.

    Returns ``{category: metrics, ..., "overall": metrics, "average": {metric: mean}, "empty": k,
    "unparsed": k, "vlmevalkit": {...}}``.
    """
    preds = [parse_yes_no(r.get("prediction")) for r in rows]
    out = _grouped(rows, preds)
    vlm = [vlmevalkit_yes_no(r.get("prediction")) for r in rows]
    vlm_labels = [{"Yes": "yes", "No": "no"}.get(v, "unknown") for v in vlm]
    block = _grouped(rows, vlm_labels)
    out["vlmevalkit"] = {
        "overall_f1": block["overall"]["f1"],
        **{k: v for k, v in block.items() if k != "average"},
        "unknown": sum(v == "Unknown" for v in vlm),
        "rule": "VLMEvalKit yes/no extraction; Table 1's POPE is overall_f1",
    }
    out["empty"] = sum(p == EMPTY for p in preds)
    out["unparsed"] = out["empty"]
    out["n"] = len(rows)
    out["rule"] = "LLaVA's POPE rule (empty answers are wrong)"
    return out


def headline(scores: dict) -> dict[str, float | None]:
    return {"POPE": scores.get("vlmevalkit", {}).get("overall_f1")}


__all__ = ["METRICS", "headline", "metrics", "parse_yes_no", "prepare", "prompt", "score"]
