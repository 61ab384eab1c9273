"""Synthetic scenes: determinism, disjoint splits, and every answer re-derived independently."""

from __future__ import annotations

import json
import math
import re
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from aki.data.synth.writer import generate

COLOURS = ["red", "green", "blue", "yellow", "purple"]
SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
NAME_RE = re.compile(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")
MC_HEAD = "Answer with the option's letter from the given choices directly. "
SHORT_HEAD = "Answer the question using a single word or phrase. "
SHORT_TAIL = "\nAnswer the question using a single word or phrase."


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    generate(out, n_train=80, n_test=40, seed=7, shard_size=50)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_deterministic_bytes(dataset, tmp_path):
    again = tmp_path / "b"  # in one process (the fixture renders in worker processes)
    generate(again, n_train=80, n_test=40, seed=7, shard_size=50, workers=1)
    a, b = _files(dataset), _files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    other = tmp_path / "c"
    generate(other, n_train=5, n_test=0, seed=8)
    assert (other / "train/images/train_000000.png").read_bytes() != a[
        "train/images/train_000000.png"
    ]


def test_layout_and_metadata(dataset):
    for rel in ["README.md", "metadata.json", "train/sft.jsonl", "train/pt.jsonl", "train/pt-000000.tar",
                "train/pt-000001.tar", "test/cvbench.jsonl", "test/pope.jsonl", "test/attributes.jsonl"]:  # fmt: skip
        assert (dataset / rel).is_file(), rel
    meta = json.loads((dataset / "metadata.json").read_text())
    sft = _jsonl(dataset / "train/sft.jsonl")
    cv = _jsonl(dataset / "test/cvbench.jsonl")
    assert meta["train"]["sft_items"] == len(sft)
    assert sum(meta["train"]["sft_per_task"].values()) == len(sft)
    assert meta["test"]["cvbench"] == dict(Counter(r["task"] for r in cv))
    assert meta["cvbench_mapping"]["Depth"]["type"] == "3D"
    readme = (dataset / "README.md").read_text()
    assert "ADE20K" in readme and "Omni3D" in readme
    img = Image.open(dataset / "train/images/train_000000.png")
    assert img.size == (64, 64) and img.mode == "RGB"
    # both formats are present in SFT
    assert {r["format"] for r in sft} == {"short", "mc"}


def _signature(ann: dict) -> str:
    return json.dumps(
        sorted(
            (o["shape"], o["colour"], o["size"], o["bbox"], o["draw_order"]) for o in ann["objects"]
        )
    )


def test_train_test_disjoint(dataset):
    train = [json.loads(p.read_text()) for p in (dataset / "train/annotations").glob("*.json")]
    test = [json.loads(p.read_text()) for p in (dataset / "test/annotations").glob("*.json")]
    assert len(train) == 80 and len(test) == 40
    assert not {a["seed"] for a in train} & {a["seed"] for a in test}
    assert not {_signature(a) for a in train} & {_signature(a) for a in test}
    train_png = {p.read_bytes() for p in (dataset / "train/images").glob("*.png")}
    assert not any(p.read_bytes() in train_png for p in (dataset / "test/images").glob("*.png"))


# ------------------------------------------------------------------ independent answer checker
def _annotation(jsonl_dir: Path, image: str) -> dict:
    return json.loads(
        (jsonl_dir / image.replace("images/", "annotations/").replace(".png", ".json")).read_text()
    )


def _find(ann: dict, colour: str | None = None, shape: str | None = None,
          size: str | None = None) -> dict:
    want = {"colour": colour, "shape": shape, "size": size}
    hits = [o for o in ann["objects"] if all(v is None or o[k] == v for k, v in want.items())]
    assert len(hits) == 1, f"reference {size} {colour} {shape} is not unique: {len(hits)}"
    return hits[0]


def _names(question: str) -> list[tuple[str, str]]:
    return NAME_RE.findall(question)


def derive(question: str, ann: dict) -> str:
    """The answer to a question, computed from the annotation without the generator's code."""
    size = ann["image_size"]
    q = question
    m = re.match(
        r"(?:How many|Count the) (.+?) (?:are there\?|are in the image\?|in the image\.)", q
    )
    if m:
        words = [
            w[:-2] if w.endswith("es") and w[:-2] in SHAPES else w.removesuffix("s")
            for w in m.group(1).split()
        ]
        if words[-1] == "object":
            match = {"colour": words[0]}
        elif len(words) == 2:
            match = {"colour": words[0], "shape": words[1]}
        else:
            match = {"shape": words[0]}
        return str(sum(all(o[k] == v for k, v in match.items()) for o in ann["objects"]))
    m = re.match(r"Is there a (\w+) (\w+) in the image\?", q)
    if m:
        present = any(
            o["colour"] == m.group(1) and o["shape"] == m.group(2) for o in ann["objects"]
        )
        return "yes" if present else "no"
    m = re.match(r"What (?:colour is|is the colour of) the (?:(small|large) )?(\w+)\?", q)
    if m:
        return _find(ann, shape=m.group(2), size=m.group(1))["colour"]
    m = re.match(r"What (?:shape is|is the shape of) the (?:(small|large) )?(\w+) object\?", q)
    if m:
        return _find(ann, colour=m.group(2), size=m.group(1))["shape"]
    names = _names(q)
    objs = [_find(ann, c, s) for c, s in names]
    if "small or large" in q:
        return objs[0]["size"]
    if "left" in q or "right" in q or "above" in q or "below" in q or "relative positions" in q:
        a, b = objs[:2]
        rels = []
        if a["bbox"][2] <= b["bbox"][0]:
            rels.append("left")
        if b["bbox"][2] <= a["bbox"][0]:
            rels.append("right")
        if a["bbox"][3] <= b["bbox"][1]:
            rels.append("above")
        if b["bbox"][3] <= a["bbox"][1]:
            rels.append("below")
        if "left" in q or "right" in q:
            rels = [r for r in rels if r in ("left", "right")]
        elif "above" in q or "below" in q:
            rels = [r for r in rels if r in ("above", "below")]
        assert len(rels) >= 1
        return "|".join(rels)  # CV-Bench style may allow an axis; the choices pick one
    if "camera" in q or "in front" in q or "nearer to the viewer" in q:
        a, b = objs[:2]
        front, back = (a, b) if a["depth_rank"] < b["depth_rank"] else (b, a)
        # the nearer object really hides part of the farther one (visible occlusion)
        occ = {(f, bk): px for f, bk, px in ann["occlusions"]}
        assert occ.get((front["id"], back["id"]), 0) >= 0.05 * back["area"]
        fx0, fy0, fx1, fy1 = front["bbox"]
        bx0, by0, bx1, by1 = back["bbox"]
        assert fx0 < bx1 and bx0 < fx1 and fy0 < by1 and by0 < fy1
        return f"{front['colour']} {front['shape']}"
    if "closer to the" in q or "nearer to the" in q:
        c, a, b = objs[:3]
        da, db = math.dist(a["centre"], c["centre"]), math.dist(b["centre"], c["centre"])
        near, dn, df = (a, da, db) if da < db else (b, db, da)
        assert dn <= 0.75 * df and df - dn >= 0.1 * size
        return f"{near['colour']} {near['shape']}"
    raise AssertionError(f"unrecognised question: {q}")


def _split_prompt(value: str) -> tuple[str, list[str] | None]:
    if value.startswith(MC_HEAD):
        body = value[len(MC_HEAD) :]
        question, opts = body.split("\nOptions:\n")
        assert opts.endswith("\n")  # the official format: every option line ends with a newline
        choices = []
        for k, line in enumerate(opts[:-1].split("\n")):
            assert line.startswith(f"{'ABCDEF'[k]}. ")
            choices.append(line[3:])
        return question, choices
    if value.startswith(SHORT_HEAD):  # the release's short-answer prompt
        return value[len(SHORT_HEAD) :], None
    assert value.endswith(SHORT_TAIL), value  # LLaVA's evaluation form
    return value[: -len(SHORT_TAIL)], None


def _check(answer_given: str, derived: str, choices: list[str] | None, letter_style: str) -> None:
    allowed = derived.split("|")
    if choices is None:
        assert answer_given in allowed
        return
    hits = [c for c in choices if c in allowed]
    assert len(hits) == 1, (choices, allowed)
    assert len(set(choices)) == len(choices)
    letter = "ABCDEF"[choices.index(hits[0])]
    assert answer_given == (f"({letter})" if letter_style == "paren" else letter)


def test_sft_answers(dataset):
    rows = _jsonl(dataset / "train/sft.jsonl")
    assert len({r["id"] for r in rows}) == len(rows)
    tasks = Counter()
    for r in rows:
        human, gpt = r["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].startswith("<image>\n") and human["value"].count("<image>") == 1
        assert (dataset / "train" / r["image"]).is_file()
        question, choices = _split_prompt(human["value"][len("<image>\n") :])
        ann = _annotation(dataset / "train", r["image"])
        _check(gpt["value"], derive(question, ann), choices, "bare")
        tasks[r["task"].split("/")[0]] += 1
    assert set(tasks) == {"Count", "Relation", "Depth", "Distance", "Attribute", "Existence"}


def test_cvbench_file(dataset):
    rows = _jsonl(dataset / "test/cvbench.jsonl")
    assert [r["idx"] for r in rows] == list(range(len(rows)))
    seen = Counter()
    for r in rows:
        assert (
            r["type"]
            == {"Count": "2D", "Relation": "2D", "Depth": "3D", "Distance": "3D"}[r["task"]]
        )
        if r["type"] == "2D":
            assert r["source"] == ("ADE20K", "COCO")[seen[r["task"]] % 2]
            seen[r["task"]] += 1
        else:
            assert r["source"] == "Omni3D"
        opts = "".join(f"{'ABCDEF'[i]}. {c}\n" for i, c in enumerate(r["choices"]))
        assert r["prompt"] == f"{MC_HEAD}{r['question']}\nOptions:\n{opts}"
        assert re.fullmatch(r"\([A-F]\)", r["answer"])
        ann = _annotation(dataset / "test", r["image"])
        _check(r["answer"], derive(r["question"], ann), r["choices"], "paren")
    assert {r["task"] for r in rows} == {"Count", "Relation", "Depth", "Distance"}


def test_pope_file(dataset):
    rows = _jsonl(dataset / "test/pope.jsonl")
    assert [r["question_id"] for r in rows] == list(range(len(rows)))
    by = {}
    for r in rows:
        ann = _annotation(dataset / "test", r["image"])
        assert r["label"] == derive(
            r["text"], ann
        )  # negatives are really absent, positives present
        by.setdefault((r["image"], r["category"]), []).append(r)
    for (image, cat), items in by.items():
        labels = Counter(r["label"] for r in items)
        assert labels["yes"] == labels["no"] > 0, (image, cat)
        ann = _annotation(dataset / "test", image)
        present = {(o["colour"], o["shape"]) for o in ann["objects"]}
        negs = [tuple(r["text"].split()[3:5]) for r in items if r["label"] == "no"]
        assert len(set(negs)) == len(negs)
        if cat == "adversarial":  # share a colour or a shape with a present object
            for c, s in negs:
                assert any(c == pc or s == ps for pc, ps in present)
    # the positives are the same in the three categories
    pos = {}
    for r in rows:
        if r["label"] == "yes":
            pos.setdefault(r["category"], set()).add((r["image"], r["text"]))
    assert pos["random"] == pos["popular"] == pos["adversarial"]
    # popular negatives come from the most frequent names of the split
    freq = Counter()
    for p in (dataset / "test/annotations").glob("*.json"):
        freq.update({(o["colour"], o["shape"]) for o in json.loads(p.read_text())["objects"]})
    pop = Counter(
        tuple(r["text"].split()[3:5])
        for r in rows
        if r["category"] == "popular" and r["label"] == "no"
    )
    rnd = Counter(
        tuple(r["text"].split()[3:5])
        for r in rows
        if r["category"] == "random" and r["label"] == "no"
    )
    mean_freq = lambda c: sum(freq[k] * v for k, v in c.items()) / sum(c.values())  # noqa: E731
    assert mean_freq(pop) > mean_freq(rnd)


def test_attributes_file(dataset):
    rows = _jsonl(dataset / "test/attributes.jsonl")
    assert {r["task"] for r in rows} == {"colour", "shape", "size", "count"}
    for r in rows:
        ann = _annotation(dataset / "test", r["image"])
        assert r["answer"] == derive(r["question"], ann)
        assert r["prompt"] == SHORT_HEAD + r["question"]


def test_pt_captions_and_shards(dataset):
    pt = _jsonl(dataset / "train/pt.jsonl")
    assert len(pt) == 80
    for r in pt:
        ann = _annotation(dataset / "train", r["image"])
        for o in ann["objects"]:  # every object is mentioned with its size, colour and shape
            assert f"{o['size']} {o['colour']} {o['shape']}" in r["caption"]
    members = {}
    for shard in sorted((dataset / "train").glob("pt-*.tar")):
        with tarfile.open(shard) as tf:
            for m in tf.getmembers():
                members[m.name] = tf.extractfile(m).read()
    assert len(members) == 160
    for r in pt:
        assert members[f"{r['id']}.txt"].decode() == r["caption"]
        assert members[f"{r['id']}.png"] == (dataset / "train" / r["image"]).read_bytes()


def test_cli(tmp_path):
    from typer.testing import CliRunner

    from aki.cli.main import app

    res = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "d"), "--n-train", "6", "--n-test", "4", "--seed", "1", "--image-size", "48"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "train: 6 scenes" in res.output
    assert Image.open(tmp_path / "d/test/images/test_000000.png").size == (48, 48)


def test_both_short_answer_prompt_styles_and_many_objects(dataset):
    prompts = [r["conversations"][0]["value"] for r in _jsonl(dataset / "train/sft.jsonl")
               if r["format"] == "short"]
    heads = Counter(p.startswith("<image>\n" + SHORT_HEAD) for p in prompts)
    assert heads[True] > 0 and heads[False] > 0
    n_objects = [len(json.loads(p.read_text())["objects"])
                 for p in (dataset / "train/annotations").glob("*.json")]
    assert min(n_objects) >= 3 and max(n_objects) >= 7


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_refuses_a_used_folder_and_changes_nothing(tmp_path):
    from typer.testing import CliRunner

    from aki.cli.main import app

    out = tmp_path / "d"
    args = ["data", "synth", "--out", str(out), "--n-train", "6", "--n-test", "3"]
    assert CliRunner().invoke(app, [*args, "--seed", "1"]).exit_code == 0
    before = _snapshot(out)
    res = CliRunner().invoke(app, [*args, "--seed", "2"])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("aki data synth: error:"), res.output
    assert "not empty" in lines[0] and "--overwrite" in lines[0]
    assert _snapshot(out) == before
    # a folder with files the generator did not write is refused even with --overwrite
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(mine), "--n-train", "2",
                                   "--n-test", "0", "--overwrite"])
    assert res.exit_code != 0 and "notes.txt" in res.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_overwrite_removes_the_old_dataset_first(tmp_path):
    out = tmp_path / "d"
    generate(out, n_train=12, n_test=3, seed=1, shard_size=4)
    assert (out / "train/pt-000002.tar").exists()
    generate(out, n_train=6, n_test=3, seed=2, shard_size=4, overwrite=True)
    fresh = tmp_path / "fresh"
    generate(fresh, n_train=6, n_test=3, seed=2, shard_size=4)
    assert _files(out) == _files(fresh)  # no stale shard, image or annotation is left behind
