"""Label-safe training augmentation, decided per sample from what its text says.

The paper trains with a random horizontal flip (PT and SFT) and a RandomResizedCrop (scale 0.5-1,
SFT). Applied blindly, both contradict labels: a flip turns "the cat is left of the dog" (yes)
into a false statement and mirrors the text a question asks to read; a crop moves or cuts the box
a region prompt names and removes objects a count or an existence question is about. So every
sample's text (caption, or every question and answer) is read first:

Flip (p = 0.5):
- every ``left``/``right`` word used as a direction (``left of``, ``on the right``, ``top left
  corner``, ``left hand``, a bare ``left`` answer, ``leftmost``...) is swapped in the question and
  the answer, case kept, so the label stays true of the mirrored image;
- ``<bbox>`` boxes are mirrored (``x -> 1 - x``);
- the flip is skipped when the text cannot be mirrored safely: reading (text, titles, authors,
  signs, words in quotes, numbers on things), clocks and time, compass directions and maps,
  rotation senses, coordinates other than ``<bbox>`` boxes, and ``left``/``right`` in a sense that
  is not a direction (``the right answer``, ``he left``).

Crop (SFT only):
- a sample with ``<bbox>`` boxes (one image) is cropped only by windows that contain every box
  whole, and its boxes are rewritten in the crop's coordinates;
- skipped when the label depends on the whole frame: counting, existence, yes/no answers,
  positions in the frame (corners, sides, top, middle...), reading text, other coordinates.

Nothing is decided from source names. Driven by an explicit ``random.Random``, so a run (and its
resumption) sees the same augmentation. The input sample is never modified.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from PIL import Image

from aki.data.boxes import BBOX_RE, find_bboxes, map_bboxes
from aki.data.records import Sample
from aki.prompts import OPTION_LETTER, REGION, SHORT_ANSWER, YES_NO

CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)

# Fixed task instructions are not about the image (e.g. "the option's letter").
_INSTRUCTIONS = re.compile("|".join(re.escape(t) for t in (OPTION_LETTER, SHORT_ANSWER, YES_NO, REGION)))

_W = r"\b(?:{})\b"
_NO_MIRROR = re.compile(_W.format("|".join([
    # reading text: a mirrored image mirrors its writing
    r"read\w*", r"writ\w*", r"wrote", r"text\w*", r"titled?", r"titles", r"authors?", r"words?",
    r"letters?", r"spell\w*", r"says?", r"said", r"signs?", r"signage", r"labels?", r"logos?",
    r"brands?", r"fonts?", r"captions?", r"numbers?", r"digits?", r"numerals?", r"jersey", r"license",
    r"books?", r"magazines?", r"posters?", r"menus?", r"banners?", r"newspapers?",
    r"inscription", r"alphabet", r"ocr", r"name[sd]?",
    # clocks and rotation senses
    r"clocks?", r"watch(?:es)?", r"time", r"o'clock", r"clockwise", r"counterclockwise", r"anticlockwise",
    # compass directions and maps (a mirrored map is another place)
    r"east\w*", r"west\w*", r"north\w*", r"south\w*", r"maps?", r"compass",
])), re.IGNORECASE)
_QUOTED = re.compile(r"[\"“”«»]")
_RAW_COORDS = re.compile(r"[\[(]\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?")

_SIDE = re.compile(r"\b(left|right)(most|ward|wards|-hand|hand|-handed|handed)?\b", re.IGNORECASE)
_DIRECTION_BEFORE = frozenset(
    ["the", "to", "on", "at", "from", "far", "towards", "toward", "top", "bottom", "upper", "lower", "middle", "his", "her", "its", "their", "my", "your", "our", "turn", "turns", "turned", "turning", "facing", "or", "and"])
_DIRECTION_AFTER = frozenset(
    ["of", "side", "sides", "hand", "hands", "half", "corner", "corners", "edge", "edges", "part", "portion", "end", "eye", "eyes", "ear", "ears", "arm", "arms", "leg", "legs", "foot", "feet", "knee", "knees", "shoulder", "shoulders", "wing", "wings", "wall", "lane", "lanes", "column", "columns", "image", "picture", "photo", "frame", "bottom", "top", "front", "back", "rear", "or", "and"])
_NOT_DIRECTION_AFTER = frozenset(
    ["answer", "answers", "choice", "option", "options", "way", "thing", "things", "time", "moment", "now", "away", "here", "there", "angle", "angles", "angled", "triangle", "triangles"])
_SWAP = {"left": "right", "right": "left"}

_FRAME_DEPENDENT = re.compile(_W.format("|".join([
    r"how many", r"number of", r"count\w*", r"is there", r"are there", r"any", r"none", r"empty",
    r"corners?", r"edges?", r"sides?", r"top", r"bottom", r"middle", r"cent(?:er|re)", r"background",
    r"foreground", r"left\w*", r"right\w*", r"whole", r"entire", r"all", r"every",
])), re.IGNORECASE)
_YES_NO = re.compile(r"^\s*(yes|no)\W*$", re.IGNORECASE)


# ---------------------------------------------------------------------------- text


def mirror_text(text: str) -> str | None:
    """``text`` as it reads for the mirrored image (left/right swapped, boxes mirrored), or None
    when it cannot be mirrored safely (reading, clocks, compass, raw coordinates, an ambiguous
    ``left``/``right``)."""
    plain = _INSTRUCTIONS.sub(" ", BBOX_RE.sub(" ", text))
    if _NO_MIRROR.search(plain) or _QUOTED.search(plain) or _RAW_COORDS.search(plain):
        return None
    words = re.findall(r"[\w'-]+", plain.lower())
    only_side = len(words) == 1 and words[0] in _SWAP
    out, last = [], 0
    for m in _SIDE.finditer(text):
        before = re.search(r"([\w'-]+)\s+$", text[:m.start()])  # words of the same clause only
        after = re.match(r"\s+([\w'-]+)", text[m.end():])
        prev = before.group(1).lower() if before else ""
        nxt = after.group(1).lower() if after else ""
        if nxt in _NOT_DIRECTION_AFTER:
            return None
        if not (only_side or m.group(2) or prev in _DIRECTION_BEFORE or nxt in _DIRECTION_AFTER):
            return None
        word = m.group(1)
        swapped = _SWAP[word.lower()]
        if word.isupper():
            swapped = swapped.upper()
        elif word[0].isupper():
            swapped = swapped.capitalize()
        out += [text[last:m.start()], swapped, m.group(2) or ""]
        last = m.end()
    out.append(text[last:])
    return map_bboxes("".join(out), lambda b: (1.0 - b[2], b[1], 1.0 - b[0], b[3]))


def crop_safe(texts: list[str]) -> bool:
    """Whether a crop (no boxes involved) keeps every label true: not when the text counts,
    asks whether something exists, is answered yes/no, places things in the frame, asks to read,
    or holds coordinates."""
    for t in texts:
        plain = _INSTRUCTIONS.sub(" ", BBOX_RE.sub(" ", t))
        if _FRAME_DEPENDENT.search(plain) or _YES_NO.match(t) or _RAW_COORDS.search(plain):
            return False
        if _NO_MIRROR.search(plain) or _QUOTED.search(plain):
            return False
    return True


def _texts(sample: Sample) -> list[str]:
    if sample.caption is not None:
        return [sample.caption]
    return [c.get("text", "") for m in sample.messages or [] if isinstance(m.get("content"), list)
            for c in m["content"] if c.get("type") == "text"] + \
           [m["content"] for m in sample.messages or [] if isinstance(m.get("content"), str)]


def _map_texts(sample: Sample, fn: Callable[[str], str]) -> Sample:
    """A new sample whose every text went through ``fn`` (messages rebuilt, never mutated)."""
    if sample.caption is not None:
        return replace(sample, caption=fn(sample.caption))
    messages = []
    for m in sample.messages or []:
        content = m.get("content")
        if isinstance(content, str):
            messages.append({**m, "content": fn(content)})
        elif isinstance(content, list):
            messages.append({**m, "content": [{**c, "text": fn(c["text"])} if c.get("type") == "text" else c
                                              for c in content]})
        else:
            messages.append(m)
    return replace(sample, messages=messages)


# ---------------------------------------------------------------------------- geometry


def hflip(img: Image.Image) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def crop_window(width: int, height: int, rng: random.Random, scale: tuple[float, float] = CROP_SCALE,
                ratio: tuple[float, float] = CROP_RATIO, keep: list[tuple[float, float, float, float]] | None = None,
                tries: int = 10) -> tuple[int, int, int, int] | None:
    """torchvision's RandomResizedCrop window choice (``tries`` draws of area share and aspect)
    as ``(x, y, w, h)``, restricted to windows holding every ``keep`` box (pixels) whole;
    None when no draw fits (the image is then used uncropped)."""
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    keep = keep or []
    for _ in range(tries):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if not (0 < cw <= width and 0 < ch <= height):
            continue
        # x must satisfy x <= box.x1 and x + cw >= box.x2 for every box (same for y)
        x_lo = max([0] + [math.ceil(b[2] - cw) for b in keep])
        x_hi = min([width - cw] + [math.floor(b[0]) for b in keep])
        y_lo = max([0] + [math.ceil(b[3] - ch) for b in keep])
        y_hi = min([height - ch] + [math.floor(b[1]) for b in keep])
        if x_lo <= x_hi and y_lo <= y_hi:
            return rng.randint(x_lo, x_hi), rng.randint(y_lo, y_hi), cw, ch
    return None


def random_resized_crop(img: Image.Image, rng: random.Random, scale: tuple[float, float] = CROP_SCALE,
                        ratio: tuple[float, float] = CROP_RATIO) -> Image.Image:
    """The paper's RandomResizedCrop box on ``img`` (uncropped when no draw fits); the processor
    resizes the crop to the model's input size afterwards."""
    win = crop_window(img.width, img.height, rng, scale, ratio)
    if win is None:
        return img
    x, y, w, h = win
    return img.crop((x, y, x + w, y + h))


