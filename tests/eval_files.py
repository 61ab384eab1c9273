"""Small benchmark files in the published layouts, written by the eval tests (nothing downloads)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
from PIL import Image

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (120, 40, 160), (20, 20, 20)]


def png_bytes(k: int = 0, size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), COLOURS[k % len(COLOURS)]).save(buf, format="PNG")
    return buf.getvalue()


def b64(k: int = 0) -> str:
    return base64.b64encode(png_bytes(k)).decode()


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def mme_tsv(path: Path) -> Path:
    """Two images x two questions in each of two subtasks; the second question of a pair refers to
    the first row's image by index, as VLMEvalKit's MME.tsv does."""
    rows = []
    k = 0
    for cat in ("existence", "code_reasoning"):
        for img in range(2):
            first = k
            for ans in ("Yes", "No"):
                rows.append({"index": k, "image": b64(k) if k == first else str(first),
                             "question": f"Is there a thing {k}? Please answer yes or no.", "answer": ans,
                             "category": cat, "image_path": f"{cat}/{img}.png"})
                k += 1
    return write_tsv(path, rows)


def mmbench_tsv(path: Path, with_rotations: bool = False) -> Path:
    rows = []
    for q in range(3):
        rows.append({"index": q, "image": b64(q), "question": f"Which colour {q}?", "hint": "Look closely." if q == 0 else None,
                     "A": "red", "B": "green", "C": "blue", "answer": "ABC"[q], "category": "colour",
                     "l2-category": "perception"})
    if with_rotations:
        for q in range(3):
            for k in (1, 2):
                texts = ["red", "green", "blue"]
                rot = {L: texts[(i + k) % 3] for i, L in enumerate("ABC")}
                ans = "ABC"[(q - k) % 3]
                rows.append({"index": q + k * 1_000_000, "image": str(q), "question": f"Which colour {q}?",
                             "hint": None, **rot, "answer": ans, "category": "colour", "l2-category": "perception"})
    return write_tsv(path, rows)
