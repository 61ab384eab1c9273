"""Each benchmark's published layouts mapped to the common row of :mod:`aki.eval.items`.

Two families of files are read:

- VLMEvalKit's TSVs (``MME.tsv``, ``MMBench_DEV_EN.tsv``, ...): one row per question, images as
  base64 text; a short cell (64 characters or fewer) names the ``index`` of another row whose
  image it shares; a cell holding ``['...', '...']`` is a list of images. Option columns are the
  capital letters ``A``, ``B``, ...
- the benchmarks' own / Hugging Face files (parquet or JSON lines), with image bytes in the row
  (``{"bytes", "path"}``) or a file name resolved under ``--image-root`` or the file's folder.

The mapping is chosen by the benchmark the user named and the file's type, never by the file's
name. A row that lacks a column its layout needs is a :class:`~aki.eval.items.BadRow`.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aki.eval.items import BadRow, is_missing
from aki.eval.readers.images import Base64Image, image_from_cell, resolve_path
from aki.eval.readers.tables import RawRow

LETTERS = string.ascii_uppercase
SEED_QUESTION_TYPES = {
    1: "Scene Understanding", 2: "Instance Identity", 3: "Instance Location",
    4: "Instance Attributes", 5: "Instances Counting", 6: "Spatial Relation",
    7: "Instance Interaction", 8: "Visual Reasoning", 9: "Text Understanding",
}  # fmt: skip
"""SEED-Bench's ``question_type_id`` (image dimensions 1-9)."""


def _need(raw: RawRow, layout: str, *columns: str) -> None:
    missing = [c for c in columns if c not in raw.data]
    if missing:
        raise BadRow(
            raw.where,
            f"missing column(s) {missing} of the {layout} layout (columns present: "
            f"{sorted(raw.data)[:12]}); check that --bench names the benchmark this file holds",
        )


