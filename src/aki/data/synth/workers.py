"""Scene rendering in worker processes: many thousands of scenes in seconds on a few cores."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from typing import Any


def default_workers() -> int:
    """Worker processes for rendering: the CPUs this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def parallel_map(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int | None = None) -> list:
    """``[fn(j) for j in jobs]``, in ``workers`` forked processes when that pays off.

    Every scene is a pure function of its job, so the result (and every byte written from it) is
    the same for any number of workers. Fork, not spawn: the workers need no imports of their
    own, and they use only numpy and PIL, never torch, so a parent that has loaded torch is safe.
    """
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(jobs) < 16 * workers or "fork" not in mp.get_all_start_methods():
        return [fn(j) for j in jobs]
    with mp.get_context("fork").Pool(workers) as pool:
        return pool.map(fn, jobs, chunksize=max(16, len(jobs) // (8 * workers)))
