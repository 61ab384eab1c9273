"""The synthetic questions with the scene told in words: the text a decoder learns to answer first."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from aki.constants import IMAGE_TOKEN
from aki.prompts import LETTERS, OPTION_LETTER, SHORT_ANSWER

CONVERSATIONS = ("question", "scene")
# Sentences put before questions by ``augment``, so that the answer format follows the instruction
# and the options rather than one question template. Generic on purpose: none is, or paraphrases,
# a benchmark's wording (lab item 42).
LEAD_INS = ("Look at the image.", "Here is a question about the picture.", "Think about the shapes in the scene.",
            "Use what you see.", "Read the scene carefully.", "A question about the objects shown.",
            "Look closely at the objects.", "Take a look at the picture.")
DRILL_KIND = "Drill/mc"
# The probe file of CV-Bench's own question wording (the synthetic test split's), never trained on.
TEST_WORDING_FILE = "heldout_test_wording.jsonl"


def write_text_data(data: str | Path, out: str | Path, held_out: int,
                    conversations: str = "question", augment: bool = False) -> tuple[int, int]:
    """``out/train/sft.jsonl`` and ``out/heldout.jsonl``: every SFT question of the ``aki data synth``
    folder ``data`` with its image replaced by the scene's caption (each object's size, colour, shape
    and coarse position, and the occlusion facts). The last ``held_out`` training scenes go to the
    held-out file only. Returns (training, held-out) question counts.

    ``conversations``: ``question`` writes one single-turn row per question (keeping ``task`` and
    ``format``); ``scene`` writes one multi-turn row per training scene, its caption once and then all
    its questions in an order shuffled per scene (seeded by the scene's name), with ``kinds`` (each
    question's ``task/format``), for ``data.turns: whole``: several answers trained per caption
    read. Unshuffled, the generator's fixed order taught which kind of question comes first, and
    single questions of the other kinds failed (docs/quickstart-lab.md, item 41). ``augment`` (scene
    conversations only) adds one :func:`option_drill` turn per scene (kind ``Drill/mc``) and a generic
    lead-in (:data:`LEAD_INS`) before about half of the questions: measured, the decoder then answers
    the test split's wording, which it never sees, with a letter (lab item 42). The held-out file always
    has one row per question, never augmented."""
    if conversations not in CONVERSATIONS:
        raise ValueError(f"conversations must be one of {CONVERSATIONS}; got {conversations!r}")
    if augment and conversations != "scene":
        raise ValueError("augment adds turns to a scene's conversation: it needs conversations='scene'")
    data, out = Path(data), Path(out)
    captions = _captions(data)
    scenes = sorted(captions)
    if not 0 < held_out < len(scenes):
        raise ValueError(f"{data} has {len(scenes)} training scenes; holding out {held_out} leaves "
                         "none to train on or none to score: hold out at least 1 and fewer than all.")
    test_scenes = set(scenes[len(scenes) - held_out:])
    (out / "train").mkdir(parents=True, exist_ok=True)
    counts = [0, 0]
    per_scene: dict[str, list[tuple[dict, dict, str]]] = {}
    with open(data / "train" / "sft.jsonl", encoding="utf-8") as f, \
            open(out / "train" / "sft.jsonl", "w", encoding="utf-8") as train, \
            open(out / "heldout.jsonl", "w", encoding="utf-8") as test:
        for line in f:
            rec = json.loads(line)
            scene = Path(rec["image"]).stem
            held = scene in test_scenes
            counts[held] += 1
            if conversations == "scene" and not held:
                per_scene.setdefault(scene, []).append((*rec["conversations"], _key(rec)))
                continue
            turns = [dict(t) for t in rec["conversations"]]
            turns[0]["value"] = turns[0]["value"].replace(IMAGE_TOKEN, captions[scene])
            row = {"id": rec["id"], "conversations": turns, "task": rec["task"], "format": rec["format"]}
            (test if held else train).write(json.dumps(row) + "\n")
        for scene, questions in per_scene.items():
            turns, kinds = _scene_conversation(scene, questions, captions[scene], augment)
            train.write(json.dumps({"id": scene, "conversations": turns, "kinds": kinds}) + "\n")
    return counts[0], counts[1]


def _scene_conversation(scene: str, questions: list[tuple[dict, dict, str]], caption: str,
                        augment: bool) -> tuple[list[dict], list[str]]:
    """One scene's questions as one conversation, shuffled, the caption in the first turn; with
    ``augment``, one letter drill turn (never before the caption) and a lead-in before about half
    of the questions. Each random choice has its own stream, seeded by the scene's name."""
    random.Random(scene).shuffle(questions)
    turns, kinds = [], []
    for k, (question, answer, kind) in enumerate(questions):
        # the caption where the first question had the image; later questions lose the marker
        text = question["value"].replace(IMAGE_TOKEN, caption) if k == 0 \
            else question["value"].replace(IMAGE_TOKEN, "").lstrip("\n")
        turns += [{"from": question["from"], "value": text}, answer]
        kinds.append(kind)
    if not augment:
        return turns, kinds
    rng = random.Random(f"drill-{scene}")
    drill = option_drill(rng)
    k = rng.randrange(1, len(kinds) + 1)
    turns[2 * k:2 * k] = drill
    kinds.insert(k, DRILL_KIND)
    rng = random.Random(f"pre-{scene}")  # "drill-", "pre-": the streams of the lab run (item 42)
    for k, turn in enumerate(turns[0::2]):
        if rng.random() < 0.5:
            if k == 0:
                caption_line, rest = turn["value"].split("\n", 1)
                turn["value"] = f"{caption_line}\n{_with_lead_in(rest, rng)}"
            else:
                turn["value"] = _with_lead_in(turn["value"], rng)
    return turns, kinds


def option_drill(rng: random.Random) -> list[dict]:
    """A multiple-choice turn that only asks to pick the letter of a named option ("Which option is
    blue?"), over an option list of a kind the synthetic questions use: the answer-format skill alone,
    which the decoder otherwise has to find inside every multiple-choice question."""
    from aki.data.synth.questions import all_names, mc_prompt
    from aki.data.synth.scenes import COLOURS, SHAPES, SIZES

    kind = rng.choice(["colour", "shape", "size", "number", "left-right", "above-below", "name"])
    if kind == "colour":
        options = rng.sample(list(COLOURS), 4)
    elif kind == "shape":
        options = rng.sample(list(SHAPES), 4)
    elif kind == "size":
        options = list(SIZES)
    elif kind == "number":
        start = rng.randint(0, 5)
        options = [str(n) for n in range(start, start + 4)]
    elif kind == "left-right":
        options = ["left", "right"]
    elif kind == "above-below":
        options = ["above", "below"]
    else:
        options = rng.sample(all_names(), 2)
    rng.shuffle(options)
    target = rng.choice(options)
    question = rng.choice([f"Which option is {target}?", f"Which of the options says {target}?"])
    return [{"from": "human", "value": mc_prompt(question, options)},
            {"from": "gpt", "value": LETTERS[options.index(target)]}]


def _with_lead_in(prompt: str, rng: random.Random) -> str:
    """``prompt`` with a generic lead-in sentence before its question (after a leading instruction)."""
    lead_in = rng.choice(LEAD_INS)
    for instruction in (OPTION_LETTER, SHORT_ANSWER):
        if prompt.startswith(instruction + " "):
            return f"{instruction} {lead_in} {prompt[len(instruction) + 1:]}"
    return f"{lead_in} {prompt}"


def write_test_wording_questions(data: str | Path, out: str | Path, held_out: int) -> int:
    """``out/heldout_test_wording.jsonl``: for each of the last ``held_out`` training scenes of ``data``
    (the held-out scenes of :func:`write_text_data`), the CV-Bench questions (count, relation, depth,
    distance) in the wording and multiple-choice prompt of the synthetic test split, the image
    replaced by the scene's caption. For the probe only, never for training: the quickstart's SFT never
    sees this wording either, so the probe tells, in seconds, whether a decoder still answers an unseen
    wording with the letter the prompt asks for (lab item 42). Returns the question count."""
    from aki.data.synth import questions as Q
    from aki.data.synth.scenes import Scene

    data, out = Path(data), Path(out)
    captions = _captions(data)
    scenes = sorted(captions)[len(captions) - held_out:]
    rows = []
    for scene_id in scenes:
        scene = Scene.from_json(json.loads((data / "train" / "annotations" / f"{scene_id}.json").read_text("utf-8")))
        rng = random.Random(f"aki-language/test-wording/{scene_id}")
        for task, question in Q.CV_BENCH_QUESTIONS:
            item = question(scene, rng, cv_style=True)
            if item is None:
                continue
            prompt = f"{captions[scene_id]}\n{Q.mc_prompt(item['question'], item['choices'])}"
            answer = LETTERS[item["choices"].index(item["answer"])]
            rows.append({"id": f"{scene_id}-{task}", "task": task, "format": "mc",
                         "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]})
    random.Random(0).shuffle(rows)  # a probe of the first n rows covers every task
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{TEST_WORDING_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    tmp.replace(out / TEST_WORDING_FILE)  # complete or absent
    return len(rows)


def answer_prior(train: str | Path, heldout: str | Path, n_items: int | None = None) -> dict[str, float]:
    """Accuracy (%) per ``task/format`` of always giving the most frequent training answer: the level
    a decoder reaches without reading the scene. Scored on the first ``n_items`` held-out rows."""
    answers: dict[str, Counter] = defaultdict(Counter)
    for rec in _rows(train):
        # a scene's conversation (``kinds``, one ``task/format`` per question) or a single question
        kinds = rec.get("kinds") or [_key(rec)]
        for kind, answer in zip(kinds, rec["conversations"][1::2], strict=True):
            answers[kind][answer["value"].strip()] += 1
    right: Counter = Counter()
    total: Counter = Counter()
    for rec in _rows(heldout, n_items):
        key = _key(rec)
        guess = answers[key].most_common(1)[0][0] if answers[key] else None
        right[key] += rec["conversations"][1]["value"].strip() == guess
        total[key] += 1
    return {k: round(100 * right[k] / total[k], 1) for k in sorted(total)}


def _captions(data: Path) -> dict[str, str]:
    """Each training scene's caption, by scene id."""
    captions: dict[str, str] = {}
    with open(data / "train" / "pt.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            captions[Path(rec["image"]).stem] = rec["caption"]
    return captions


def _key(rec: dict) -> str:
    return f"{rec['task']}/{rec['format']}"


def _rows(path: str | Path, limit: int | None = None):
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                return
            yield json.loads(line)
