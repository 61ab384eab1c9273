"""Training image augmentation (paper Table 4): PT random horizontal flip; SFT RandomResizedCrop
(scale 0.5-1) + flip. PIL only, driven by an explicit ``random.Random`` so a run (and its
resumption) sees the same crops."""

from __future__ import annotations

import math
import random

from PIL import Image

# Region-description sets: a flip or crop would move the box the prompt names.
GEOMETRY_SENSITIVE = frozenset({"refcoco", "refcoco+", "refcocog", "vg", "visual_genome"})


def hflip(img: Image.Image, rng: random.Random, p: float = 0.5) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < p else img


def random_resized_crop(img: Image.Image, rng: random.Random, scale: tuple[float, float] = (0.5, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """torchvision's RandomResizedCrop box choice (10 tries, then a centre crop); the processor
    resizes the crop to the model's input size afterwards."""
    w, h = img.size
    area = w * h
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.crop((x, y, x + cw, y + ch))
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        cw, ch = round(h * ratio[1]), h
    else:
        cw, ch = w, h
    x, y = (w - cw) // 2, (h - ch) // 2
    return img.crop((x, y, x + cw, y + ch))


def augment(img: Image.Image, stage: str, rng: random.Random, source: str = "") -> Image.Image:
    """The stage's training augmentation; sources whose prompts name image regions are left as is."""
    if source in GEOMETRY_SENSITIVE:
        return img
    if stage == "sft":
        img = random_resized_crop(img, rng)
    return hflip(img, rng)
