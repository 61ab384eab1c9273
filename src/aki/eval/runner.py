"""Batched greedy evaluation on the synthetic test split of ``aki data synth``.

The split has three files with fixed names, each with its own scorer and prompt:

- ``cvbench.jsonl``: CV-Bench rows; the release's CV-Bench prompt (:func:`aki.eval.cvbench.prompt`)
  and the official exact-match score (the lenient number is under ``lenient``);
- ``pope.jsonl``: POPE rows (``text``, ``label``, ``category``); LLaVA's POPE prompt
  (:func:`aki.prompts.llava_short_answer_prompt`), the prompt the synthetic models are trained with;
- ``attributes.jsonl``: open questions (``prompt`` or ``question``); exact match.

Predictions go to ``<output_dir>/<stem>.predictions.jsonl`` and scores to
``<output_dir>/scores.json``. The paper's benchmarks run through :mod:`aki.eval.suite`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from aki.eval import cvbench, openqa, pope
from aki.eval.generation import generate_batch
from aki.processing import load_image
from aki.prompts import llava_short_answer_prompt

SYNTH_FILES = {"cvbench.jsonl": "cvbench", "pope.jsonl": "pope", "attributes.jsonl": "openqa"}
"""The synthetic split's files and their kinds, named explicitly (never guessed)."""
DEFAULT_SPLITS = tuple(SYNTH_FILES)
SCORERS = {"cvbench": cvbench.score, "pope": pope.score, "openqa": openqa.score}


def prompt_for(row: dict, kind: str) -> str:
    if kind == "cvbench":
        return cvbench.prompt(row)
    if kind == "pope":
        return llava_short_answer_prompt(row["text"])
    return row.get("prompt") or llava_short_answer_prompt(row["question"])


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: not valid JSON ({err.msg})") from err
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def _resolve_dir(benchmark_dir: Path, split_files: Sequence[str]) -> Path:
    """Accept either the dataset root (with ``test/``) or the directory holding the files."""
    if not any((benchmark_dir / n).exists() for n in split_files) and (benchmark_dir / "test").is_dir():
        return benchmark_dir / "test"
    return benchmark_dir


def evaluate(
    model,
    processor,
    benchmark_dir: str | Path,
    split_files: Sequence[str] = DEFAULT_SPLITS,
    batch_size: int = 8,
    max_new_tokens: int = 8,
    limit: int | None = None,
    output_dir: str | Path | None = None,
    progress: bool = False,
    order: str = "I&T",
) -> dict:
    """Run ``model`` on each synthetic benchmark file and score it.

    ``order``: ``"I&T"`` puts the image before the question (the paper's inference order);
    ``"T&I"`` after it. ``benchmark_dir`` is a dataset root with ``test/`` or the directory of the
    files; image paths are relative to the file's directory. Files that do not exist are skipped
    (listed under ``"skipped"``). Returns ``{file stem: scores, ..., "skipped": [...], "seconds"}``.
    """
    unknown = [n for n in split_files if n not in SYNTH_FILES]
    if unknown:
        raise ValueError(f"unknown synthetic split file(s) {unknown}; the split's files are {list(SYNTH_FILES)}")
    root = _resolve_dir(Path(benchmark_dir), split_files)
    out_dir = Path(output_dir) if output_dir is not None else root / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    results: dict = {"skipped": []}
    t0 = time.perf_counter()
    for name in split_files:
        path = root / name
        if not path.exists():
            results["skipped"].append(name)
            continue
        kind = SYNTH_FILES[name]
        rows = read_jsonl(path, limit)
        preds: list[str] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            images = [load_image(path.parent / r["image"]) if r.get("image") else None for r in chunk]
            prompts = [prompt_for(r, kind) for r in chunk]
            preds.extend(generate_batch(model, processor, prompts, images, max_new_tokens, order))
            if progress:
                print(f"{name}: {min(start + batch_size, len(rows))}/{len(rows)}", flush=True)
        scored = [dict(r, prediction=p) for r, p in zip(rows, preds, strict=True)]
        stem = Path(name).name.removesuffix(".jsonl")
        with open(out_dir / f"{stem}.predictions.jsonl", "w", encoding="utf-8") as f:
            for i, r in enumerate(scored):
                f.write(json.dumps({"index": r.get("idx", r.get("question_id", i)), **r}, ensure_ascii=False) + "\n")
        results[stem] = SCORERS[kind](scored)
    results["seconds"] = time.perf_counter() - t0
    (out_dir / "scores.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if was_training and hasattr(model, "train"):
        model.train()
    return results


__all__ = ["DEFAULT_SPLITS", "SCORERS", "SYNTH_FILES", "evaluate", "prompt_for", "read_jsonl"]
