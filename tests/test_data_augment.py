"""Label-safe augmentation: after every flip or crop the label is still true of the image.

The images are drawn so the label can be checked on the pixels: a red and a blue square for the
spatial questions, a green region for the box prompts."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aki.data import Sample, augment_sample, find_bboxes, mirror_text, plan_augment
from aki.data.records import qa_messages
from aki.prompts import REGION, short_answer_prompt, yes_no_prompt

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


def scene(size=(96, 64), red_x=10, blue_x=60) -> Image.Image:
    img = Image.new("RGB", size, (128, 128, 128))
    d = ImageDraw.Draw(img)
    d.rectangle((red_x, 20, red_x + 15, 35), fill=RED)
    d.rectangle((blue_x, 20, blue_x + 15, 35), fill=BLUE)
    return img


def centre_x(img: Image.Image, colour) -> float:
    a = np.asarray(img).astype(int)
    xs = np.nonzero(np.abs(a - np.array(colour)).sum(-1) < 30)[1]
    return float(xs.mean())


def texts(s: Sample) -> tuple[str, str]:
    return s.messages[0]["content"][-1]["text"], s.messages[1]["content"][0]["text"]


def draws(sample: Sample, stage: str = "sft", n: int = 40) -> list[Sample]:
    return [augment_sample(sample, stage, random.Random(k)) for k in range(n)]


def test_vsr_statement_stays_true_after_flips():
    s = Sample([scene()], qa_messages(yes_no_prompt("The red square is left of the blue square."), "yes"), source="vsr")
    before = texts(s)
    outs = draws(s)
    flipped = 0
    for o in outs:
        q, a = texts(o)
        assert a == "yes" and o.images[0].size == s.images[0].size  # no crop: a crop could cut a square
        red_left = centre_x(o.images[0], RED) < centre_x(o.images[0], BLUE)
        assert ("left of" in q) == red_left and ("right of" in q) == (not red_left)
        flipped += not red_left
    assert 0 < flipped < len(outs)
    assert texts(s) == before  # the input sample is never modified


def test_gqa_left_or_right_answer_follows_the_image():
    q = short_answer_prompt("Is the red square to the left or to the right of the blue square?")
    s = Sample([scene()], qa_messages(q, "left"), source="gqa")
    answers = set()
    for o in draws(s):
        q2, a = texts(o)
        truth = "left" if centre_x(o.images[0], RED) < centre_x(o.images[0], BLUE) else "right"
        assert a == truth
        assert "to the left or to the right" in q2 or "to the right or to the left" in q2
        answers.add(a)
    assert answers == {"left", "right"}


@pytest.mark.parametrize("question", ["Who wrote this book?", "What is the title of this book?",
                                      "What does the sign say?", "What time is shown on the clock?"])
def test_reading_and_clock_questions_are_never_mirrored_or_cropped(question):
    s = Sample([scene()], qa_messages(short_answer_prompt(question), "Ann"), source="ocrvqa")
    for o in draws(s, n=20):
        assert o.images[0].tobytes() == s.images[0].tobytes() and texts(o) == texts(s)
    assert plan_augment(s, "sft", random.Random(0)).why_no_flip == "text cannot be mirrored safely"


def region_sample(source: str) -> tuple[Sample, tuple[int, int, int, int]]:
    img = Image.new("RGB", (120, 80), (128, 128, 128))
    box = (12, 30, 42, 60)  # pixels, on the left
    ImageDraw.Draw(img).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=GREEN)
    from aki.data.tasks import region_prompt

    return Sample([img], qa_messages(region_prompt(box, 120, 80), "green box on the left"), source=source), box


@pytest.mark.parametrize("source", ["refcoco-unc", "my-regions", "refcoco"])
def test_region_boxes_are_never_cut_and_follow_the_image(source):
    """Decided from the ``<bbox>`` in the prompt, whatever the source is called."""
    s, box = region_sample(source)
    sizes, flips = set(), 0
    for o in draws(s, n=60):
        q, a = texts(o)
        assert q.startswith(REGION)
        (x1, y1, x2, y2), = find_bboxes(q)
        img = np.asarray(o.images[0]).astype(int)
        h, w = img.shape[:2]
        green = (np.abs(img - np.array(GREEN)).sum(-1) < 30)
        assert green.sum() == (box[2] - box[0]) * (box[3] - box[1])  # the region is whole
        inside = green[round(y1 * h):round(y2 * h), round(x1 * w):round(x2 * w)]
        assert inside.sum() >= 0.97 * green.sum()  # the rewritten box (3 decimals) still frames it
        on_left = (x1 + x2) / 2 < 0.5
        assert a == ("green box on the left" if on_left else "green box on the right")
        sizes.add((w, h))
        flips += not on_left
    assert len(sizes) > 5 and 0 < flips < 60  # cropped and flipped, but never across the box


def test_plain_attribute_questions_are_cropped_like_the_paper():
    s = Sample([scene()], qa_messages(short_answer_prompt("What color is the car?"), "red"), source="vqav2")
    sizes = {o.images[0].size for o in draws(s)}
    assert len(sizes) > 5
    for frac in (o.images[0].width * o.images[0].height / (96 * 64) for o in draws(s)):
        assert 0.45 <= frac <= 1.0


@pytest.mark.parametrize("question", ["How many squares are there?", "Is there a dog?",
                                      "What is in the top left corner?"])
def test_frame_dependent_questions_are_not_cropped(question):
    s = Sample([scene()], qa_messages(short_answer_prompt(question), "2"), source="x")
    assert {o.images[0].size for o in draws(s)} == {s.images[0].size}


def test_captions_flip_with_their_words_and_only_when_safe():
    ok = Sample([scene()], caption="A red square on the left and a blue square on the right.", source="pt")
    seen = set()
    for o in draws(ok, stage="pt"):
        red_left = centre_x(o.images[0], RED) < centre_x(o.images[0], BLUE)
        assert o.caption == ("A red square on the left and a blue square on the right." if red_left
                             else "A red square on the right and a blue square on the left.")
        assert o.images[0].size == ok.images[0].size  # no crop in pre-training (the paper)
        seen.add(red_left)
    assert seen == {True, False}
    sign = Sample([scene()], caption='A shop sign reading "OPEN" on the left.', source="pt")
    assert all(o.images[0].tobytes() == sign.images[0].tobytes() for o in draws(sign, stage="pt", n=20))


@pytest.mark.parametrize("text,expected", [
    ("The cup is to the left of the plate.", "The cup is to the right of the plate."),
    ("Left.", "Right."),
    ("He raises his RIGHT hand; the leftmost dog barks.", "He raises his LEFT hand; the rightmost dog barks."),
    ("the top-left corner", "the top-right corner"),
    ("That is the right answer.", None),
    ("The man left the room.", None),
    ("Which state is farthest east?", None),
    ("What is at [10, 20]?", None),
    ('It says "EXIT".', None),
])
def test_mirror_text(text, expected):
    assert mirror_text(text) == expected


def test_same_seed_same_augmentation():
    s, _ = region_sample("refcoco-unc")
    a = [augment_sample(s, "sft", random.Random(5)) for _ in range(2)]
    assert a[0].images[0].tobytes() == a[1].images[0].tobytes() and texts(a[0]) == texts(a[1])
