"""Load one benchmark file into raw rows, each knowing the file and line it came from.

Formats: VLMEvalKit's ``.tsv`` (one header line, one row per line), ``.jsonl`` and ``.json``
(a JSON list, or JSON lines under a ``.json`` name as POPE's own files are), and ``.parquet``
(the Hugging Face layout). A malformed JSON line is reported as a :class:`~aki.eval.items.BadRow`
and the other lines are still read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aki.eval.items import BadRow, BenchmarkFileError, where

TABLE_SUFFIXES = (".tsv", ".jsonl", ".json", ".parquet")


@dataclass
class RawRow:
    """A row as the file holds it; ``line`` is 1-based (the TSV header is line 1)."""

    data: dict[str, Any]
    path: Path
    line: int

    @property
    def where(self) -> str:
        return where(self.path, self.line)


def table_files(folder: Path) -> list[Path]:
    """The benchmark files under ``folder`` (recursively), sorted, hidden files skipped."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix in TABLE_SUFFIXES and not any(s.startswith(".") for s in p.parts)
    )


def _read_tsv(path: Path) -> list[RawRow]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=True)
    except Exception as err:  # pandas raises several types for broken files
        raise BenchmarkFileError(f"{path}: not a readable TSV file ({type(err).__name__}: {err})") from err
    frame = frame.astype(object).where(frame.notna(), None)
    return [RawRow(dict(rec), path, i + 2) for i, rec in enumerate(frame.to_dict("records"))]


def _read_json_lines(path: Path, bad: list[BadRow]) -> list[RawRow]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                bad.append(BadRow(where(path, n), f"not valid JSON ({err.msg} at column {err.colno})"))
                continue
            if not isinstance(rec, dict):
                bad.append(BadRow(where(path, n), f"expected a JSON object, found {type(rec).__name__}"))
                continue
            rows.append(RawRow(rec, path, n))
    return rows


def _read_json(path: Path, bad: list[BadRow]) -> list[RawRow]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _read_json_lines(path, bad)  # POPE's own ".json" files are JSON lines
    if isinstance(data, dict):
        return [RawRow(data, path, 1)]
    if not isinstance(data, list):
        raise BenchmarkFileError(f"{path}: expected a JSON list of rows, found {type(data).__name__}")
    rows = []
    for k, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            bad.append(BadRow(where(path, k), f"expected a JSON object, found {type(rec).__name__}"))
            continue
        rows.append(RawRow(rec, path, k))
    return rows


def _read_parquet(path: Path) -> list[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:
        raise BenchmarkFileError(f"{path}: not a readable parquet file ({type(err).__name__}: {err})") from err
    return [RawRow(rec, path, i + 1) for i, rec in enumerate(table.to_pylist())]


def read_table(path: Path, bad: list[BadRow]) -> list[RawRow]:
    """All rows of ``path``; malformed rows are appended to ``bad`` (the others are kept)."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFileError(f"{path} does not exist")
    if path.suffix == ".tsv":
        return _read_tsv(path)
    if path.suffix == ".jsonl":
        return _read_json_lines(path, bad)
    if path.suffix == ".json":
        return _read_json(path, bad)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    raise BenchmarkFileError(
        f"{path}: unknown file type {path.suffix!r}; benchmark files are {', '.join(TABLE_SUFFIXES)}"
    )


__all__ = ["TABLE_SUFFIXES", "RawRow", "read_table", "table_files"]
