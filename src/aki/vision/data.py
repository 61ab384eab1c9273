"""In-memory scenes for the vision tower: pixels, per-patch targets and annotations.

The tower's scenes come from their own seed streams (``vision-train``, ``vision-probe-train``,
``vision-probe-test``), disjoint from the VLM's ``train`` and ``test`` splits, as a real tower is
pre-trained on other data than the benchmarks it is later used on. Rendering runs in worker
processes (:func:`aki.data.synth.workers.parallel_map`); the result does not depend on their
number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aki.data.synth.scenes import Scene, render, sample_scene, scene_seed
from aki.data.synth.workers import parallel_map
from aki.vision.labels import batch_targets, hard_labels, patch_targets

SPLITS = ("vision-train", "vision-probe-train", "vision-probe-test")


@dataclass
class TowerData:
    """``n`` scenes: uint8 pixels ``[n, H, W, 3]``, their stacked
    :class:`~aki.vision.labels.PatchTargets` (``counts``, ``objectness``, ``centre``) and the
    annotations."""

    pixels: np.ndarray
    counts: dict[str, np.ndarray]
    objectness: np.ndarray
    centre: np.ndarray
    scenes: list[Scene]
    patch_size: int

    def __len__(self) -> int:
        return len(self.scenes)

    def targets(self, index: np.ndarray) -> dict:
        """:func:`aki.vision.labels.batch_targets` of the scenes at ``index``."""
        return batch_targets({h: c[index] for h, c in self.counts.items()}, self.objectness[index],
                             self.centre[index], self.patch_size)

    def labels(self) -> dict[str, torch.Tensor]:
        """Hard per-patch labels of every scene (:func:`aki.vision.labels.hard_labels`)."""
        return hard_labels(self.counts, self.patch_size)


def _job(job: tuple[int, str, int, int, int]):
    seed, split, index, image_size, patch = job
    scene = sample_scene(scene_seed(seed, split, index), f"{split}_{index:06d}", image_size)
    return scene, np.asarray(render(scene), dtype=np.uint8), patch_targets(scene, patch)


def make_tower_data(
    n: int, split: str, seed: int = 0, image_size: int = 64, patch_size: int = 8,
    workers: int | None = None,
) -> TowerData:
    """Render ``n`` scenes of ``split`` (one of :data:`SPLITS`) with their targets."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
    if n < 1:
        raise ValueError(f"need at least one scene; got n={n}.")
    rows = parallel_map(_job, [(seed, split, i, image_size, patch_size) for i in range(n)], workers)
    targets = [r[2] for r in rows]
    return TowerData(
        pixels=np.stack([r[1] for r in rows]),
        counts={h: np.stack([t.counts[h] for t in targets]) for h in targets[0].counts},
        objectness=np.stack([t.objectness for t in targets]),
        centre=np.stack([t.centre for t in targets]),
        scenes=[r[0] for r in rows],
        patch_size=patch_size,
    )
