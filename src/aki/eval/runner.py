"""Batched greedy evaluation of a model on benchmark files (CV-Bench, POPE, open questions).

For each row a chat prompt is built through ``processor.apply_chat_template`` (one user message
holding an image item then the text), batches go through ``processor(text=, images=,
padding_side="left")`` and ``model.generate(..., do_sample=False)``; only the new tokens are
decoded. Predictions are written to ``<output_dir>/<name>.predictions.jsonl`` and the scores to
``<output_dir>/scores.json``.

Prompt text per file kind:
- CV-Bench: the row's ``prompt`` (built from ``question``/``choices`` when absent);
- POPE: ``text`` + "\\nAnswer the question using a single word or phrase." (LLaVA's POPE prompt);
- open questions: the row's ``prompt`` (else ``question`` + the same suffix).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from aki.eval import cvbench, openqa, pope

SHORT_SUFFIX = "\nAnswer the question using a single word or phrase."
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
DEFAULT_SPLITS = ("cvbench.jsonl", "pope.jsonl", "attributes.jsonl")
GENERATE_KEYS = ("input_ids", "attention_mask", "pixel_values", "segments")


def kind_of(name: str) -> str:
    """Benchmark kind from a file name: 'cvbench', 'pope' or 'openqa'."""
    low = Path(name).name.lower()
    if "cvbench" in low or "cv-bench" in low or "cv_bench" in low:
        return "cvbench"
    if "pope" in low:
        return "pope"
    return "openqa"


def prompt_for(row: dict, kind: str) -> str:
    if kind == "cvbench":
        if row.get("prompt"):
            return row["prompt"]
        opts = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(row["choices"]))
        return f"{MC_INSTRUCTION} {row['question']}\nOptions:\n{opts}"
    if kind == "pope":
        return row["text"] + SHORT_SUFFIX
    return row.get("prompt") or (row["question"] + SHORT_SUFFIX)


SCORERS = {"cvbench": cvbench.score, "pope": pope.score, "openqa": openqa.score}


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def _resolve_dir(benchmark_dir: Path, split_files: Iterable[str]) -> Path:
    """Accept either the dataset root (with ``test/``) or the directory holding the files."""
    names = list(split_files)
    if not any((benchmark_dir / n).exists() for n in names) and (benchmark_dir / "test").is_dir():
        return benchmark_dir / "test"
    return benchmark_dir


def _model_device_dtype(model):
    import torch

    device = getattr(model, "device", None)
    dtype = getattr(model, "dtype", None)
    if device is None or dtype is None:
        try:
            p = next(model.parameters())
            device, dtype = device or p.device, dtype or p.dtype
        except (AttributeError, StopIteration, TypeError):
            pass
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        dtype = None
    return device, dtype


def generate_batch(
    model, processor, prompts: Sequence[str], images: Sequence, max_new_tokens: int = 8,
    order: str = "I&T",
) -> list[str]:
    """Greedy answers for one batch: prompts are user texts, images one PIL image (or None) each."""
    import torch

    texts = []
    for p, img in zip(prompts, images, strict=True):
        image_item = [{"type": "image"}] if img is not None else []
        text_item = [{"type": "text", "text": p}]
        content = text_item + image_item if order == "T&I" else image_item + text_item
        messages = [{"role": "user", "content": content}]
        texts.append(
            processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )
    has_images = any(img is not None for img in images)
    batch = processor(
        text=texts,
        images=[[img] if img is not None else [] for img in images] if has_images else None,
        padding_side="left",
        return_tensors="pt",
    )
    device, dtype = _model_device_dtype(model)
    kwargs = {}
    for k in GENERATE_KEYS:
        if k in batch and batch[k] is not None:
            v = batch[k]
            if isinstance(v, torch.Tensor):
                if device is not None:
                    v = v.to(device)
                if k == "pixel_values" and dtype is not None:
                    v = v.to(dtype)
            kwargs[k] = v
    with torch.inference_mode():
        # Stop each row at the end of its assistant turn, as a chat would.
        eos = getattr(processor, "eos_token_ids", None)
        extra = {"eos_token_id": list(eos)} if eos else {}
        out = model.generate(**kwargs, max_new_tokens=max_new_tokens, do_sample=False, **extra)
    new = out[:, kwargs["input_ids"].shape[1] :]
    return [t.strip() for t in processor.batch_decode(new, skip_special_tokens=True)]


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
    """Run ``model`` on each benchmark file and score it.

    ``order``: ``"I&T"`` puts the image before the question (the default and the paper's
    inference order); ``"T&I"`` after it (for models trained only in reversed order).

    ``benchmark_dir`` is a dataset root with ``test/`` (as written by ``aki data synth``) or the
    directory of the files; image paths in rows are relative to the file's directory. Files that
    do not exist are skipped (listed under ``"skipped"``). ``limit`` keeps the first N rows of each
    file. Returns ``{file stem: scores, ..., "skipped": [...], "seconds": float}``; predictions go
    to ``output_dir`` (default ``<benchmark_dir>/predictions``).
    """
    from PIL import Image

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
        kind = kind_of(name)
        rows = read_jsonl(path, limit)
        preds: list[str] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            images = []
            for r in chunk:
                if r.get("image"):
                    with Image.open(path.parent / r["image"]) as im:
                        images.append(im.convert("RGB"))
                else:
                    images.append(None)
            prompts = [prompt_for(r, kind) for r in chunk]
            preds.extend(generate_batch(model, processor, prompts, images, max_new_tokens, order))
            if progress:
                print(f"{name}: {min(start + batch_size, len(rows))}/{len(rows)}", flush=True)
        scored = [dict(r, prediction=p) for r, p in zip(rows, preds, strict=True)]
        stem = Path(name).name.removesuffix(".jsonl")
        with open(out_dir / f"{stem}.predictions.jsonl", "w", encoding="utf-8") as f:
            for r in scored:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        results[stem] = SCORERS[kind](scored)
    results["seconds"] = time.perf_counter() - t0
    (out_dir / "scores.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if was_training and hasattr(model, "train"):
        model.train()
    return results
