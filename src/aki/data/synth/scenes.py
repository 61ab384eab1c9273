"""Scene sampling and rendering for the synthetic vision-centric benchmark.

A scene is a handful of flat shapes on a neutral background. Objects are drawn in order; an object
drawn later is *nearer* to the camera and occludes the ones drawn before it where they overlap
(depth = draw order; ``depth_rank`` 0 is the nearest object). Every object keeps at least
``MIN_VISIBLE`` of its area visible, so counting and naming are always well defined from the image.
Each object has a thin dark outline, so two overlapping objects of the same colour stay separable.

Everything is deterministic: a scene is a pure function of its seed string, and its pixels and
per-pixel object map are pure functions of its annotation (:func:`render`, :func:`object_masks`).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
# Sampling weights are skewed on purpose, so that POPE's "popular" negatives differ from "random".
SHAPE_WEIGHTS = (0.30, 0.25, 0.20, 0.15, 0.10)
COLOURS = {
    "red": (220, 38, 38),
    "green": (34, 170, 60),
    "blue": (37, 90, 230),
    "yellow": (245, 205, 30),
    "purple": (150, 60, 200),
}
COLOUR_WEIGHTS = (0.28, 0.24, 0.20, 0.16, 0.12)
SIZES = ("small", "large")
# Side of the bounding square, as a fraction of the image side (11 and 17 px at 64 px).
SIZE_FRACTION = {"small": 0.17, "large": 0.27}
MIN_SIDE = 6
BACKGROUND = (128, 128, 128)
OUTLINE = (20, 20, 20)
MIN_VISIBLE = 0.5
SUPERSAMPLE = 4
# Many objects per scene, so that a question names one object (or pair) among several.
MIN_OBJECTS, MAX_OBJECTS = 3, 8
OVERLAP_PROBABILITY = 0.35  # chance that a new object is placed over an earlier one (occlusion)


@dataclass
class SceneObject:
    id: int
    shape: str
    colour: str
    size: str
    bbox: list[int]  # [x0, y0, x1, y1] of the full (unoccluded) shape, pixels, x1/y1 exclusive
    centre: list[float]  # [cx, cy] pixels
    draw_order: int  # 0 = drawn first = farthest
    depth_rank: int = 0  # 0 = nearest to the camera
    area: int = 0  # pixels of the full shape
    visible_area: int = 0  # pixels not covered by nearer objects
    visible_fraction: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


_OBJECT_FIELDS = fields(SceneObject)


@dataclass
class Scene:
    scene_id: str
    seed: str
    image_size: int
    objects: list[SceneObject]
    # [front_id, back_id, occluded_pixels]: ``front`` hides that many pixels of ``back``.
    occlusions: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "scene_id": self.scene_id,
            "seed": self.seed,
            "image_size": self.image_size,
            "background": list(BACKGROUND),
            "objects": [{f.name: getattr(o, f.name) for f in _OBJECT_FIELDS} for o in self.objects],
            "occlusions": self.occlusions,
        }

    @classmethod
    def from_json(cls, data: dict) -> Scene:
        return cls(
            scene_id=data["scene_id"],
            seed=data["seed"],
            image_size=int(data["image_size"]),
            objects=[SceneObject(**o) for o in data["objects"]],
            occlusions=[list(o) for o in data.get("occlusions", [])],
        )

    def signature(self) -> str:
        """Content of the annotation without ids/seeds: identical scenes have identical signatures."""
        objs = [
            (o.shape, o.colour, o.size, tuple(o.bbox), o.draw_order)
            for o in sorted(self.objects, key=lambda o: o.draw_order)
        ]
        return json.dumps([self.image_size, objs])


def side_of(size: str, image_size: int) -> int:
    """Side in pixels of the bounding square of a ``size`` object."""
    return max(MIN_SIDE, round(SIZE_FRACTION[size] * image_size))


def _polygon(shape: str, x0: float, y0: float, side: float) -> list[tuple[float, float]] | None:
    """Vertices of a shape inside the square [x0, x0+side]^2; None for the circle."""
    x1, y1 = x0 + side, y0 + side
    cx, cy = x0 + side / 2, y0 + side / 2
    if shape == "square":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if shape == "cross":
        a = side * 0.17
        return [
            (cx - a, y0), (cx + a, y0), (cx + a, cy - a), (x1, cy - a), (x1, cy + a), (cx + a, cy + a),
            (cx + a, y1), (cx - a, y1), (cx - a, cy + a), (x0, cy + a), (x0, cy - a), (cx - a, cy - a),
        ]  # fmt: skip
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}")


def _draw(
    draw: ImageDraw.ImageDraw,
    shape: str,
    x0: float,
    y0: float,
    side: float,
    scale: float,
    fill,
    outline,
    width: int,
) -> None:
    # PIL includes the end pixel: the shape spans pixels [x0, x0 + side - 1] (bbox end exclusive).
    x0, y0, side = x0 * scale, y0 * scale, side * scale - 1
    poly = _polygon(shape, x0, y0, side)
    if poly is None:
        draw.ellipse([x0, y0, x0 + side, y0 + side], fill=fill, outline=outline, width=width)
    else:
        draw.polygon(poly, fill=fill, outline=outline, width=width)


def shape_mask(shape: str, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """``[size, size]`` bool: the pixels the shape covers (no antialiasing)."""
    img = Image.new("L", (size, size), 0)
    _draw(ImageDraw.Draw(img), shape, x0, y0, side, 1.0, 255, None, 0)
    return np.asarray(img) > 0


def object_masks(scene: Scene) -> np.ndarray:
    """``[n_objects, H, W]`` bool: the full (unoccluded) pixels of each object, in ``objects`` order."""
    size = scene.image_size
    out = np.zeros((len(scene.objects), size, size), dtype=bool)
    for k, o in enumerate(scene.objects):
        out[k] = shape_mask(o.shape, o.bbox[0], o.bbox[1], o.bbox[2] - o.bbox[0], size)
    return out


def top_object_map(scene: Scene, masks: np.ndarray | None = None) -> np.ndarray:
    """``[H, W]`` int: index (in ``objects``) of the nearest object covering each pixel, -1 for
    the background. What the camera sees: the dense labels of the vision tower's pre-training."""
    masks = object_masks(scene) if masks is None else masks
    size = scene.image_size
    top = np.full((size, size), -1, dtype=np.int64)
    for k in sorted(range(len(scene.objects)), key=lambda k: scene.objects[k].draw_order):
        top[masks[k]] = k
    return top


