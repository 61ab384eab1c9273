"""Write a synthetic dataset: train (PT captions + SFT conversations) and test (CV-Bench/POPE-style)."""

from __future__ import annotations

import io
import json
import random
import shutil
from collections import Counter
from pathlib import Path

from aki.data.synth import questions as Q
from aki.data.synth.scenes import (
    COLOURS,
    MAX_OBJECTS,
    MIN_OBJECTS,
    SHAPES,
    SIZES,
    Scene,
    render,
    sample_scene,
    scene_seed,
)
from aki.data.synth.workers import parallel_map
from aki.prompts import LETTERS

CV_TASKS = {"Count": "2D", "Relation": "2D", "Depth": "3D", "Distance": "3D"}
SOURCES_2D = ("ADE20K", "COCO")
SOURCE_3D = "Omni3D"
POPE_CATEGORIES = ("random", "popular", "adversarial")
SFT_TASKS = ("Count", "Relation", "Depth", "Distance", "Attribute", "Existence")
FORMAT_VERSION = 2


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(_dump(r) + "\n")


def _scene_job(job: tuple[int, str, int, int, int]) -> tuple[Scene, bytes]:
    """Sample and render one scene (PNG bytes): a pure function of its arguments."""
    seed, split, index, attempt, image_size = job
    s = sample_scene(scene_seed(seed, split, index, attempt), f"{split}_{index:06d}", image_size)
    buf = io.BytesIO()
    render(s).save(buf, format="PNG", optimize=False, compress_level=6)
    return s, buf.getvalue()


def _make_scenes(
    seed: int, split: str, n: int, image_size: int, avoid: set[str], workers: int | None
) -> list[tuple[Scene, bytes]]:
    out = parallel_map(_scene_job, [(seed, split, i, 0, image_size) for i in range(n)], workers)
    for i, (s, _png) in enumerate(out):
        attempt = 0
        while s.signature() in avoid:  # never a test scene equal to a train scene
            attempt += 1
            out[i] = _scene_job((seed, split, i, attempt, image_size))
            s = out[i][0]
    return out


def _save_images(split_dir: Path, scenes: list[tuple[Scene, bytes]]) -> dict[str, bytes]:
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    (split_dir / "annotations").mkdir(parents=True, exist_ok=True)
    pngs = {}
    for s, data in scenes:
        pngs[s.scene_id] = data
        (split_dir / "images" / f"{s.scene_id}.png").write_bytes(data)
        (split_dir / "annotations" / f"{s.scene_id}.json").write_text(
            _dump(s.to_json()) + "\n", encoding="utf-8"
        )
    return pngs


def _image(s: Scene) -> str:
    return f"images/{s.scene_id}.png"


# ------------------------------------------------------------------------------------ train
def _conv(
    item_id: str, s: Scene, prompt: str, answer: str, task: str, fmt: str, extra: dict
) -> dict:
    return {
        "id": item_id,
        "image": _image(s),
        "conversations": [
            {"from": "human", "value": f"<image>\n{prompt}"},
            {"from": "gpt", "value": answer},
        ],
        "task": task,
        "format": fmt,
        "meta": extra,
    }


