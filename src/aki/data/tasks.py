"""Readers for the on-disk formats of the paper's SFT sets, with the paper's task prompts.

Each function takes the data set's folder as released and returns a :class:`RecordSource` of
single-turn samples whose user text is the paper's prompt (official-aki.md, "Task prompts").
Annotations are parsed up front (they are small next to the images); images load lazily.

Every reader takes ``image_root``: the folder its images are in (absolute, or relative to the
data set's folder), so images shared between sets (COCO) are stored once. docs/data.md lists
each set's files and its default image folder.
"""

from __future__ import annotations

import json
import pickle
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aki.data.boxes import format_bbox
from aki.data.readers import RecordSource, sft_llava
from aki.data.records import BadRecord, Sample, load_image, qa_messages
from aki.prompts import LETTERS, REGION, options_prompt, short_answer_prompt, yes_no_prompt


def bbox_text(box: Sequence[float], width: float, height: float) -> str:
    """``[x1, y1, x2, y2]`` in pixels -> ``<bbox>[x1, y1][x2, y2]</bbox>``, normalised, 3 decimals."""
    if width <= 0 or height <= 0:
        raise BadRecord(f"image size must be positive, got {width}x{height}", "malformed")
    x1, y1, x2, y2 = (float(v) for v in box)
    return format_bbox((x1 / width, y1 / height, x2 / width, y2 / height))


def region_prompt(box: Sequence[float], width: float, height: float) -> str:
    """RefCOCO / RefCOCO+ / RefCOCOg / Visual Genome prompt."""
    return f"{REGION} {bbox_text(box, width, height)}"


def _qa_source(name: str, entries: list[Any]) -> RecordSource:
    """Entries ``(image path, question prompt, answer)`` -> single-turn samples."""

    def build(entry: tuple[Path, str, str]) -> Sample:
        image, prompt, answer = entry
        return Sample(images=[load_image(image)], messages=qa_messages(prompt, answer))

    return RecordSource(name, entries, build, image_files=lambda e: [e[0]])


def _image_root(root: Path, image_root: str | Path | None, default: str) -> Path:
    """``image_root`` (absolute, or relative to the data set's ``root``), else ``root/default``."""
    p = Path(image_root) if image_root is not None else Path(default)
    return p if p.is_absolute() else root / p


def _load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _safe(fn, *args) -> Any:
    """Build one entry; a malformed annotation becomes a BadRecord entry (counted when drawn)."""
    try:
        return fn(*args)
    except BadRecord as err:
        return err
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        return BadRecord(f"malformed annotation: {type(err).__name__}: {err}", "malformed")


# -- open-ended VQA ------------------------------------------------------------------------------


def vqav2(root: str | Path, split: str = "train2014", image_root: str | Path | None = None,
          name: str = "vqav2") -> RecordSource:
    """VQAv2: ``v2_OpenEnded_mscoco_{split}_questions.json`` + ``v2_mscoco_{split}_annotations.json``;
    images ``{image_root}/COCO_{split}_{image_id:012d}.jpg`` (default image_root: ``{split}``, the
    COCO folder); target = ``multiple_choice_answer``."""
    root = Path(root)
    images = _image_root(root, image_root, split)
    questions = _load_json(root / f"v2_OpenEnded_mscoco_{split}_questions.json")["questions"]
    answers = {a["question_id"]: a for a in _load_json(root / f"v2_mscoco_{split}_annotations.json")["annotations"]}

    def entry(q: dict) -> tuple[Path, str, str]:
        ann = answers[q["question_id"]]
        image = images / f"COCO_{split}_{int(q['image_id']):012d}.jpg"
        return image, short_answer_prompt(q["question"]), str(ann["multiple_choice_answer"])

    return _qa_source(name, [_safe(entry, q) for q in questions])


