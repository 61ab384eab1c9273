"""What a benchmark row becomes once read, and the error a bad row raises.

Every reader turns its published layout into plain ``dict`` rows with the same field names
(VLMEvalKit's, the superset most benchmarks already use), so prompts and scorers never care
which file a row came from:

- ``index``: the row's id in its file (kept as written; predictions are keyed by ``str(index)``);
- ``images``: the row's images as *sources* (bytes, a path, or a PIL image), decoded only when
  the model needs them, through :func:`aki.processing.load_image`;
- ``question``, ``answer`` and the benchmark's own fields (``category``, ``hint``, ``options``
  as ``{"A": text, ...}``, ``choices``, ``source``, ...);
- ``where``: ``"file:line"``, so that every message about the row can name it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class BenchmarkFileError(ValueError):
    """A benchmark file (or one of its rows) cannot be used; the message names the file and line."""


class BadRow(BenchmarkFileError):
    """One row cannot be evaluated; the run reports it and goes on with the others."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def where(path: str | Path, line: int | None) -> str:
    """``"file:line"`` (1-based line or row number), or just the file."""
    return f"{path}:{line}" if line is not None else str(path)


def is_missing(value: Any) -> bool:
    """None, NaN or an empty string: the cell holds nothing."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and not value.strip()


def row_key(row: dict) -> str:
    """The key predictions are stored under."""
    return str(row["index"])


__all__ = ["BadRow", "BenchmarkFileError", "is_missing", "row_key", "where"]
