"""MMMU (validation) with MMMU's own rule-based answer parsing.

Multiple choice (:func:`parse_choice`): strip ``, . ! ? ; : '`` from the ends and pad with spaces;
candidates are the letters written ``(X)``, else ``X `` (letter then space), else ``X.``; if none
and the answer has more than five words, the options whose text occurs in it. Several candidates:
the one written last. None: MMMU's script then guesses at random; aki counts the answer as
unparsed and wrong (deterministic, and never better than the model).

Open (:func:`parse_open`): key sub-answers after indicator words ("could be", "so", "is",
"thus", "therefore", "final", "answer", "result", and "=" in the last sentence), plus every number
in them; numbers are compared as floats rounded to two decimals, text by containment of the
(lowercased) reference. Accuracy x 100 on ``validation`` (``overall``), also on ``dev`` and per
subject. The paper's models read one image: only the first image of a question is given.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict

from aki.eval.items import BadRow, is_missing
from aki.eval.prompts import first_image_tag, mcq_prompt, strip_image_tags

MAX_NEW_TOKENS = 64
_ENDS = [",", ".", "!", "?", ";", ":", "'"]
_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]


def prepare(row: dict) -> dict:
    if is_missing(row.get("answer")):
        raise BadRow(row["where"], "MMMU row without an answer")
    if is_missing(row.get("question_type")):
        row["question_type"] = "multiple-choice" if row.get("options") else "open"
    if row["question_type"] == "multiple-choice" and not row.get("options"):
        raise BadRow(row["where"], "MMMU multiple-choice row without options")
    k = first_image_tag(row["question"] + "".join(row.get("options", {}).values()))
    first = (k - 1) if k is not None and k - 1 < len(row["images"]) else 0
    row["images"] = [row["images"][first]]
    return row


def prompt(row: dict) -> str:
    options = {k: strip_image_tags(v).strip() for k, v in row.get("options", {}).items()}
    return mcq_prompt(strip_image_tags(row["question"]).strip(), options, row.get("hint") or None)


def parse_choice(response: str, options: dict[str, str]) -> str | None:
    """The letter MMMU's rule reads from ``response``, or None (where MMMU guesses)."""
    for ch in _ENDS:
        response = response.strip(ch)
    response = f" {response} "
    letters = list(options)
    bracketed = [c for c in letters if f"({c})" in response]
    candidates = bracketed or [c for c in letters if f"{c} " in response]
    if not candidates:
        candidates = [c for c in letters if f"{c}." in response]
    by_text = False
    if not candidates and len(response.split()) > 5:
        candidates = [c for c, text in options.items() if str(text).lower() in response.lower()]
        by_text = True
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if by_text:
        positions = [response.lower().rfind(str(options[c]).lower()) for c in candidates]
    elif bracketed:
        positions = [response.rfind(f"({c})") for c in candidates]
    else:
        positions = [response.rfind(f" {c} ") for c in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (positions[i], -i))]


_NUMBER_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def extract_numbers(text: str) -> list[str]:
    return _NUMBER_COMMAS.findall(text) + _NUMBER_SCIENTIFIC.findall(text) + _NUMBER_SIMPLE.findall(text)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize(text: str) -> list:
    """A number becomes a float rounded to 2 decimals; text is lowercased (one letter is padded
    with a space on either side, so that it cannot match inside a word)."""
    text = str(text).strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def _key_answers(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    sentences = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for i, sentence in enumerate(sentences):
        indicators = _INDICATORS + (["="] if i == len(sentences) - 1 else [])
        tails = [sentence.split(ind)[-1].strip() for ind in indicators if ind in sentence]
        if tails:
            shortest = min(tails, key=len)
            if shortest and shortest not in (":", ",", ".", "!", "?", ";", "'"):
                keys.append(shortest)
    return keys or [response]


def parse_open(response: str) -> list:
    """MMMU's candidate answers of an open response (strings and floats)."""
    keys = _key_answers(response)
    candidates = list(keys)
    for key in keys:
        candidates.extend(extract_numbers(key))
    out = []
    for c in candidates:
        out.extend(normalize(c))
    return list(dict.fromkeys(out))


def _gold_list(answer) -> list[str]:
    text = str(answer).strip()
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
            if isinstance(parsed, (list, tuple)):
                return [str(a) for a in parsed]
        except (ValueError, SyntaxError):
            pass
    return [text]


def open_correct(answer, predictions: list) -> bool:
    golds = [g for a in _gold_list(answer) for g in normalize(a)]
    for pred in predictions:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return True
        elif pred in golds:
            return True
    return False


def score(rows: list[dict]) -> dict:
    hits, unparsed = [], 0
    for r in rows:
        pred = (r.get("prediction") or "").strip()
        if not pred:
            unparsed += 1
            hits.append(False)
        elif r["question_type"] == "multiple-choice":
            letter = parse_choice(pred, r["options"])
            unparsed += letter is None
            gold = _gold_list(r["answer"])
            hits.append(letter is not None and letter in gold)
        else:
            hits.append(open_correct(r["answer"], parse_open(pred)))
    splits: dict[str, list[bool]] = defaultdict(list)
    subjects: dict[str, list[bool]] = defaultdict(list)
    for r, h in zip(rows, hits, strict=True):
        splits[str(r.get("split") or "all")].append(h)
        if r.get("category"):
            subjects[str(r["category"])].append(h)
    per_split = {k: 100.0 * sum(v) / len(v) for k, v in sorted(splits.items())}
    main = "validation" if "validation" in per_split else None
    notes = [] if main else ["no 'validation' split in the file: overall is over every row"]
    return {
        "overall": per_split[main] if main else (100.0 * sum(hits) / len(hits) if hits else None),
        "per_split": per_split,
        "per_subject": {k: 100.0 * sum(v) / len(v) for k, v in sorted(subjects.items())},
        "n": len(rows),
        "unparsed": unparsed,
        "parsing": "MMMU's rule-based parsing; an unreadable multiple-choice answer is wrong (MMMU guesses)",
        "notes": notes,
    }


def headline(scores: dict) -> dict[str, float | None]:
    return {"MMMU": scores.get("overall")}


__all__ = ["extract_numbers", "headline", "normalize", "open_correct", "parse_choice", "parse_open",
           "prepare", "prompt", "score"]
