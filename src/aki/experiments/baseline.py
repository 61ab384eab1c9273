"""A reference row for the results table: a model that ignores the image.

For every task it answers the most frequent training answer of that task (a letter for CV-Bench
items, yes/no for POPE, a word for open questions), so scores at this level mean the model has
learned answer priors but not to look. Computed from the training split only, scored by the same
scorers on the same test rows as the models.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from aki.eval import cvbench, openqa, pope
from aki.eval.runner import read_jsonl


def _train_answers(data_dir: Path) -> dict[tuple[str, str], Counter]:
    """(task, format) -> counts of the training answers."""
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    with open(data_dir / "train" / "sft.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            answer = rec["conversations"][-1]["value"].strip()
            counts[(rec.get("task", ""), rec.get("format", ""))][answer] += 1
    return counts


def _most_common(counts: Counter, fallback: str) -> str:
    return counts.most_common(1)[0][0] if counts else fallback


def constant_answer_scores(data_dir: str | Path, limit: int | None = None) -> dict:
    """Scores of the image-blind constant-answer reference, in the runner's result format."""
    data_dir = Path(data_dir)
    train = _train_answers(data_dir)
    test = data_dir / "test"
    out: dict = {}
    rows = read_jsonl(test / "cvbench.jsonl", limit)
    for r in rows:
        r["prediction"] = _most_common(train.get((r["task"], "mc"), Counter()), "A")
    out["cvbench"] = cvbench.score(rows)
    existence = Counter()
    for (task, _), c in train.items():
        if task.lower().startswith("exist"):
            existence.update(c)
    rows = read_jsonl(test / "pope.jsonl", limit)
    for r in rows:
        r["prediction"] = _most_common(existence, "yes")
    out["pope"] = pope.score(rows)
    rows = read_jsonl(test / "attributes.jsonl", limit)
    by_task = {task: c for (task, fmt), c in train.items() if fmt == "short"}
    for r in rows:
        key = next((t for t in by_task if t.lower().endswith(r.get("task", "").lower())), None)
        r["prediction"] = _most_common(by_task.get(key, Counter()), "")
    out["attributes"] = openqa.score(rows)
    return out