# ---------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class AugmentPlan:
    """What :func:`augment_sample` does to one sample (and why not more)."""

    flip: bool = False
    crops: tuple[tuple[int, int, int, int] | None, ...] = ()
    why_no_flip: str = ""
    why_no_crop: str = ""


def plan_augment(sample: Sample, stage: str, rng: random.Random, flip_p: float = 0.5) -> AugmentPlan:
    """Decide flip and crop for ``sample`` from its text (see the module docstring)."""
    if stage not in ("pt", "sft"):
        raise ValueError(f"stage must be 'pt' or 'sft'; got {stage!r}")
    texts = _texts(sample)
    boxes = [b for t in texts for b in find_bboxes(t)]
    n_img = len(sample.images)
    geometry_ok = not (boxes and n_img != 1)
    why_no_flip = why_no_crop = ""
    if not geometry_ok:
        why_no_flip = why_no_crop = "boxes with more than one image"
    mirrorable = geometry_ok and all(mirror_text(t) is not None for t in texts)
    if geometry_ok and not mirrorable:
        why_no_flip = "text cannot be mirrored safely"
    crops: list[tuple[int, int, int, int] | None] = []
    if stage == "sft" and geometry_ok and n_img:
        if boxes:
            img = sample.images[0]
            keep = [(b[0] * img.width, b[1] * img.height, b[2] * img.width, b[3] * img.height) for b in boxes]
            crops = [crop_window(img.width, img.height, rng, keep=keep)]
        elif crop_safe(texts):
            crops = [crop_window(im.width, im.height, rng) for im in sample.images]
        else:
            why_no_crop = "label depends on the whole frame"
    flip = mirrorable and n_img > 0 and rng.random() < flip_p
    return AugmentPlan(flip=flip, crops=tuple(crops), why_no_flip=why_no_flip, why_no_crop=why_no_crop)


