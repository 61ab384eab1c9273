"""MM-Vet, scored by a GPT judge as in MM-Vet's protocol.

The judge gets MM-Vet's few-shot grading table and a last line ``question | ground truth |
prediction | `` and completes the correctness, a number from 0.0 to 1.0. A reply that is not such
a number is asked again with a higher temperature (0, 0.5, 1.0, ... five tries in all, as
MM-Vet's evaluator does); after five failures the row scores 0.0, as there, and is counted in
``judge_unparsed``. Score = mean correctness x 100, overall and per capability (rec, ocr, know,
gen, spat, math: a question counts for each capability it lists).
"""

from __future__ import annotations

from collections import defaultdict

from aki.eval.items import BadRow, is_missing
from aki.eval.judge import Judge

MAX_NEW_TOKENS = 512
CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")
TRIES = 5
FEW_SHOT = """
Compare the ground truth and prediction from AI models, to give a correctness score for the prediction.
<AND> in the ground truth means it is totally right
only when all elements in the ground truth are present in the prediction,
and <OR> means it is totally right when any one element in the ground truth is present in the prediction.
The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right).
Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries
Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes,
while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues
because the names of these countries do not accurately represent their landscapes. |
The meme talks about Iceland and Greenland. It's pointing out that despite their names,
Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries
Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes,
while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues
because the names of these countries do not accurately represent their landscapes. |
The meme is using humor to point out the misleading nature of Iceland's and Greenland's names.
Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow.
The text 'This is why I have trust issues' is a playful way to suggest
that these contradictions can lead to distrust or confusion.
The humor in this meme is derived from the unexpected contrast between the names of the countries
and their actual physical characteristics. | 1.0
"""
"""MM-Vet's grading prompt (protocol text, kept verbatim so that scores compare)."""


def prepare(row: dict) -> dict:
    if is_missing(row.get("answer")):
        raise BadRow(row["where"], "MM-Vet row without an answer")
    row["category"] = "" if is_missing(row.get("category")) else str(row["category"])
    return row


def prompt(row: dict) -> str:
    return row["question"]


def grading_prompt(row: dict) -> str:
    truth = str(row["answer"]).replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return FEW_SHOT + "\n" + " | ".join([row["question"], truth, str(row.get("prediction") or ""), ""])


def parse_grade(reply: str) -> float | None:
    try:
        value = float((reply or "").strip())
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def score(rows: list[dict], judge: Judge) -> dict:
    totals: dict[str, list[float]] = defaultdict(list)
    unparsed = 0
    for r in rows:
        grade = None
        for attempt in range(TRIES):
            reply = judge.ask(f"mmvet|{r['index']}|{attempt}|{r.get('prediction') or ''}",
                              [{"role": "user", "content": grading_prompt(r)}],
                              temperature=0.5 * attempt, max_tokens=3)
            grade = parse_grade(reply)
            if grade is not None:
                break
        if grade is None:
            unparsed += 1
            grade = 0.0
        totals["overall"].append(grade)
        for cap in CAPABILITIES:
            if cap in r["category"]:
                totals[cap].append(grade)
    mean = {k: 100.0 * sum(v) / len(v) for k, v in totals.items() if v}
    return {
        "overall": mean.get("overall"),
        "per_capability": {c: mean[c] for c in CAPABILITIES if c in mean},
        "n": len(rows),
        "judge_unparsed": unparsed,
        "unparsed": sum(not (r.get("prediction") or "").strip() for r in rows),
        "judge": judge.config.model,
    }


def headline(scores: dict) -> dict[str, float | None]:
    return {"MM-Vet": scores.get("overall")}


__all__ = ["CAPABILITIES", "FEW_SHOT", "grading_prompt", "headline", "parse_grade", "prepare", "prompt", "score"]