def _weighted(rng: random.Random, items, weights):
    return rng.choices(list(items), weights=weights, k=1)[0]


def _try_place(
    rng: random.Random, objects: list[SceneObject], visible: list[np.ndarray], areas: list[int],
    shape: str, side: int, image_size: int,
) -> tuple[int, int, np.ndarray] | None:
    """One candidate position for a new (nearest) object, or None when it hides too much."""
    if objects and rng.random() < OVERLAP_PROBABILITY:
        # Deliberately overlap an earlier object a little, for occlusion/depth.
        ref = rng.choice(objects)
        cx = ref.centre[0] + rng.uniform(-0.8, 0.8) * side
        cy = ref.centre[1] + rng.uniform(-0.8, 0.8) * side
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
    else:
        x0 = rng.randint(1, image_size - side - 1)
        y0 = rng.randint(1, image_size - side - 1)
    if not (1 <= x0 <= image_size - side - 1 and 1 <= y0 <= image_size - side - 1):
        return None
    m = shape_mask(shape, x0, y0, side, image_size)
    # Every earlier object must keep enough visible area once this one covers it.
    for vis, area in zip(visible, areas, strict=True):
        if np.count_nonzero(vis & ~m) < MIN_VISIBLE * area:
            return None
    return x0, y0, m


def sample_scene(seed: str, scene_id: str, image_size: int = 64, max_tries: int = 200) -> Scene:
    """Sample object attributes and positions for one scene (no pixels yet)."""
    rng = random.Random(seed)
    n = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    for _ in range(max_tries):
        objects: list[SceneObject] = []
        masks: list[np.ndarray] = []
        visible: list[np.ndarray] = []  # what is still visible of each placed object
        areas: list[int] = []
        for k in range(n):
            shape = _weighted(rng, SHAPES, SHAPE_WEIGHTS)
            colour = _weighted(rng, COLOURS, COLOUR_WEIGHTS)
            size = rng.choice(SIZES)
            side = side_of(size, image_size)
            placed = None
            for _ in range(60):
                placed = _try_place(rng, objects, visible, areas, shape, side, image_size)
                if placed is not None:
                    break
            if placed is None:
                break
            x0, y0, m = placed
            visible = [v & ~m for v in visible]
            objects.append(
                SceneObject(
                    id=k, shape=shape, colour=colour, size=size,
                    bbox=[x0, y0, x0 + side, y0 + side],
                    centre=[x0 + side / 2, y0 + side / 2], draw_order=k,
                )
            )  # fmt: skip
            masks.append(m)
            visible.append(m.copy())
            areas.append(int(m.sum()))
        if len(objects) == n:
            return _finish(Scene(scene_id, seed, image_size, objects), np.stack(masks))
    raise RuntimeError(f"could not place {n} objects for scene {scene_id} in {max_tries} tries")


def _finish(scene: Scene, masks: np.ndarray) -> Scene:
    n = len(scene.objects)
    top = top_object_map(scene, masks)
    for k, o in enumerate(scene.objects):
        o.area = int(masks[k].sum())
        o.visible_area = int((top == k).sum())
        o.visible_fraction = round(o.visible_area / max(o.area, 1), 4)
        o.depth_rank = n - 1 - o.draw_order
    occ = []
    for a, ma in zip(scene.objects, masks, strict=True):
        for b, mb in zip(scene.objects, masks, strict=True):
            if a.draw_order > b.draw_order:
                px = int((ma & mb).sum())
                if px > 0:
                    occ.append([a.id, b.id, px])
    scene.occlusions = sorted(occ)
    return scene


def render(scene: Scene) -> Image.Image:
    """Draw the scene (antialiased by supersampling) as an RGB image."""
    s = SUPERSAMPLE
    size = scene.image_size
    img = Image.new("RGB", (size * s, size * s), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in sorted(scene.objects, key=lambda o: o.draw_order):
        side = o.bbox[2] - o.bbox[0]
        _draw(
            draw,
            o.shape,
            o.bbox[0],
            o.bbox[1],
            side,
            s,
            COLOURS[o.colour],
            OUTLINE,
            max(1, s // 2 + 1),
        )
    return img.resize((size, size), Image.Resampling.BOX)


def scene_seed(seed: int, split: str, index: int, attempt: int = 0) -> str:
    """The seed string of scene ``index`` of ``split``: distinct splits never share a seed."""
    return f"aki-synth/{seed}/{split}/{index}/{attempt}"


def distance(a: SceneObject, b: SceneObject) -> float:
    return math.dist(a.centre, b.centre)
