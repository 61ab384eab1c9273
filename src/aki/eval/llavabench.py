"""LLaVA-Bench (in-the-wild), scored by a GPT judge as in LLaVA's protocol.

For each question the judge reads the image's caption, the question, the reference answer (the
GPT-4 answer shipped with the benchmark, "Assistant 1") and the model's answer ("Assistant 2"),
and writes two scores from 1 to 10 on its first line. The relative score is
mean(model scores) / mean(reference scores) x 100, overall and per category (conv, detail,
complex). A judge reply whose first line is not two numbers is counted (``judge_unparsed``) and
the row is left out of both means (LLaVA's script would average a -1 in); an empty model answer
is still judged (and scored low), never skipped.
"""

from __future__ import annotations

from collections import defaultdict

from aki.eval.items import BadRow, is_missing
from aki.eval.judge import Judge

MAX_NEW_TOKENS = 512
SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
ROLE = "Assistant"
RULE = (
    "We would like to request your feedback on the performance of two AI assistants in response to "
    "the user question displayed above. The user asks the question on observing an image. For your "
    "reference, the visual content in the image is represented with a few sentences describing the "
    "image. \nPlease rate the helpfulness, relevance, accuracy, level of details of their responses. "
    "Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates "
    "better overall performance.\nPlease first output a single line containing only two values "
    "indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a "
    "space.\nIn the subsequent line, please provide a comprehensive explanation of your evaluation, "
    "avoiding any potential bias and ensuring that the order in which the responses were presented "
    "does not affect your judgment."
)
"""LLaVA's review instruction (the same for the three categories): protocol text, kept verbatim."""


def prepare(row: dict) -> dict:
    for col in ("gpt4_ans", "category"):
        if is_missing(row.get(col)):
            raise BadRow(row["where"], f"LLaVA-Bench row without {col!r}")
    row["caption"] = "" if is_missing(row.get("caption")) else str(row["caption"])
    return row


def prompt(row: dict) -> str:
    return row["question"]


def review_prompt(row: dict) -> str:
    return (f"[Context]\n{row['caption']}\n\n[Question]\n{row['question']}\n\n"
            f"[{ROLE} 1]\n{row['gpt4_ans']}\n\n[End of {ROLE} 1]\n\n"
            f"[{ROLE} 2]\n{row.get('prediction') or ''}\n\n[End of {ROLE} 2]\n\n[System]\n{RULE}\n\n")


def parse_review(reply: str) -> tuple[float, float] | None:
    """The two scores on the reply's first line, or None."""
    first = (reply or "").split("\n")[0].replace(",", " ")
    parts = first.split()
    if len(parts) != 2:
        return None
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        return None


def score(rows: list[dict], judge: Judge) -> dict:
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    unparsed = 0
    for r in rows:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": review_prompt(r)}]
        reply = judge.ask(f"llava-w|{r['index']}|{r.get('prediction') or ''}", messages,
                          temperature=0.2, max_tokens=1024)
        got = parse_review(reply)
        if got is None:
            unparsed += 1
            continue
        pairs["overall"].append(got)
        pairs[str(r["category"])].append(got)

    def relative(v: list[tuple[float, float]]) -> float | None:
        ref = sum(a for a, _ in v)
        return 100.0 * sum(b for _, b in v) / ref if v and ref else None

    overall = pairs.get("overall", [])
    return {
        "overall": relative(overall),
        "per_category": {k: relative(v) for k, v in sorted(pairs.items()) if k != "overall"},
        "model_score": 10.0 * sum(b for _, b in overall) / len(overall) if overall else None,
        "reference_score": 10.0 * sum(a for a, _ in overall) / len(overall) if overall else None,
        "n": len(rows),
        "judged": len(overall),
        "judge_unparsed": unparsed,
        "unparsed": sum(not (r.get("prediction") or "").strip() for r in rows),
        "judge": judge.config.model,
    }


def headline(scores: dict) -> dict[str, float | None]:
    return {"LLaVA-W": scores.get("overall")}


__all__ = ["RULE", "headline", "parse_review", "prepare", "prompt", "review_prompt", "score"]
