"""A row's image cell to an image *source* (bytes or a file path), checked but not decoded.

Decoding happens later, batch by batch, through :func:`aki.processing.load_image` (the one
image-loading path), so reading a 5 GB TSV costs no pixel work. A cell that names a file that is
not there is a :class:`~aki.eval.items.BadRow` naming the file and the folders searched.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from aki.eval.items import BadRow, is_missing


class Base64Image:
    """A base64 image cell kept as text until the model needs it (VLMEvalKit TSVs are large)."""

    __slots__ = ("text", "where")

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where

    def to_bytes(self) -> bytes:
        return decode_base64(self.text, self.where)

    def __repr__(self) -> str:
        return f"Base64Image({len(self.text)} chars from {self.where})"


ImageSource = bytes | Path | Base64Image


def decode_base64(text: str, where: str) -> bytes:
    """VLMEvalKit's image cell (base64 text) to bytes."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRow(where, f"image cell is not valid base64 ({err})") from err


def resolve_path(name: str, *, where: str, folders: list[Path]) -> Path:
    """``name`` as given if it exists, else under the first of ``folders`` that holds it."""
    candidate = Path(name)
    if candidate.is_absolute() and candidate.is_file():
        return candidate
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    searched = ", ".join(str(f) for f in folders) or "(no folder)"
    raise BadRow(
        where,
        f"image {name!r} not found (searched {searched}); point --image-root at the folder that "
        "holds the benchmark's images",
    )


def image_from_cell(cell: Any, *, where: str, folders: list[Path]) -> ImageSource:
    """One image cell: Hugging Face ``{"bytes", "path"}``, raw bytes, or a file name."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        if cell.get("path"):
            return resolve_path(str(cell["path"]), where=where, folders=folders)
        raise BadRow(where, "image cell holds neither bytes nor a path")
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    if isinstance(cell, str) and not is_missing(cell):
        return resolve_path(cell, where=where, folders=folders)
    raise BadRow(where, "the row has no image; every row of this benchmark needs one")


__all__ = ["Base64Image", "ImageSource", "decode_base64", "image_from_cell", "resolve_path"]
