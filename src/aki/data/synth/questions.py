"""Captions and questions derived from a scene annotation.

Every question names its objects by ``"<colour> <shape>"`` and is only asked when each named object
is unique in the scene and the answer is clear-cut (margins below); otherwise the generator returns
``None`` and the caller tries another question or skips the task for that scene.
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations, permutations

from aki.data.synth.scenes import COLOURS, SHAPES, SIZES, Scene, SceneObject, distance
from aki.prompts import llava_short_answer_prompt, options_prompt, short_answer_prompt

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# Clear-cut margins.
MIN_OCCLUSION_FRACTION = 0.05  # depth: the nearer object hides >= 5% of the farther one
DISTANCE_RATIO = 0.75  # distance: near / far <= 0.75 ...
DISTANCE_MIN_GAP = 0.1  # ... and far - near >= 0.1 * image side


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def all_names() -> list[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def name_counts(scene: Scene) -> Counter:
    return Counter(o.name for o in scene.objects)


def unique_objects(scene: Scene) -> list[SceneObject]:
    """Objects whose ``colour shape`` name is unique in the scene (usable as a reference)."""
    counts = name_counts(scene)
    return [o for o in scene.objects if counts[o.name] == 1]


def mc_prompt(question: str, choices: list[str]) -> str:
    """CV-Bench's official prompt (:func:`aki.prompts.options_prompt`)."""
    return options_prompt(question, choices)


def short_prompt(question: str, rng: random.Random | None = None) -> str:
    """The release's short-answer prompt (instruction first); with ``rng``, LLaVA's evaluation
    form (question first, as POPE is asked) half of the time, so that a tiny model trained on
    these conversations is not tied to one template."""
    if rng is not None and rng.random() < 0.5:
        return llava_short_answer_prompt(question)
    return short_answer_prompt(question)


def _item(task: str, question: str, answer: str, choices: list[str] | None, meta: dict) -> dict:
    return {"task": task, "question": question, "answer": answer, "choices": choices, "meta": meta}


# ----------------------------------------------------------------------------------- count
def count_question(scene: Scene, rng: random.Random, cv_style: bool = False) -> dict:
    present = scene.objects
    # Mostly a colour-shape combination: one kind of object among many.
    kind = rng.choices(["colour_shape", "colour", "shape"], weights=[2, 1, 1], k=1)[0]
    if rng.random() < 0.8:  # mostly ask about something present
        ref = rng.choice(present)
        colour, shape = ref.colour, ref.shape
    else:
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    if kind == "shape":
        target, match = plural(shape), {"shape": shape}
    elif kind == "colour":
        target, match = f"{colour} objects", {"colour": colour}
    else:
        target, match = f"{colour} {plural(shape)}", {"colour": colour, "shape": shape}
    n = sum(all(getattr(o, k) == v for k, v in match.items()) for o in present)
    if cv_style:
        question = f"How many {target} are in the image?"
    else:
        question = rng.choice(
            [
                f"How many {target} are there?",
                f"How many {target} are in the image?",
                f"Count the {target} in the image.",
            ]
        )
    start = max(0, n - rng.randint(0, 3))
    choices = [str(k) for k in range(start, start + 4)]
    rng.shuffle(choices)  # answer letters uniform (ascending numbers would favour A/B)
    return _item("Count", question, str(n), choices, {"match": match, "target": target})


# -------------------------------------------------------------------------------- relation
def left_of(a: SceneObject, b: SceneObject) -> bool:
    return a.bbox[2] <= b.bbox[0]


def above(a: SceneObject, b: SceneObject) -> bool:
    return a.bbox[3] <= b.bbox[1]


def relation_question(scene: Scene, rng: random.Random, cv_style: bool = False) -> dict | None:
    cands = []
    for a, b in permutations(unique_objects(scene), 2):
        if left_of(a, b):
            cands += [(a, b, "left"), (b, a, "right")]
        if above(a, b):
            cands += [(a, b, "above"), (b, a, "below")]
    if not cands:
        return None
    a, b, rel = rng.choice(cands)
    axis = ["left", "right"] if rel in ("left", "right") else ["above", "below"]
    choices = axis[:]
    rng.shuffle(choices)
    if cv_style:
        question = (
            f"Considering the relative positions of the {a.name} and the {b.name} in the image, "
            f"where is the {a.name} located with respect to the {b.name}?"
        )
    elif axis[0] == "left":
        question = rng.choice(
            [
                f"Is the {a.name} to the left or to the right of the {b.name}?",
                f"Is the {a.name} on the left or on the right side of the {b.name}?",
                f"Where is the {a.name} with respect to the {b.name}, left or right?",
            ]
        )
    else:
        question = rng.choice(
            [
                f"Is the {a.name} above or below the {b.name}?",
                f"Where is the {a.name} with respect to the {b.name}, above or below?",
            ]
        )
    return _item("Relation", question, rel, choices, {"objects": [a.name, b.name], "relation": rel})


