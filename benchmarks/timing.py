"""Side-by-side timing shared by the benchmark scripts: interleaved repetitions, medians.

Interleaving (variant A, B, C, then A, B, C again, ...) spreads the machine's background noise
evenly over the variants, which is what makes ratios from one run on a shared machine meaningful.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch


def device_sync(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    return torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)


def median_times(variants: dict[str, Callable[[], object]], repeats: int, *,
                 sync: Callable[[], None] = lambda: None,
                 before_each: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Seconds per call of each variant: one warm-up call each, then ``repeats`` interleaved rounds;
    ``before_each`` runs untimed before every timed call (e.g. zeroing gradients)."""
    for fn in variants.values():
        fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            before_each()
            gc.collect()
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
