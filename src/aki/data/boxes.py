"""Region boxes as they appear in prompts: ``<bbox>[x1, y1][x2, y2]</bbox>``, normalised to [0, 1]
with 3 decimals (the official RefCOCO / Visual Genome prompt). Written and parsed here only."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUM = r"(\d+(?:\.\d+)?)"
BBOX_RE = re.compile(rf"<bbox>\[{_NUM}, {_NUM}\]\[{_NUM}, {_NUM}\]</bbox>")


def format_bbox(box: Sequence[float]) -> str:
    """Normalised ``(x1, y1, x2, y2)`` -> ``<bbox>[x1, y1][x2, y2]</bbox>`` (clamped to [0, 1])."""
    n = [min(max(float(v), 0.0), 1.0) for v in box]
    return f"<bbox>[{n[0]:.3f}, {n[1]:.3f}][{n[2]:.3f}, {n[3]:.3f}]</bbox>"


def find_bboxes(text: str) -> list[tuple[float, float, float, float]]:
    """Every box written in ``text``, in order."""
    return [tuple(float(v) for v in m.groups()) for m in BBOX_RE.finditer(text)]  # type: ignore[misc]


def map_bboxes(text: str, fn) -> str:
    """``text`` with each box replaced by ``format_bbox(fn(box))``."""
    return BBOX_RE.sub(lambda m: format_bbox(fn(tuple(float(v) for v in m.groups()))), text)