def _as_list(value: Any) -> list:
    """A list cell that may arrive as a Python/JSON literal string (as HF and TSV files store it)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist"):
        return list(value.tolist())
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return [value]
        return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
    return [value]


def _options_from_columns(data: dict) -> dict[str, str]:
    return {k: str(data[k]) for k in LETTERS if k in data and not is_missing(data[k])}


# ----------------------------------------------------------------------------- VLMEvalKit TSV


def _tsv_images(raw: RawRow, cells: dict[str, Any], folders: list[Path]) -> list:
    cell = raw.data.get("image")
    if is_missing(cell):
        paths = _as_list(raw.data.get("image_path"))
        if paths and folders:  # a "meta only" TSV: images are files under the image root
            return [resolve_path(str(p), where=raw.where, folders=folders) for p in paths]
        raise BadRow(raw.where, "the row has no image (empty `image` cell); every row needs one")
    text = str(cell)
    if len(text) <= 64:  # VLMEvalKit: a short cell is the index of the row holding the image
        target = cells.get(text.strip())
        if is_missing(target) or len(str(target)) <= 64:
            raise BadRow(raw.where, f"image cell refers to row index {text!r}, which holds no image")
        raw.data.setdefault("image_ref", text.strip())
        text = str(target)
    texts = _as_list(text) if text.lstrip().startswith("[") else [text]
    return [Base64Image(str(t), raw.where) for t in texts]


def vlmevalkit_rows(raws: list[RawRow], folders: list[Path], bad: list[BadRow]) -> list[dict]:
    """VLMEvalKit TSV rows to common rows (all columns kept; letters gathered in ``options``)."""
    cells = {str(r.data.get("index")).strip(): r.data.get("image") for r in raws}
    rows = []
    for raw in raws:
        try:
            _need(raw, "VLMEvalKit TSV", "index", "question")
            images = _tsv_images(raw, cells, folders)
        except BadRow as err:
            bad.append(err)
            continue
        row = {k: v for k, v in raw.data.items() if k not in LETTERS and k != "image"}
        row["index"] = str(raw.data["index"]).strip()
        row.setdefault("image_ref", row["index"])
        row["options"] = _options_from_columns(raw.data)
        row["images"] = images
        row["where"] = raw.where
        rows.append(row)
    return rows


# ------------------------------------------------------------- the benchmarks' own layouts


def _images(raw: RawRow, folders: list[Path], *columns: str) -> list:
    for col in columns:
        value = raw.data.get(col)
        if isinstance(value, (list, tuple)) and value:
            return [image_from_cell(v, where=raw.where, folders=folders) for v in value]
        if not is_missing(value) and not isinstance(value, (list, tuple)):
            return [image_from_cell(value, where=raw.where, folders=folders)]
    raise BadRow(raw.where, f"the row has no image (none of the columns {list(columns)}); every row needs one")


def _base(raw: RawRow, index: Any, images: list, question: str, answer: Any) -> dict:
    return {"index": str(index), "images": images, "question": str(question), "answer": answer,
            "options": {}, "where": raw.where}


def mme_row(raw: RawRow, folders: list[Path]) -> dict:
    """lmms-lab/MME parquet: ``question_id`` (the image's path: the pair key), ``question``,
    ``answer`` (Yes/No), ``category``, ``image``."""
    _need(raw, "MME (Hugging Face)", "question_id", "question", "answer", "category")
    row = _base(raw, f"{raw.path.name}:{raw.line}", _images(raw, folders, "image"), raw.data["question"],
                raw.data["answer"])
    row.update(category=raw.data["category"], image_path=raw.data["question_id"])
    return row


def mmbench_row(raw: RawRow, folders: list[Path]) -> dict:
    """lmms-lab/MMBench (``en`` dev) parquet: the TSV's columns with image bytes."""
    _need(raw, "MMBench (Hugging Face)", "index", "question", "answer", "A", "B")
    row = _base(raw, raw.data["index"], _images(raw, folders, "image"), raw.data["question"], raw.data["answer"])
    row["options"] = _options_from_columns(raw.data)
    for key in ("hint", "category", "l2-category", "L2-category", "split", "source"):
        if key in raw.data:
            row[key.lower()] = raw.data[key]
    return row


def seed_row(raw: RawRow, folders: list[Path]) -> dict | None:
    """lmms-lab/SEED-Bench parquet: ``choice_a``..``choice_d``, ``data_type`` (image rows only:
    SEED-I), ``question_type_id``."""
    _need(raw, "SEED-Bench (Hugging Face)", "question_id", "question", "answer", "choice_a", "data_type")
    if str(raw.data["data_type"]).lower() != "image":
        return None  # SEED-I is the image part; video rows belong to SEED-V
    row = _base(raw, raw.data["question_id"], _images(raw, folders, "image"), raw.data["question"],
                raw.data["answer"])
    row["options"] = {L: str(raw.data[f"choice_{L.lower()}"]) for L in "ABCD"
                      if not is_missing(raw.data.get(f"choice_{L.lower()}"))}
    qtype = raw.data.get("question_type_id")
    row["category"] = SEED_QUESTION_TYPES.get(int(qtype), str(qtype)) if qtype is not None else None
    return row


def llavabench_row(raw: RawRow, folders: list[Path]) -> dict:
    """lmms-lab/llava-bench-in-the-wild parquet: ``question``, ``caption``, ``gpt_answer`` (the
    reference answer), ``category`` (conv / detail / complex)."""
    _need(raw, "LLaVA-Bench (Hugging Face)", "question_id", "question", "gpt_answer", "category")
    row = _base(raw, raw.data["question_id"], _images(raw, folders, "image"), raw.data["question"], None)
    caption = raw.data.get("caption")
    row.update(gpt4_ans=raw.data["gpt_answer"], category=raw.data["category"],
               caption="\n".join(map(str, caption)) if isinstance(caption, (list, tuple)) else caption)
    return row


def mmmu_row(raw: RawRow, folders: list[Path]) -> dict:
    """MMMU/MMMU parquet: ``id`` (``validation_Art_1``), ``options`` (a list literal),
    ``question_type``, ``answer``, ``image_1`` .. ``image_7``."""
    _need(raw, "MMMU (Hugging Face)", "id", "question", "options", "answer", "question_type")
    images = [image_from_cell(raw.data[f"image_{k}"], where=raw.where, folders=folders)
              for k in range(1, 8) if not is_missing(raw.data.get(f"image_{k}"))]
    if not images:
        raise BadRow(raw.where, "the row has no image (image_1 .. image_7 are empty)")
    row = _base(raw, raw.data["id"], images, raw.data["question"], raw.data["answer"])
    opts = _as_list(raw.data["options"])
    row["options"] = {LETTERS[k]: str(o) for k, o in enumerate(opts)}
    row["question_type"] = raw.data["question_type"]
    parts = str(raw.data["id"]).split("_")
    row["split"] = parts[0]
    row["category"] = "_".join(parts[1:-1]) or None
    return row


def mathvista_row(raw: RawRow, folders: list[Path]) -> dict:
    """AI4Math/MathVista parquet: ``query`` (the full prompt with hint and choices),
    ``decoded_image``, ``choices``, ``question_type``, ``answer_type``, ``precision``, ``metadata``."""
    _need(raw, "MathVista (Hugging Face)", "pid", "query", "answer", "question_type", "answer_type")
    row = _base(raw, raw.data["pid"], _images(raw, folders, "decoded_image", "image"), raw.data["query"],
                raw.data["answer"])
    choices = [str(c) for c in _as_list(raw.data.get("choices"))]
    meta = raw.data.get("metadata") or {}
    row.update(choices=choices, question_type=raw.data["question_type"], answer_type=raw.data["answer_type"],
               precision=raw.data.get("precision"), task=meta.get("task"), skills=meta.get("skills"))
    return row


_POPE_SPLIT = re.compile(r"pope_(random|popular|adversarial)", re.IGNORECASE)


def pope_row(raw: RawRow, folders: list[Path]) -> dict:
    """POPE in three layouts: POPE's own / LLaVA's question files (``question_id``, ``image``
    (a COCO file name), ``text``, ``label``, ``category``), and lmms-lab/POPE parquet
    (``question``, ``answer``, ``category``, ``image`` bytes)."""
    data = raw.data
    if "text" in data:
        _need(raw, "POPE question file", "question_id", "image", "text", "label")
        question, answer = data["text"], data["label"]
    else:
        _need(raw, "POPE (Hugging Face)", "question_id", "question", "answer", "image")
        question, answer = data["question"], data["answer"]
    category = data.get("category")
    if is_missing(category):
        # POPE's own files are split per category and named coco_pope_<category>.json
        m = _POPE_SPLIT.search(raw.path.name)
        category = m.group(1).lower() if m else "all"
    row = _base(raw, f"{category}-{data['question_id']}", _images(raw, folders, "image"), question, answer)
    row["category"] = category
    return row


def mmvet_row(raw: RawRow, folders: list[Path]) -> dict:
    """lmms-lab/MMVet parquet: ``question``, ``answer`` (with ``<AND>`` / ``<OR>``),
    ``capability`` (list)."""
    _need(raw, "MM-Vet (Hugging Face)", "question_id", "question", "answer")
    row = _base(raw, raw.data["question_id"], _images(raw, folders, "image"), raw.data["question"],
                raw.data["answer"])
    caps = _as_list(raw.data.get("capability") or raw.data.get("category"))
    row["category"] = ",".join(map(str, caps))
    return row


def realworldqa_row(raw: RawRow, folders: list[Path]) -> dict:
    """xai-org/RealWorldQA (and lmms-lab's copy): ``image``, ``question`` (with its own
    instruction and choices), ``answer``."""
    _need(raw, "RealWorldQA (Hugging Face)", "question", "answer", "image")
    index = raw.data.get("index", raw.data.get("question_id", f"{raw.path.name}:{raw.line}"))
    return _base(raw, index, _images(raw, folders, "image"), raw.data["question"], raw.data["answer"])


def cvbench_row(raw: RawRow, folders: list[Path]) -> dict:
    """CV-Bench's own files (``test_2d.jsonl`` / ``test_3d.jsonl`` / parquet, nyu-visionx/CV-Bench):
    ``idx``, ``type``, ``task``, ``question``, ``choices``, ``answer`` ("(A)"), ``source``, and the
    image as bytes (``image``) or a path relative to the dataset folder (``filename``)."""
    _need(raw, "CV-Bench", "idx", "question", "choices", "answer", "source")
    row = _base(raw, raw.data["idx"], _images(raw, folders, "image", "filename"), raw.data["question"],
                raw.data["answer"])
    row.update(choices=[str(c) for c in _as_list(raw.data["choices"])], source=raw.data["source"],
               task=raw.data.get("task"), type=raw.data.get("type"))
    return row


PUBLISHED_LAYOUTS: dict[str, Callable[[RawRow, list[Path]], dict | None]] = {
    "mme": mme_row,
    "mmbench": mmbench_row,
    "seed": seed_row,
    "llava-w": llavabench_row,
    "mmmu": mmmu_row,
    "mathvista": mathvista_row,
    "pope": pope_row,
    "mmvet": mmvet_row,
    "realworldqa": realworldqa_row,
    "cvbench": cvbench_row,
}


def published_rows(bench: str, raws: list[RawRow], folders: list[Path], bad: list[BadRow]) -> list[dict]:
    """Rows of a benchmark's own (non-TSV) file; bad rows go to ``bad``."""
    mapper = PUBLISHED_LAYOUTS[bench]
    rows = []
    for raw in raws:
        try:
            row = mapper(raw, folders)
        except BadRow as err:
            bad.append(err)
            continue
        if row is not None:
            rows.append(row)
    return rows


__all__ = ["LETTERS", "PUBLISHED_LAYOUTS", "SEED_QUESTION_TYPES", "published_rows", "vlmevalkit_rows"]
