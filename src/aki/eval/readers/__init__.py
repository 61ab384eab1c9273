"""Readers for the benchmarks' published files, all local (nothing downloads).

:mod:`.tables` loads a file (VLMEvalKit TSV, JSON / JSON lines, parquet) into raw rows that know
their line; :mod:`.images` resolves a row's image cell (base64, another row's index, bytes, a
path under an image root); :mod:`aki.eval.layouts` maps each benchmark's published columns to
the common row of :mod:`aki.eval.items`.
"""

from aki.eval.readers.images import Base64Image, decode_base64, image_from_cell, resolve_path
from aki.eval.readers.tables import RawRow, read_table, table_files

__all__ = ["Base64Image", "RawRow", "decode_base64", "image_from_cell", "read_table", "resolve_path", "table_files"]