# ----------------------------------------------------------------------------------- depth
def occluding_pairs(scene: Scene) -> list[tuple[SceneObject, SceneObject]]:
    """(front, back) pairs of unique objects where front visibly hides part of back."""
    uniq = {o.id: o for o in unique_objects(scene)}
    pairs = []
    for front, back, px in scene.occlusions:
        if front in uniq and back in uniq and px >= MIN_OCCLUSION_FRACTION * uniq[back].area:
            pairs.append((uniq[front], uniq[back]))
    return pairs


def depth_question(scene: Scene, rng: random.Random, cv_style: bool = False) -> dict | None:
    pairs = occluding_pairs(scene)
    if not pairs:
        return None
    front, back = rng.choice(pairs)
    first, second = (front, back) if rng.random() < 0.5 else (back, front)
    if cv_style:
        question = f"Which object is closer to the camera taking this photo, the {first.name} or the {second.name}?"
    else:
        question = rng.choice(
            [
                f"Which object is closer to the camera, the {first.name} or the {second.name}?",
                f"Which is in front, the {first.name} or the {second.name}?",
                f"Which object is nearer to the viewer, the {first.name} or the {second.name}?",
            ]
        )
    return _item(
        "Depth",
        question,
        front.name,
        [first.name, second.name],
        {"objects": [first.name, second.name], "front": front.name},
    )


# -------------------------------------------------------------------------------- distance
def distance_question(scene: Scene, rng: random.Random, cv_style: bool = False) -> dict | None:
    uniq = unique_objects(scene)
    gap = DISTANCE_MIN_GAP * scene.image_size
    cands = []
    for c in uniq:
        for a, b in combinations([o for o in uniq if o.id != c.id], 2):
            da, db = distance(a, c), distance(b, c)
            near = a if da < db else b
            dn, df = min(da, db), max(da, db)
            if dn <= DISTANCE_RATIO * df and df - dn >= gap:
                cands.append((a, b, c, near))
    if not cands:
        return None
    a, b, c, near = rng.choice(cands)
    if rng.random() < 0.5:
        a, b = b, a
    if cv_style:
        question = f"Estimate the distances between objects in this image. Which object is closer to the {c.name}, the {a.name} or the {b.name}?"
    else:
        question = rng.choice(
            [
                f"Which object is closer to the {c.name}, the {a.name} or the {b.name}?",
                f"Which is nearer to the {c.name}: the {a.name} or the {b.name}?",
            ]
        )
    return _item(
        "Distance",
        question,
        near.name,
        [a.name, b.name],
        {"objects": [a.name, b.name], "reference": c.name, "closer": near.name},
    )


# The CV-Bench tasks and their question makers, in the order the test split asks them.
CV_BENCH_QUESTIONS = (
    ("Count", count_question),
    ("Relation", relation_question),
    ("Depth", depth_question),
    ("Distance", distance_question),
)


# ------------------------------------------------------------------------------- attribute
def _unique_by(scene: Scene, keys: tuple[str, ...]) -> list[SceneObject]:
    """Objects that are the only one in the scene with their values of ``keys``."""
    counts = Counter(tuple(getattr(o, k) for k in keys) for o in scene.objects)
    return [o for o in scene.objects if counts[tuple(getattr(o, k) for k in keys)] == 1]


def _described(scene: Scene, rng: random.Random, keys: tuple[str, ...]) -> tuple[SceneObject, str] | None:
    """An object named by ``keys`` alone (e.g. "triangle") when unique, else by ``size`` and
    ``keys`` (e.g. "small triangle") when that is unique; None when neither names one object."""
    for with_size in (False, True):
        ks = ("size", *keys) if with_size else keys
        objs = _unique_by(scene, ks)
        if objs:
            o = rng.choice(objs)
            return o, " ".join(getattr(o, k) for k in ks)
    return None


