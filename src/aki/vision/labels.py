"""Dense targets for the vision tower, read off a synthetic scene's annotation.

What the camera sees at each pixel is the nearest object covering it, and right behind it the
next one (:func:`pixel_maps`). Each head below is a property of the seen object (or of the one
behind it). Its target on a cell of the patch grid is the share of each class among the cell's
object pixels (the background left out: a patch that shows a corner of a triangle is asked
"triangle", not "90 % background"), weighted by how many object pixels the cell has; a separate
``objectness`` target is the share of object pixels. The heads cover what the synthetic
questions ask about:

- ``colour``, ``shape``, ``size``: of the visible object;
- ``under_colour``, ``under_shape``: of the object right behind it at that pixel (over the
  pixels that have one), so that which of two overlapping objects is in front is written where
  they overlap;
- ``hides``, ``hidden``: whether the visible object hides >= 5 % of another object / has >= 5 %
  of itself hidden (no / yes): the depth questions' occlusion rule;
- ``name_count``, ``colour_count``, ``shape_count``: how many objects of the scene (1..8) share
  the visible object's colour and shape / colour / shape: counting, written into every patch of
  every object it concerns;
- ``centre``: the visible object's centre (x, y) as a fraction of the image side (regression):
  where the object is, for spatial relations.

Targets are pixel counts per patch and class (:func:`patch_targets`), computed once per scene
in the rendering workers. The probes (:mod:`aki.vision.probe`) use their hard form
(:func:`hard_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aki.data.synth.scenes import COLOURS, MAX_OBJECTS, SHAPES, SIZES, Scene, object_masks

MIN_OCCLUSION_FRACTION = 0.05
"""An object "hides" another when it covers at least this share of it (the depth questions' rule)."""

OBJECT_HEADS: dict[str, int] = {
    "colour": len(COLOURS),
    "shape": len(SHAPES),
    "size": len(SIZES),
    "hides": 2,
    "hidden": 2,
    "name_count": MAX_OBJECTS,
    "colour_count": MAX_OBJECTS,
    "shape_count": MAX_OBJECTS,
}
"""Properties of the visible object: head -> number of classes."""
UNDER_HEADS: dict[str, str] = {"under_colour": "colour", "under_shape": "shape"}
"""Properties of the object right behind the visible one."""
HEADS: dict[str, int] = {**OBJECT_HEADS, **{h: OBJECT_HEADS[src] for h, src in UNDER_HEADS.items()}}
"""Every classification head and its number of classes."""
MIN_PIXELS_FRACTION = 1 / 8
"""A cell counts fully in a head's loss (and a patch gets a hard label) from this share of
relevant pixels on; below it, its loss weight falls linearly to 0."""

_COLOUR_INDEX = {c: k for k, c in enumerate(COLOURS)}
_SHAPE_INDEX = {s: k for k, s in enumerate(SHAPES)}
_SIZE_INDEX = {s: k for k, s in enumerate(SIZES)}


def pixel_maps(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """``(top, under)``: ``[H, W]`` int8 maps of the nearest object and the one right behind it
    (indices into ``scene.objects``; -1 for background / nothing)."""
    masks = object_masks(scene)
    size = scene.image_size
    top = np.full((size, size), -1, dtype=np.int8)
    under = np.full((size, size), -1, dtype=np.int8)
    for k in sorted(range(len(scene.objects)), key=lambda k: scene.objects[k].draw_order):
        m = masks[k]
        under[m] = top[m]
        top[m] = k
    return top, under


def object_classes(scene: Scene) -> dict[str, np.ndarray]:
    """Per head of :data:`OBJECT_HEADS`, the class index of each object (``[n_objects]``)."""
    objs = scene.objects
    names = [o.name for o in objs]
    area = {o.id: o.area for o in objs}
    hides = {o.id: False for o in objs}
    hidden = {o.id: False for o in objs}
    for front, back, px in scene.occlusions:
        if px >= MIN_OCCLUSION_FRACTION * area[back]:
            hides[front] = hidden[back] = True
    return {
        "colour": np.array([_COLOUR_INDEX[o.colour] for o in objs]),
        "shape": np.array([_SHAPE_INDEX[o.shape] for o in objs]),
        "size": np.array([_SIZE_INDEX[o.size] for o in objs]),
        "hides": np.array([int(hides[o.id]) for o in objs]),
        "hidden": np.array([int(hidden[o.id]) for o in objs]),
        "name_count": np.array([names.count(n) - 1 for n in names]),
        "colour_count": np.array([sum(p.colour == o.colour for p in objs) - 1 for o in objs]),
        "shape_count": np.array([sum(p.shape == o.shape for p in objs) - 1 for o in objs]),
    }


@dataclass
class PatchTargets:
    """One scene's targets on its patch grid (patches row-major).

    ``counts[head]``: uint8 ``[patches, classes]`` relevant pixels of each class (object pixels;
    for ``under_*`` heads, pixels with an object behind); ``objectness``: float32 ``[patches]``
    share of object pixels; ``centre``: float32 ``[patches, 2]`` mean object centre over the
    object pixels, as a fraction of the image side.
    """

    counts: dict[str, np.ndarray]
    objectness: np.ndarray
    centre: np.ndarray


def _count(patch_id: np.ndarray, label: np.ndarray, valid: np.ndarray, n_patches: int, n: int) -> np.ndarray:
    flat = (patch_id * n + label)[valid]
    return np.bincount(flat, minlength=n_patches * n).reshape(n_patches, n)


def patch_targets(scene: Scene, patch: int) -> PatchTargets:
    """:class:`PatchTargets` of ``scene`` on a grid of ``patch``-pixel patches."""
    size = scene.image_size
    if size % patch:
        raise ValueError(f"image size {size} is not a multiple of the patch size {patch}.")
    if patch * patch > 255:
        raise ValueError(f"patch size {patch} is too large for uint8 pixel counts (at most 15).")
    g = size // patch
    cell = np.arange(size) // patch
    patch_id = cell[:, None] * g + cell[None, :]
    top, under = pixel_maps(scene)
    top, under = top.astype(np.int64), under.astype(np.int64)
    classes = object_classes(scene)
    counts = {}
    for head, n in HEADS.items():
        index = under if head in UNDER_HEADS else top
        per_obj = np.minimum(classes[UNDER_HEADS.get(head, head)], n - 1)
        label = per_obj[np.maximum(index, 0)] if len(per_obj) else np.zeros_like(index)
        counts[head] = _count(patch_id, label, index >= 0, g * g, n).astype(np.uint8)
    on = top >= 0
    n_on = np.bincount(patch_id[on], minlength=g * g).astype(np.float32)
    centres = np.array([o.centre for o in scene.objects], dtype=np.float64).reshape(-1, 2) / size
    centre = np.zeros((g * g, 2), dtype=np.float32)
    for axis in range(2):
        centre[:, axis] = np.bincount(patch_id[on], weights=centres[top[on], axis], minlength=g * g)
    centre /= np.maximum(n_on, 1.0)[:, None]
    return PatchTargets(counts, n_on / (patch * patch), centre)


def batch_targets(counts: dict[str, np.ndarray], objectness: np.ndarray, centre: np.ndarray,
                  patch: int) -> dict:
    """Torch targets of a batch (stacked :class:`PatchTargets` fields, ``[B, patches, ...]``):
    ``{"shares": {head: class shares among relevant pixels}, "pixels": {head: their share of
    the patch}, "objectness", "centre"}``."""
    shares, pixels = {}, {}
    for head, c in counts.items():
        c = torch.from_numpy(c).float()
        total = c.sum(-1)
        shares[head] = c / total.clamp_min(1.0)[..., None]
        pixels[head] = total / (patch * patch)
    return {"shares": shares, "pixels": pixels, "objectness": torch.from_numpy(objectness),
            "centre": torch.from_numpy(centre)}


def hard_labels(counts: dict[str, np.ndarray], patch: int) -> dict[str, torch.Tensor]:
    """Per head, ``[..., patches]`` the class with the most relevant pixels, or -1 where fewer
    than :data:`MIN_PIXELS_FRACTION` of the patch's pixels are relevant."""
    out = {}
    for head, c in counts.items():
        c = torch.from_numpy(c)
        enough = c.sum(-1, dtype=torch.int64) >= MIN_PIXELS_FRACTION * patch * patch
        out[head] = torch.where(enough, c.argmax(-1), -1)
    return out