def _sft_items(s: Scene, rng: random.Random, stats: Q.ObjectStats, counter: Counter) -> list[dict]:
    rows = []

    def add(item: dict | None, family: str) -> None:
        if item is None:
            return
        k = len(rows)
        if rng.random() < 0.5 and item["choices"]:
            choices = item["choices"]
            letter = LETTERS[choices.index(item["answer"])]
            prompt, answer, fmt = Q.mc_prompt(item["question"], choices), letter, "mc"
        else:
            prompt, answer, fmt = Q.short_prompt(item["question"], rng), item["answer"], "short"
        meta = dict(
            item["meta"], question=item["question"], answer=item["answer"], choices=item["choices"]
        )
        rows.append(
            _conv(
                f"{s.scene_id}-{k}",
                s,
                prompt,
                answer,
                item["task"] if family != "Attribute" else f"Attribute/{item['task']}",
                fmt,
                meta,
            )
        )
        counter[f"{family}/{fmt}"] += 1

    add(Q.count_question(s, rng), "Count")
    add(Q.relation_question(s, rng), "Relation")
    add(Q.depth_question(s, rng), "Depth")
    add(Q.distance_question(s, rng), "Distance")
    add(Q.attribute_question(s, rng), "Attribute")
    # existence: one present object and one absent one (negative strategy cycles through POPE's three)
    present = sorted(set(Q.name_counts(s)))
    pos = rng.choice(present)
    strategy = POPE_CATEGORIES[counter["Existence/short"] // 2 % 3]
    neg = Q.negatives(s, strategy, 3, rng, stats)
    items = [(pos, "yes", "present")]
    if neg:
        items.append((rng.choice(neg), "no", strategy))
    rng.shuffle(items)
    for name, label, how in items:
        q = Q.existence_question(name)
        rows.append(
            _conv(f"{s.scene_id}-{len(rows)}", s, Q.short_prompt(q, rng), label, "Existence", "short",
                  {"object": name, "sampling": how, "question": q, "answer": label})
        )  # fmt: skip
        counter["Existence/short"] += 1
    return rows


def _write_train(out: Path, rendered: list[tuple[Scene, bytes]], seed: int, shard_size: int) -> dict:
    d = out / "train"
    pngs = _save_images(d, rendered)
    scenes = [s for s, _ in rendered]
    stats = Q.ObjectStats(scenes)
    counter: Counter = Counter()
    sft, pt = [], []
    for s in scenes:
        rng = random.Random(f"aki-synth/{seed}/train-text/{s.scene_id}")
        pt.append({"id": s.scene_id, "image": _image(s), "caption": Q.caption(s, rng)})
        sft.extend(_sft_items(s, rng, stats, counter))
    _write_jsonl(d / "sft.jsonl", sft)
    _write_jsonl(d / "pt.jsonl", pt)
    shards = _write_shards(d, pt, pngs, shard_size)
    return {
        "scenes": len(scenes),
        "pt_captions": len(pt),
        "pt_shards": shards,
        "sft_items": len(sft),
        "sft_per_task": dict(sorted(counter.items())),
    }


def _write_shards(d: Path, pt: list[dict], pngs: dict[str, bytes], shard_size: int) -> list[str]:
    try:
        import webdataset as wds
    except ImportError:  # pragma: no cover - webdataset is a dependency
        return []
    names = []
    for k in range(0, len(pt), shard_size):
        name = f"pt-{k // shard_size:06d}.tar"
        with open(d / name, "wb") as f, wds.TarWriter(f, encoder=False, mtime=0.0) as tw:
            for r in pt[k : k + shard_size]:
                tw.write(
                    {"__key__": r["id"], "png": pngs[r["id"]], "txt": r["caption"].encode("utf-8")}
                )
        names.append(name)
    return names


# ------------------------------------------------------------------------------------- test
def _write_test(out: Path, rendered: list[tuple[Scene, bytes]], seed: int, pope_per_image: int) -> dict:
    d = out / "test"
    _save_images(d, rendered)
    scenes = [s for s, _ in rendered]
    stats = Q.ObjectStats(scenes)  # POPE: popularity/co-occurrence within the evaluation set
    cv, pope, attrs = [], [], []
    per_task_seen: Counter = Counter()
    for s in scenes:
        rng = random.Random(f"aki-synth/{seed}/test-text/{s.scene_id}")
        for task, fn in Q.CV_BENCH_QUESTIONS:
            item = fn(s, rng, cv_style=True)
            if item is None:
                continue
            typ = CV_TASKS[task]
            source = SOURCES_2D[per_task_seen[task] % 2] if typ == "2D" else SOURCE_3D
            per_task_seen[task] += 1
            choices = item["choices"]
            cv.append(
                {
                    "idx": len(cv),
                    "type": typ,
                    "task": task,
                    "question": item["question"],
                    "choices": choices,
                    "answer": f"({LETTERS[choices.index(item['answer'])]})",
                    "prompt": Q.mc_prompt(item["question"], choices),
                    "source": source,
                    "image": _image(s),
                    "scene_id": s.scene_id,
                    "meta": item["meta"],
                }
            )
        # POPE: the same positives in every category, as many negatives as positives
        present = sorted(set(Q.name_counts(s)))
        pos = rng.sample(present, min(pope_per_image, len(present)))
        for cat in POPE_CATEGORIES:
            neg = Q.negatives(s, cat, len(pos), rng, stats)
            pairs = [(n, "yes") for n in pos] + [(n, "no") for n in neg]
            for name, label in pairs:
                pope.append(
                    {
                        "question_id": len(pope),
                        "image": _image(s),
                        "text": Q.existence_question(name),
                        "label": label,
                        "category": cat,
                        "object": name,
                        "scene_id": s.scene_id,
                    }
                )
        # open questions: attribute lookup (colour/shape/size) and counting
        for kind in ("colour", "shape", "size"):
            item = Q.attribute_question(s, rng, kind)
            if item is not None:
                attrs.append(_open_row(len(attrs), s, item))
        attrs.append(_open_row(len(attrs), s, Q.count_question(s, rng)))
    _write_jsonl(d / "cvbench.jsonl", cv)
    _write_jsonl(d / "pope.jsonl", pope)
    _write_jsonl(d / "attributes.jsonl", attrs)
    return {
        "scenes": len(scenes),
        "cvbench": dict(sorted(Counter(r["task"] for r in cv).items())),
        "cvbench_sources": dict(sorted(Counter(r["source"] for r in cv).items())),
        "cvbench_total": len(cv),
        "pope": {
            c: dict(sorted(Counter(r["label"] for r in pope if r["category"] == c).items()))
            for c in POPE_CATEGORIES
        },
        "pope_total": len(pope),
        "attributes": dict(sorted(Counter(r["task"] for r in attrs).items())),
        "attributes_total": len(attrs),
    }


def _open_row(qid: int, s: Scene, item: dict) -> dict:
    return {
        "question_id": qid,
        "image": _image(s),
        "task": item["task"].lower(),
        "question": item["question"],
        "prompt": Q.short_prompt(item["question"]),
        "answer": item["answer"],
        "scene_id": s.scene_id,
        "meta": item["meta"],
    }


# --------------------------------------------------------------------------------------- api
WRITTEN_ENTRIES = ("README.md", "metadata.json", "train", "test")
"""The top-level entries :func:`generate` writes; ``overwrite`` removes nothing else."""


class OutputNotEmptyError(FileExistsError):
    """The output folder already holds files: writing into it would mix two datasets."""


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` an empty folder, or refuse without touching anything.

    A used folder is refused unless ``overwrite``: the old seed's shards would otherwise stay
    next to the new ones (and a ``pt-*.tar`` glob would train on both). ``overwrite`` removes
    the old dataset first, and only a folder that holds nothing but what this writer writes.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a folder; choose a folder for --out.")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        out.mkdir(parents=True, exist_ok=True)
        return
    if not overwrite:
        raise OutputNotEmptyError(
            f"{out} is not empty ({len(entries)} entries, e.g. {entries[0]}), and writing into it would "
            "mix two datasets; choose an empty folder, or pass --overwrite to remove the old dataset first."
        )
    foreign = [e for e in entries if e not in WRITTEN_ENTRIES]
    if foreign:
        raise OutputNotEmptyError(
            f"{out} holds files that `aki data synth` did not write ({', '.join(foreign[:3])}), so "
            "--overwrite will not remove it; choose an empty folder or remove them yourself."
        )
    for e in entries:
        p = out / e
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def generate(
    out: str | Path,
    n_train: int = 2000,
    n_test: int = 500,
    seed: int = 0,
    image_size: int = 64,
    shard_size: int = 1000,
    pope_per_image: int = 3,
    overwrite: bool = False,
    workers: int | None = None,
) -> dict:
    """Generate the dataset under ``out``; returns the metadata (also written to ``metadata.json``).

    Same arguments -> byte-identical files (for any ``workers``). Train and test scenes come
    from disjoint seed streams, and a test scene whose annotation equals a train scene's is
    re-sampled. A non-empty ``out`` is refused (:class:`OutputNotEmptyError`) unless
    ``overwrite``, which removes the old dataset first.
    """
    from aki.data.synth import README_TEXT

    out = Path(out)
    prepare_output(out, overwrite)
    train_scenes = _make_scenes(seed, "train", n_train, image_size, set(), workers)
    test_scenes = _make_scenes(
        seed, "test", n_test, image_size, {s.signature() for s, _ in train_scenes}, workers
    )
    meta = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "image_size": image_size,
        "objects_per_scene": [MIN_OBJECTS, MAX_OBJECTS],
        "shapes": list(SHAPES),
        "colours": list(COLOURS),
        "sizes": list(SIZES),
        "cvbench_mapping": {
            t: {"type": ty, "sources": list(SOURCES_2D) if ty == "2D" else [SOURCE_3D]}
            for t, ty in CV_TASKS.items()
        },
        "paths": "image paths are relative to the directory of the file that names them",
        "train": _write_train(out, train_scenes, seed, shard_size) if n_train else {"scenes": 0},
        "test": _write_test(out, test_scenes, seed, pope_per_image) if n_test else {"scenes": 0},
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(README_TEXT.format(**_readme_fields(meta)), encoding="utf-8")
    return meta


def _readme_fields(meta: dict) -> dict:
    return {
        "seed": meta["seed"],
        "image_size": meta["image_size"],
        "n_train": meta["train"]["scenes"],
        "n_test": meta["test"]["scenes"],
        "counts": json.dumps({"train": meta["train"], "test": meta["test"]}, indent=2),
    }
