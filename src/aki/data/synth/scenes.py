"""Scene sampling and rendering for the synthetic vision-centric benchmark.

A scene is a handful of flat shapes on a neutral background. Objects are drawn in order; an object
drawn later is *nearer* to the camera and occludes the ones drawn before it where they overlap
(depth = draw order; ``depth_rank`` 0 is the nearest object). Every object keeps at least
``MIN_VISIBLE`` of its area visible, so counting and naming are always well defined from the image.
Each object has a thin dark outline, so two overlapping objects of the same colour stay separable.

Everything is deterministic: a scene is a pure function of its seed string.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field

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
# Side of the bounding square, as a fraction of the image side.
SIZE_FRACTION = {"small": 0.19, "large": 0.32}
BACKGROUND = (128, 128, 128)
OUTLINE = (20, 20, 20)
MIN_VISIBLE = 0.5
SUPERSAMPLE = 4
MIN_OBJECTS, MAX_OBJECTS = 2, 6


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
            "objects": [asdict(o) for o in self.objects],
            "occlusions": self.occlusions,
        }

    def signature(self) -> str:
        """Content of the annotation without ids/seeds: identical scenes have identical signatures."""
        objs = [
            (o.shape, o.colour, o.size, tuple(o.bbox), o.draw_order)
            for o in sorted(self.objects, key=lambda o: o.draw_order)
        ]
        return json.dumps([self.image_size, objs])


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


def _mask(shape: str, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    img = Image.new("L", (size, size), 0)
    _draw(ImageDraw.Draw(img), shape, x0, y0, side, 1.0, 255, None, 0)
    return np.asarray(img) > 0


def _weighted(rng: random.Random, items, weights):
    return rng.choices(list(items), weights=weights, k=1)[0]


def sample_scene(seed: str, scene_id: str, image_size: int = 64, max_tries: int = 200) -> Scene:
    """Sample object attributes and positions for one scene (no pixels yet)."""
    rng = random.Random(seed)
    n = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    for _ in range(max_tries):
        objects: list[SceneObject] = []
        masks: list[np.ndarray] = []
        ok = True
        for k in range(n):
            shape = _weighted(rng, SHAPES, SHAPE_WEIGHTS)
            colour = _weighted(rng, COLOURS, COLOUR_WEIGHTS)
            size = rng.choice(SIZES)
            side = max(6, round(SIZE_FRACTION[size] * image_size))
            placed = False
            for _ in range(60):
                if objects and rng.random() < 0.35:
                    # Deliberately overlap an earlier object a little, for occlusion/depth.
                    ref = rng.choice(objects)
                    cx = ref.centre[0] + rng.uniform(-0.8, 0.8) * side
                    cy = ref.centre[1] + rng.uniform(-0.8, 0.8) * side
                    x0, y0 = round(cx - side / 2), round(cy - side / 2)
                else:
                    x0 = rng.randint(1, image_size - side - 1)
                    y0 = rng.randint(1, image_size - side - 1)
                if not (1 <= x0 <= image_size - side - 1 and 1 <= y0 <= image_size - side - 1):
                    continue
                m = _mask(shape, x0, y0, side, image_size)
                # Each earlier object must keep enough visible area once this one covers it.
                cover = m.copy()
                good = True
                for prev, pm in zip(objects, masks, strict=True):
                    # visible part of prev = pm minus everything drawn after prev (incl. this one)
                    later = np.zeros_like(pm)
                    for q, qm in zip(objects, masks, strict=True):
                        if q.draw_order > prev.draw_order:
                            later |= qm
                    vis = (pm & ~(later | cover)).sum()
                    if vis < MIN_VISIBLE * pm.sum():
                        good = False
                        break
                if not good:
                    continue
                objects.append(
                    SceneObject(
                        id=k, shape=shape, colour=colour, size=size,
                        bbox=[x0, y0, x0 + side, y0 + side],
                        centre=[x0 + side / 2, y0 + side / 2], draw_order=k,
                    )
                )  # fmt: skip
                masks.append(m)
                placed = True
                break
            if not placed:
                ok = False
                break
        if ok:
            return _finish(Scene(scene_id, seed, image_size, objects), masks)
    raise RuntimeError(f"could not place objects for scene {scene_id}")


def _finish(scene: Scene, masks: list[np.ndarray]) -> Scene:
    n = len(scene.objects)
    for o, m in zip(scene.objects, masks, strict=True):
        later = np.zeros_like(m)
        for q, qm in zip(scene.objects, masks, strict=True):
            if q.draw_order > o.draw_order:
                later |= qm
        o.area = int(m.sum())
        o.visible_area = int((m & ~later).sum())
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