def gqa(root: str | Path, questions: str = "train_balanced_questions.json", image_root: str | Path | None = None,
        name: str = "gqa") -> RecordSource:
    """GQA: a questions JSON ``{qid: {"imageId", "question", "answer"}}``; images
    ``{image_root}/{imageId}.jpg`` (default ``images``)."""
    root = Path(root)
    data = _load_json(root / questions)
    images = _image_root(root, image_root, "images")

    def entry(q: dict) -> tuple[Path, str, str]:
        return images / f"{q['imageId']}.jpg", short_answer_prompt(q["question"]), str(q["answer"])

    return _qa_source(name, [_safe(entry, data[k]) for k in sorted(data)])


def vsr(root: str | Path, file: str = "train.jsonl", image_root: str | Path | None = None,
        name: str = "vsr") -> RecordSource:
    """VSR: JSONL ``{"image", "caption", "label"}``; the caption is the statement asked about and
    the target is ``yes`` (label 1) or ``no`` (label 0); images ``{image_root}/{image}`` (default
    ``images``; VSR's images are COCO 2017 files)."""
    root = Path(root)
    lines = (root / file).read_text(encoding="utf-8").splitlines()
    images = _image_root(root, image_root, "images")

    def entry(line: str) -> tuple[Path, str, str]:
        rec = json.loads(line)
        label = int(rec["label"])
        if label not in (0, 1):
            raise BadRecord(f"VSR label must be 0 or 1, got {label}", "malformed")
        return images / rec["image"], yes_no_prompt(rec["caption"]), "yes" if label else "no"

    return _qa_source(name, [_safe(entry, ln) for ln in lines if ln.strip()])


def ocrvqa(root: str | Path, file: str = "dataset.json", splits: Sequence[int] = (1,),
           image_root: str | Path | None = None, name: str = "ocrvqa") -> RecordSource:
    """OCR-VQA: ``dataset.json`` ``{id: {"imageURL", "questions", "answers", "split"}}`` (split 1 =
    train); one sample per question; images ``{image_root}/{id}{ext of imageURL}`` (default
    ``images``)."""
    root = Path(root)
    data = _load_json(root / file)
    images = _image_root(root, image_root, "images")
    entries: list[Any] = []
    for key in sorted(data):
        rec = data[key]
        try:
            if int(rec.get("split", 1)) not in splits:
                continue
            ext = Path(str(rec.get("imageURL", ".jpg"))).suffix or ".jpg"
            qs, ans = rec["questions"], rec["answers"]
            if len(qs) != len(ans):
                raise BadRecord(f"OCR-VQA {key}: {len(qs)} questions, {len(ans)} answers", "malformed")
            image = images / f"{key}{ext}"
            entries.extend((image, short_answer_prompt(q), str(a)) for q, a in zip(qs, ans, strict=True))
        except BadRecord as err:
            entries.append(err)
        except (KeyError, TypeError, ValueError) as err:
            entries.append(BadRecord(f"OCR-VQA {key}: {err}", "malformed"))
    return _qa_source(name, entries)


# -- multiple choice -----------------------------------------------------------------------------


def shuffled_options(choices: Sequence[str], correct: int, seed: int, key: Any) -> tuple[list[str], str]:
    """Options in a seeded random order (per record, independent of reading order) and the
    letter of the correct one."""
    rng = random.Random(f"{seed}:{key}")
    order = list(range(len(choices)))
    rng.shuffle(order)
    return [choices[i] for i in order], LETTERS[order.index(correct)]