def attribute_question(scene: Scene, rng: random.Random, kind: str | None = None) -> dict | None:
    """Colour of the <[size] shape>, shape of the <[size] colour> object, size of the <colour
    shape>: the object is named by as few attributes as make it unique in the scene."""
    kinds = [kind] if kind else rng.sample(["colour", "shape", "size"], 3)
    for k in kinds:
        if k == "colour":
            found = _described(scene, rng, ("shape",))
            if found is None:
                continue
            o, desc = found
            q = rng.choice([f"What colour is the {desc}?", f"What is the colour of the {desc}?"])
            meta = {"object": {"shape": o.shape, **({"size": o.size} if " " in desc else {})}}
            return _item("colour", q, o.colour, _options(o.colour, list(COLOURS), rng), meta)
        if k == "shape":
            found = _described(scene, rng, ("colour",))
            if found is None:
                continue
            o, desc = found
            q = rng.choice(
                [f"What shape is the {desc} object?", f"What is the shape of the {desc} object?"]
            )
            meta = {"object": {"colour": o.colour, **({"size": o.size} if " " in desc else {})}}
            return _item("shape", q, o.shape, _options(o.shape, list(SHAPES), rng), meta)
        if k == "size":
            objs = unique_objects(scene)
            if not objs:
                continue
            o = rng.choice(objs)
            q = rng.choice(
                [f"Is the {o.name} small or large?", f"What size is the {o.name}, small or large?"]
            )
            choices = list(SIZES)
            rng.shuffle(choices)
            return _item(
                "size", q, o.size, choices, {"object": {"colour": o.colour, "shape": o.shape}}
            )
    return None


def _options(answer: str, pool: list[str], rng: random.Random, n: int = 4) -> list[str]:
    others = rng.sample([p for p in pool if p != answer], n - 1)
    opts = [answer, *others]
    rng.shuffle(opts)
    return opts


# ------------------------------------------------------------------------------- existence
class ObjectStats:
    """Per-dataset frequency and co-occurrence of ``colour shape`` names (POPE's negative sampling)."""

    def __init__(self, scenes: list[Scene]):
        self.freq: Counter = Counter()
        self.cooc: Counter = Counter()
        for s in scenes:
            names = sorted(set(name_counts(s)))
            self.freq.update(names)
            for a, b in combinations(names, 2):
                self.cooc[(a, b)] += 1
                self.cooc[(b, a)] += 1

    def popular_order(self) -> list[str]:
        return sorted(all_names(), key=lambda n: (-self.freq[n], n))


def negatives(
    scene: Scene, strategy: str, k: int, rng: random.Random, stats: ObjectStats
) -> list[str]:
    """``k`` object names absent from the scene, sampled POPE-style.

    random: uniformly among absent names. popular: the most frequent names of the dataset that are
    absent. adversarial: absent names sharing a colour or a shape with a present object, ranked by
    how often they co-occur with the present objects in the dataset.
    """
    present = set(name_counts(scene))
    absent = [n for n in all_names() if n not in present]
    if strategy == "random":
        return rng.sample(absent, min(k, len(absent)))
    if strategy == "popular":
        return [n for n in stats.popular_order() if n not in present][:k]
    if strategy == "adversarial":
        colours = {n.split()[0] for n in present}
        shapes = {n.split()[1] for n in present}

        def score(n: str):
            c, s = n.split()
            shares = (c in colours) or (s in shapes)
            co = sum(stats.cooc[(p, n)] for p in present)
            return (not shares, -co, -stats.freq[n], n)

        return sorted(absent, key=score)[:k]
    raise ValueError(f"unknown negative sampling strategy {strategy!r}")


def existence_question(name: str) -> str:
    return f"Is there a {name} in the image?"


# -------------------------------------------------------------------------------- captions
def region(o: SceneObject, size: int) -> str:
    cx, cy = o.centre
    col = "left" if cx < size / 3 else ("right" if cx >= 2 * size / 3 else "centre")
    row = "top" if cy < size / 3 else ("bottom" if cy >= 2 * size / 3 else "middle")
    return {
        ("top", "left"): "in the top left corner",
        ("top", "centre"): "at the top",
        ("top", "right"): "in the top right corner",
        ("middle", "left"): "on the left",
        ("middle", "centre"): "in the centre",
        ("middle", "right"): "on the right",
        ("bottom", "left"): "in the bottom left corner",
        ("bottom", "centre"): "at the bottom",
        ("bottom", "right"): "in the bottom right corner",
    }[(row, col)]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene, rng: random.Random) -> str:
    objs = scene.objects[:]
    rng.shuffle(objs)
    descr = [f"a {o.size} {o.colour} {o.shape} {region(o, scene.image_size)}" for o in objs]
    n = len(objs)
    word = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    text = rng.choice(
        [
            f"{word.capitalize()} shapes on a grey background: {_join(descr)}.",
            f"A picture of {_join(descr)}.",
            f"There are {word} objects: {_join(descr)}.",
            f"This image shows {_join(descr)}.",
        ]
    )
    pairs = occluding_pairs(scene)
    rng.shuffle(pairs)
    for front, back in pairs[:2]:
        text += " " + rng.choice(
            [
                f"The {front.name} is in front of the {back.name}.",
                f"The {back.name} is partly hidden behind the {front.name}.",
            ]
        )
    return text
