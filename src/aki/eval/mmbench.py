"""MMBench (dev, English) with circular evaluation.

Every question is asked once per rotation of its options (A,B,C,D -> B,C,D,A -> ...); the
question counts as right only if *every* rotation is answered right. VLMEvalKit's files carry the
rotations as extra rows whose ``index`` is the original's plus k x 1,000,000; for a file without
them, :func:`expand` makes them. ``overall`` is the share of questions right under all rotations
(x 100), also per ``category`` and ``l2-category``; ``vanilla`` is the plain accuracy of the
unrotated rows. Options are read from answers by the rule in :mod:`aki.eval.choices` (MMBench's
official evaluation asks a GPT judge when that rule fails; aki counts such answers as unmatched
and wrong, and says so).
"""

from __future__ import annotations

from aki.eval.choices import accuracy_by, check_options, match_option
from aki.eval.items import BadRow
from aki.eval.prompts import mcq_prompt

ROTATION = 1_000_000
MAX_NEW_TOKENS = 16


def prepare(row: dict) -> dict:
    check_options(row, "MMBench")
    try:
        row["index"] = str(int(float(row["index"])))
    except ValueError as err:
        raise BadRow(row["where"], f"MMBench index must be an integer, found {row['index']!r}") from err
    return row


def expand(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Add the rotated copies when the file has none (indices below 1,000,000 only)."""
    if any(int(r["index"]) >= ROTATION for r in rows):
        return rows, []
    out = []
    for row in rows:
        out.append(row)
        letters = list(row["options"])
        texts = [row["options"][k] for k in letters]
        n = len(letters)
        for k in range(1, n):
            rotated = dict(row)
            rotated["options"] = {letters[i]: texts[(i + k) % n] for i in range(n)}
            rotated["answer"] = letters[(letters.index(row["answer"]) - k) % n]
            rotated["index"] = str(int(row["index"]) + k * ROTATION)
            out.append(rotated)
    return out, ["the file has no circular copies; aki added the rotations of every question's options"]


def prompt(row: dict) -> str:
    return mcq_prompt(row["question"], row["options"], row.get("hint") or None)


def score(rows: list[dict]) -> dict:
    """Rows carry ``index``, ``options``, ``answer`` (a letter), ``prediction``."""
    picks = [match_option(r.get("prediction"), r["options"]) for r in rows]
    hit = {r["index"]: p == r["answer"] for r, p in zip(rows, picks, strict=True)}
    groups: dict[int, list[bool]] = {}
    main: dict[int, dict] = {}
    for r in rows:
        g = int(r["index"]) % ROTATION
        groups.setdefault(g, []).append(hit[r["index"]])
        if int(r["index"]) == g:
            main[g] = r
    notes = []
    orphan = sorted(set(groups) - set(main))
    if orphan:
        notes.append(f"{len(orphan)} rotation group(s) without their original row were left out")
    keys = sorted(main)
    mains = [main[g] for g in keys]
    circular = [all(groups[g]) for g in keys]
    out = {
        "overall": 100.0 * sum(circular) / len(circular) if circular else None,
        "vanilla": 100.0 * sum(hit[m["index"]] for m in mains) / len(mains) if mains else None,
        "per_category": accuracy_by(mains, circular, "category"),
        "per_l2_category": accuracy_by(mains, circular, "l2-category"),
        "questions": len(keys),
        "n": len(rows),
        "unparsed": sum(p is None or p == "Z" for p in picks),
        "matching": "rule-based option matching (no GPT judge); unmatched answers are wrong",
        "notes": notes,
    }
    return out


def headline(scores: dict) -> dict[str, float | None]:
    return {"MMBench": scores.get("overall")}


__all__ = ["ROTATION", "expand", "headline", "prepare", "prompt", "score"]