def aokvqa(root: str | Path, file: str = "aokvqa_v1p0_train.json", image_root: str | Path | None = None,
           seed: int = 0, name: str = "aokvqa") -> RecordSource:
    """A-OKVQA: a JSON list of ``{"question_id", "image_id", "question", "choices",
    "correct_choice_idx"}``; options shuffled with a seeded RNG; target = the letter; COCO 2017
    images ``{image_root}/{image_id:012d}.jpg`` (default ``train2017``)."""
    root = Path(root)
    images = _image_root(root, image_root, "train2017")

    def entry(q: dict) -> tuple[Path, str, str]:
        choices = [str(c) for c in q["choices"]]
        correct = int(q["correct_choice_idx"])
        if not 0 <= correct < len(choices) or len(choices) > len(LETTERS):
            raise BadRecord(f"A-OKVQA {q.get('question_id')}: bad correct_choice_idx", "malformed")
        options, letter = shuffled_options(choices, correct, seed, q["question_id"])
        image = images / f"{int(q['image_id']):012d}.jpg"
        return image, options_prompt(q["question"], options), letter

    return _qa_source(name, [_safe(entry, q) for q in _load_json(root / file)])


def scienceqa(root: str | Path, file: str = "problems.json", split: str = "train",
              image_root: str | Path | None = None, require_image: bool = True,
              name: str = "scienceqa") -> RecordSource:
    """ScienceQA: ``problems.json`` ``{pid: {"question", "choices", "answer", "hint", "image", "split"}}``;
    the hint is the ``Context:``; images ``{image_root}/{split}/{pid}/{image}`` (default ``images``).
    Text-only problems are left out unless ``require_image=False``."""
    root = Path(root)
    data = _load_json(root / file)
    image_dir = _image_root(root, image_root, "images")
    entries: list[Any] = []

    def entry(pid: str, q: dict) -> tuple[list[Path], str, str]:
        choices = [str(c) for c in q["choices"]]
        correct = int(q["answer"])
        if not 0 <= correct < len(choices):
            raise BadRecord(f"ScienceQA {pid}: answer index out of range", "malformed")
        images = [image_dir / split / pid / q["image"]] if q.get("image") else []
        return images, options_prompt(q["question"], choices, q.get("hint")), LETTERS[correct]

    for pid in sorted(data):
        q = data[pid]
        if not isinstance(q, dict) or q.get("split", split) != split or (require_image and not q.get("image")):
            continue
        entries.append(_safe(entry, pid, q))

    def build(e: tuple[list[Path], str, str]) -> Sample:
        images, prompt, answer = e
        return Sample(images=[load_image(p) for p in images], messages=qa_messages(prompt, answer, len(images)))

    return RecordSource(name, entries, build, image_files=lambda e: list(e[0]))


# -- grounded captioning -------------------------------------------------------------------------


def _load_refs(folder: Path, split_by: str) -> list[dict]:
    """``refs({split_by}).json`` when present, else the released pickle ``refs({split_by}).p``
    (a pickle runs code when loaded: only read released annotation files you trust)."""
    js = folder / f"refs({split_by}).json"
    if js.exists():
        return _load_json(js)
    with open(folder / f"refs({split_by}).p", "rb") as fh:
        return pickle.load(fh)  # the data set's own format


def refcoco(root: str | Path, dataset: str = "refcoco", split_by: str | None = None, split: str = "train",
            image_root: str | Path | None = None, name: str | None = None) -> RecordSource:
    """RefCOCO / RefCOCO+ / RefCOCOg (``dataset``) as released: ``{dataset}/refs({split_by}).p`` and
    ``{dataset}/instances.json`` (COCO boxes ``[x, y, w, h]``); one sample per referring sentence:
    the region prompt with the normalised box, target = the sentence; COCO 2014 train images
    ``{image_root}/{file_name}`` (default ``images``)."""
    root = Path(root)
    images = _image_root(root, image_root, "images")
    split_by = split_by or {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}.get(dataset, "unc")
    folder = root / dataset
    refs = _load_refs(folder, split_by)
    inst = _load_json(folder / "instances.json")
    anns = {a["id"]: a for a in inst["annotations"]}
    imgs = {i["id"]: i for i in inst["images"]}
    entries: list[Any] = []
    for ref in refs:
        if ref.get("split") != split:
            continue
        try:
            ann, img = anns[ref["ann_id"]], imgs[ref["image_id"]]
            x, y, w, h = ann["bbox"]
            prompt = region_prompt((x, y, x + w, y + h), img["width"], img["height"])
            image = images / img["file_name"]
            for sent in ref["sentences"]:
                text = sent.get("sent", sent.get("raw", "")) if isinstance(sent, dict) else str(sent)
                entries.append((image, prompt, text.strip()) if text.strip() else
                               BadRecord(f"ref {ref.get('ref_id')}: empty sentence", "malformed"))
        except BadRecord as err:
            entries.append(err)
        except (KeyError, TypeError, ValueError) as err:
            entries.append(BadRecord(f"ref {ref.get('ref_id')}: {type(err).__name__}: {err}", "malformed"))
    return _qa_source(name or dataset, entries)