def augment_sample(sample: Sample, stage: str, rng: random.Random, flip_p: float = 0.5) -> Sample:
    """The stage's training augmentation of one sample, labels kept true (a new Sample)."""
    plan = plan_augment(sample, stage, rng, flip_p)
    return apply_plan(sample, plan)


def apply_plan(sample: Sample, plan: AugmentPlan) -> Sample:
    images = list(sample.images)
    out = sample
    for k, win in enumerate(plan.crops):
        if win is None:
            continue
        x, y, w, h = win
        W, H = images[k].size
        images[k] = images[k].crop((x, y, x + w, y + h))
        if find_bboxes_in(out):

            def to_crop(b, x=x, y=y, w=w, h=h, W=W, H=H):
                return ((b[0] * W - x) / w, (b[1] * H - y) / h, (b[2] * W - x) / w, (b[3] * H - y) / h)

            out = _map_texts(out, lambda t, f=to_crop: map_bboxes(t, f))
    if plan.flip:
        images = [hflip(im) for im in images]
        out = _map_texts(out, lambda t: mirror_text(t) or t)
    if out is sample and not any(plan.crops):
        return sample
    return replace(out, images=images)


def find_bboxes_in(sample: Sample) -> bool:
    return any(BBOX_RE.search(t) for t in _texts(sample))


__all__ = ["AugmentPlan", "apply_plan", "augment_sample", "crop_safe", "crop_window", "hflip", "mirror_text",
           "plan_augment", "random_resized_crop"]
