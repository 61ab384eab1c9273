"""The synthetic questions with the scene told in words: the text a decoder learns to answer first."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from aki.constants import IMAGE_TOKEN

CONVERSATIONS = ("question", "scene")
# The probe file of CV-Bench's own question wording (the synthetic test split's), never trained on.
TEST_WORDING_FILE = "heldout_test_wording.jsonl"


def write_text_data(data: str | Path, out: str | Path, held_out: int,
                    conversations: str = "question") -> tuple[int, int]:
    """``out/train/sft.jsonl`` and ``out/heldout.jsonl``: every SFT question of the ``aki data synth``
    folder ``data`` with its image replaced by the scene's caption (each object's size, colour, shape
    and coarse position, and the occlusion facts). The last ``held_out`` training scenes go to the
    held-out file only. Returns (training, held-out) question counts.

    ``conversations``: ``question`` writes one single-turn row per question (keeping ``task`` and
    ``format``); ``scene`` writes one multi-turn row per training scene, its caption once and then all
    its questions in an order shuffled per scene (seeded by the scene's name), with ``kinds`` (each
    question's ``task/format``), for ``data.turns: whole``: several answers trained per caption
    read. Unshuffled, the generator's fixed order taught which kind of question comes first, and
    single questions of the other kinds failed (docs/quickstart-lab.md, item 41). The held-out file always has one row per question."""
    if conversations not in CONVERSATIONS:
        raise ValueError(f"conversations must be one of {CONVERSATIONS}; got {conversations!r}")
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
            random.Random(scene).shuffle(questions)
            turns, kinds = [], []
            for k, (question, answer, kind) in enumerate(questions):
                # the caption where the first question had the image; later questions lose the marker
                text = question["value"].replace(IMAGE_TOKEN, captions[scene]) if k == 0 \
                    else question["value"].replace(IMAGE_TOKEN, "").lstrip("\n")
                turns += [{"from": question["from"], "value": text}, answer]
                kinds.append(kind)
            train.write(json.dumps({"id": scene, "conversations": turns, "kinds": kinds}) + "\n")
    return counts[0], counts[1]


def write_test_wording_questions(data: str | Path, out: str | Path, held_out: int) -> int:
    """``out/heldout_test_wording.jsonl``: for each of the last ``held_out`` training scenes of ``data``
    (the held-out scenes of :func:`write_text_data`), the CV-Bench questions (count, relation, depth,
    distance) in the wording and multiple-choice prompt of the synthetic test split, the image
    replaced by the scene's caption. For the probe only, never for training: the quickstart's SFT never
    sees this wording either, so the probe tells, in seconds, whether a decoder still answers an unseen
    wording with the letter the prompt asks for (lab item 42). Returns the question count."""
    from aki.data.synth import questions as Q
    from aki.data.synth.scenes import Scene
    from aki.prompts import LETTERS

    data, out = Path(data), Path(out)
    captions = _captions(data)
    scenes = sorted(captions)[len(captions) - held_out:]
    tasks = (("Count", Q.count_question), ("Relation", Q.relation_question), ("Depth", Q.depth_question),
             ("Distance", Q.distance_question))
    rows = []
    for scene_id in scenes:
        scene = Scene.from_json(json.loads((data / "train" / "annotations" / f"{scene_id}.json").read_text("utf-8")))
        rng = random.Random(f"aki-language/test-wording/{scene_id}")
        for task, question in tasks:
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