def visual_genome(root: str | Path, regions: str = "region_descriptions.json",
                  image_data: str = "image_data.json",
                  image_root: str | Path | Sequence[str | Path] = ("VG_100K", "VG_100K_2"),
                  name: str = "vg") -> RecordSource:
    """Visual Genome regions: ``region_descriptions.json`` (per image, regions with ``x, y, width,
    height, phrase``) and ``image_data.json`` (image sizes); one sample per region; images
    ``{image_root}/{image_id}.jpg``, where ``image_root`` may list several folders (default
    ``VG_100K`` and ``VG_100K_2``, the two parts of the release)."""
    root = Path(root)
    roots = [image_root] if isinstance(image_root, str | Path) else list(image_root)
    image_dirs = [_image_root(root, r, "") for r in roots]
    sizes = {d["image_id"]: (d["width"], d["height"]) for d in _load_json(root / image_data)}
    entries: list[Any] = []
    for item in _load_json(root / regions):
        for reg in item.get("regions", []):
            try:
                iid = reg.get("image_id", item.get("id"))
                w, h = sizes[iid]
                box = (reg["x"], reg["y"], reg["x"] + reg["width"], reg["y"] + reg["height"])
                phrase = str(reg["phrase"]).strip()
                if not phrase:
                    raise BadRecord(f"VG region {reg.get('region_id')}: empty phrase", "malformed")
                image = next((d / f"{iid}.jpg" for d in image_dirs if (d / f"{iid}.jpg").exists()),
                             image_dirs[0] / f"{iid}.jpg")
                entries.append((image, region_prompt(box, w, h), phrase))
            except BadRecord as err:
                entries.append(err)
            except (KeyError, TypeError, ValueError) as err:
                entries.append(BadRecord(f"VG region: {type(err).__name__}: {err}", "malformed"))
    return _qa_source(name, entries)


def llava150k(root: str | Path, file: str = "llava_instruct_150k.json", image_root: str | Path | None = None,
              turns: str = "split", name: str = "llava150k") -> RecordSource:
    """LLaVA-Instruct-150k: the LLaVA conversation file; COCO 2017 images ``{image_root}/{image}``
    (default ``train2017``); with ``turns="split"`` every human/gpt pair is its own sample with
    the image (the paper)."""
    root = Path(root)
    return sft_llava(root / file, image_root=_image_root(root, image_root, "train2017"), turns=turns, name=name)


# Paper Table 5: the SFT mixture's sampling weights.
TABLE5_WEIGHTS: dict[str, float] = {
    "vqav2": 0.103, "gqa": 0.103, "vsr": 0.026, "ocrvqa": 0.103, "aokvqa": 0.103, "scienceqa": 0.103,
    "refcoco": 0.103, "refcoco+": 0.103, "refcocog": 0.103, "vg": 0.047, "llava150k": 0.103,
}

FORMATS = {
    "vqav2": vqav2, "gqa": gqa, "vsr": vsr, "ocrvqa": ocrvqa, "aokvqa": aokvqa, "scienceqa": scienceqa,
    "refcoco": refcoco, "visual_genome": visual_genome, "llava150k": llava150k,
}
"""Task readers by format name (configs: ``format: vqav2``); RefCOCO+/g use ``refcoco`` with
``dataset: refcoco+``."""
