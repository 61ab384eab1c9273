"""Rule-based option matching for multiple-choice answers, as VLMEvalKit does it without a judge.

MMBench's official evaluation (VLMEvalKit / OpenCompass) first tries to read the option from the
answer by rule, and asks a GPT judge only when the rule fails. aki implements the rule (written
here from its documented behaviour) and never silently replaces the judge: an answer the rule
cannot read is counted as *unmatched*, and wrong.

The rule, for options ``{"A": text, ...}``:

1. a known refusal phrase means "Z" (no option: wrong);
2. replace each of ``.()[],:;!*#{}`` by a space and split into words; if exactly one option
   letter occurs as a word, and its first occurrence is among the last five words, that letter;
   if no letter occurs but the word ``Z`` does, "Z";
3. otherwise, if the answer is at most twice as long as all option texts together, the option
   whose text (lowercased) occurs in the lowercased answer, when exactly one does;
4. otherwise no match (``None``).
"""

from __future__ import annotations

REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SEPARATORS = ".()[],:;!*#{}"
REFUSED = "Z"


def _match_letter(answer: str, options: dict[str, str]) -> str | None:
    for phrase in REFUSALS:
        if phrase in answer:
            return REFUSED
    cleaned = answer
    for ch in _SEPARATORS:
        cleaned = cleaned.replace(ch, " ")
    words = cleaned.split()
    present = [letter for letter in options if letter in words]
    if len(present) == 1:
        letter = present[0]
        return letter if words.index(letter) > len(words) - 5 else None
    if not present and REFUSED in words:
        return REFUSED
    return None


def _match_text(answer: str, options: dict[str, str]) -> str | None:
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    hits = [letter for letter, text in options.items() if str(text).lower() in lowered]
    return hits[0] if len(hits) == 1 else None


def match_option(answer: str | None, options: dict[str, str]) -> str | None:
    """The option letter ``answer`` picks, ``"Z"`` for a refusal, or None when the rule cannot tell."""
    answer = "" if answer is None else str(answer)
    return _match_letter(answer, options) or _match_text(answer, options)





def check_options(row: dict, bench: str) -> dict:
    """A multiple-choice row must have at least two options and an answer among their letters."""
    from aki.eval.items import BadRow

    options = row.get("options") or {}
    if len(options) < 2:
        raise BadRow(row["where"], f"{bench} row with fewer than two options ({sorted(options)})")
    answer = str(row.get("answer") or "").strip()
    if answer not in options:
        raise BadRow(row["where"], f"{bench} answer {row.get('answer')!r} is not one of the options {sorted(options)}")
    row["answer"] = answer
    return row


def accuracy_by(rows: list[dict], hits: list[bool], key: str) -> dict[str, float]:
    """Accuracy (%) per value of ``row[key]`` (rows without it are left out)."""
    from collections import defaultdict

    groups: dict[str, list[bool]] = defaultdict(list)
    for row, hit in zip(rows, hits, strict=True):
        if row.get(key) is not None:
            groups[str(row[key])].append(hit)
    return {k: 100.0 * sum(v) / len(v) for k, v in sorted(groups.items())}

__all__ = ["REFUSALS", "REFUSED", "accuracy_by", "check_options", "match_option"]
