"""MME: yes/no questions in pairs (two per image), 14 subtasks.

Per subtask: ``acc`` = right answers / questions x 100, ``acc_plus`` = images with both answers
right / images x 100, subtask score = acc + acc_plus (at most 200). ``perception`` = sum over the
10 perception subtasks (at most 2000), ``cognition`` = sum over the 4 cognition subtasks (at most
800). An answer the rule cannot read is wrong.

The headline numbers use VLMEvalKit's yes/no rule (the paper's Table 1 was computed with
VLMEvalKit); ``mme_tool`` repeats the scores under the MME evaluation tool's rule (the one
lmms-eval uses), both from :mod:`aki.eval.yesno`.
"""

from __future__ import annotations

from collections import defaultdict

from aki.eval.items import BadRow, is_missing
from aki.eval.yesno import mme_tool_yes_no, vlmevalkit_yes_no

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
              "artwork", "OCR")  # fmt: skip
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MAX_NEW_TOKENS = 16


def prepare(row: dict) -> dict:
    """Check the answer and category; the pair key is the image's path (or the shared image row)."""
    answer = str(row.get("answer") or "").strip().lower()
    if answer not in ("yes", "no"):
        raise BadRow(row["where"], f"MME answer must be Yes or No, found {row.get('answer')!r}")
    if is_missing(row.get("category")):
        raise BadRow(row["where"], "MME row without a category (subtask)")
    row["answer"] = answer
    key = row.get("image_path")
    row["pair"] = str(key if not is_missing(key) else row.get("image_ref", row["index"]))
    return row


def prompt(row: dict) -> str:
    """The question as written (it ends with "Please answer yes or no.")."""
    return row["question"]


def _subtask_scores(rows: list[dict], hits: list[bool]) -> dict:
    by_cat: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row, hit in zip(rows, hits, strict=True):
        by_cat[row["category"]][row["pair"]].append(hit)
    out = {}
    for cat, pairs in sorted(by_cat.items()):
        flat = [h for v in pairs.values() for h in v]
        acc = 100.0 * sum(flat) / len(flat)
        acc_plus = 100.0 * sum(all(v) for v in pairs.values()) / len(pairs)
        out[cat] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "n": len(flat),
                    "images": len(pairs)}
    return out


def _sums(per: dict) -> dict:
    return {
        "perception": sum(per[c]["score"] for c in PERCEPTION if c in per),
        "cognition": sum(per[c]["score"] for c in COGNITION if c in per),
    }


def score(rows: list[dict]) -> dict:
    """Rows carry ``answer`` (yes/no), ``category``, ``pair`` and ``prediction``."""
    vlm = [vlmevalkit_yes_no(r.get("prediction")) for r in rows]
    tool = [mme_tool_yes_no(r.get("prediction")) for r in rows]
    per = _subtask_scores(rows, [p.lower() == r["answer"] for p, r in zip(vlm, rows, strict=True)])
    per_tool = _subtask_scores(rows, [p == r["answer"] for p, r in zip(tool, rows, strict=True)])
    notes = []
    unknown = sorted({r["category"] for r in rows} - set(PERCEPTION) - set(COGNITION))
    if unknown:
        notes.append(f"subtasks outside MME's 14 (reported, not summed): {unknown}")
    odd = sum(v["images"] * 2 != v["n"] for v in per.values())
    if odd:
        notes.append(f"{odd} subtask(s) have images without exactly two questions (e.g. --limit "
                     "cut a pair); acc+ counts an image right when all its questions are")
    missing = [c for c in (*PERCEPTION, *COGNITION) if c not in per]
    if missing and rows:
        notes.append(f"subtasks with no rows (their score counts as 0 in the sums): {missing}")
    return {
        **_sums(per),
        "per_subtask": per,
        "rule": "VLMEvalKit yes/no extraction",
        "mme_tool": {**_sums(per_tool), "per_subtask": per_tool,
                     "rule": "MME evaluation tool (lmms-eval's normalisation)"},
        "n": len(rows),
        "unparsed": sum(p == "Unknown" for p in vlm),
        "notes": notes,
    }


def headline(scores: dict) -> dict[str, float | None]:
    return {"MME-P": scores.get("perception"), "MME-C": scores.get("cognition")}


__all__ = ["COGNITION", "PERCEPTION", "headline", "prepare", "prompt", "score"]
