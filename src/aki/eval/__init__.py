"""Evaluation: scorers for CV-Bench (:mod:`aki.eval.cvbench`), POPE (:mod:`aki.eval.pope`) and
open short answers (:mod:`aki.eval.openqa`), and a batched greedy runner (:mod:`aki.eval.runner`).

All scores are percentages (0-100).
"""

from __future__ import annotations

__all__ = ["cvbench", "openqa", "pope", "runner"]
