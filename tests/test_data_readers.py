"""Readers for every on-disk format, built from tiny files written here."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from aki.data import (
    BadRecord,
    aokvqa,
    bbox_text,
    gqa,
    llava150k,
    llava_conversations,
    ocrvqa,
    pt_jsonl,
    pt_shards,
    refcoco,
    scienceqa,
    sft_llava,
    visual_genome,
    vqav2,
    vsr,
)
from aki.data.tasks import shuffled_options


def png(path: Path, size=(40, 30), color=(200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def png_bytes(size=(20, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (0, 90, 0)).save(buf, format="PNG")
    return buf.getvalue()


def user_text(sample) -> str:
    return next(c["text"] for c in sample.messages[0]["content"] if c["type"] == "text")


def answer(sample) -> str:
    return sample.messages[-1]["content"][0]["text"]


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_pt_jsonl_and_bad_lines(tmp_path):
    png(tmp_path / "img" / "a.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not an image")
    lines = [json.dumps({"image": "img/a.png", "caption": " a red box "}), "{not json",
             json.dumps({"image": "img/broken.png", "caption": "x"}), json.dumps({"caption": "no image"})]
    (tmp_path / "pt.jsonl").write_text("\n".join(lines) + "\n")
    src = pt_jsonl(tmp_path / "pt.jsonl", name="cap")
    assert len(src) == 4
    s = src[0]
    assert s.caption == "a red box" and s.images[0].mode == "RGB" and s.source == "cap" and s.messages is None
    reasons = []
    for i in (1, 2, 3):
        with pytest.raises(BadRecord) as err:
            src[i]
        reasons.append(err.value.reason)
    assert reasons == ["malformed", "corrupt_image", "malformed"]


def test_pt_shards(tmp_path):
    with tarfile.open(tmp_path / "pt-000000.tar", "w") as tar:
        add_member(tar, "s0.png", png_bytes())
        add_member(tar, "s0.txt", b"first caption")
        add_member(tar, "s1.jpg", png_bytes())  # wrong bytes for the extension still decode
        add_member(tar, "s1.txt", b"second")
        add_member(tar, "s2.txt", b"caption without image")
    with tarfile.open(tmp_path / "pt-000001.tar", "w") as tar:
        add_member(tar, "d/s3.png", b"garbage")
        add_member(tar, "d/s3.txt", b"corrupt image")
    src = pt_shards(str(tmp_path / "pt-*.tar"))
    assert len(src) == 4
    assert src[0].caption == "first caption" and src[0].images[0].size == (20, 20)
    assert src[1].caption == "second"
    with pytest.raises(BadRecord, match="without image"):
        src[2]
    with pytest.raises(BadRecord) as err:
        src[3]
    assert err.value.reason == "corrupt_image"
    assert len(pt_shards(tmp_path)) == 4  # a folder works too


def test_llava_split_and_whole(tmp_path):
    png(tmp_path / "i.png")
    rec = {"id": "x", "image": "i.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Red."},
        {"from": "human", "value": "How many?"}, {"from": "gpt", "value": "One."}]}
    split = llava_conversations(rec, "split")
    assert len(split) == 2
    for conv in split:  # each turn keeps the image, first in the user content (I&T)
        assert [c["type"] for c in conv[0]["content"]] == ["image", "text"]
    assert split[1][0]["content"][1]["text"] == "How many?" and split[1][1]["content"][0]["text"] == "One."
    whole = llava_conversations(rec, "whole")
    assert len(whole) == 1 and len(whole[0]) == 4
    assert [c["type"] for c in whole[0][2]["content"]] == ["text"]
    text_first = {"image": "i.png", "conversations": [{"from": "human", "value": "Look: <image>"},
                                                       {"from": "gpt", "value": "ok"}]}
    assert [c["type"] for c in llava_conversations(text_first)[0][0]["content"]] == ["text", "image"]

    bad = {"image": "i.png", "conversations": [{"from": "gpt", "value": "no human"}, {"from": "human", "value": "?"}]}
    (tmp_path / "sft.json").write_text(json.dumps([rec, bad, {"image": "missing.png", "conversations": rec["conversations"][:2]}]))
    src = sft_llava(tmp_path / "sft.json", turns="split")
    assert len(src) == 4  # 2 turns + 1 malformed + 1 with a missing image
    assert answer(src[0]) == "Red." and len(src[0].images) == 1
    with pytest.raises(BadRecord):
        src[2]
    with pytest.raises(BadRecord) as err:
        src[3]
    assert err.value.reason == "missing_image"
    assert len(sft_llava(tmp_path / "sft.json", turns="whole")) == 3


def test_vqav2(tmp_path):
    png(tmp_path / "train2014" / "COCO_train2014_000000000042.jpg")
    (tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps(
        {"questions": [{"image_id": 42, "question": "What is it?", "question_id": 7}]}))
    (tmp_path / "v2_mscoco_train2014_annotations.json").write_text(json.dumps(
        {"annotations": [{"question_id": 7, "image_id": 42, "multiple_choice_answer": "box", "answers": []}]}))
    s = vqav2(tmp_path)[0]
    assert user_text(s) == "Answer the question using a single word or phrase. What is it?"
    assert answer(s) == "box" and s.source == "vqav2"


def test_gqa(tmp_path):
    png(tmp_path / "images" / "n1.jpg")
    (tmp_path / "train_balanced_questions.json").write_text(json.dumps(
        {"q1": {"imageId": "n1", "question": "Is it red?", "answer": "yes"}, "q2": {"question": "broken"}}))
    src = gqa(tmp_path)
    assert user_text(src[0]) == "Answer the question using a single word or phrase. Is it red?"
    with pytest.raises(BadRecord):
        src[1]


def test_vsr(tmp_path):
    png(tmp_path / "images" / "1.jpg")
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"image": "1.jpg", "caption": "The cat is under the table.", "label": 0}) + "\n")
    s = vsr(tmp_path)[0]
    assert user_text(s) == ("Answer the question using a single word or phrase. The cat is under the table. "
                            "Please answer yes or no.")
    assert answer(s) == "no"


def test_ocrvqa(tmp_path):
    png(tmp_path / "images" / "b1.jpg")
    (tmp_path / "dataset.json").write_text(json.dumps({
        "b1": {"imageURL": "http://x/b1.jpg", "questions": ["Who wrote this book?", "Genre?"],
               "answers": ["Ann", "Travel"], "split": 1},
        "b2": {"imageURL": "http://x/b2.jpg", "questions": ["?"], "answers": ["a"], "split": 3}}))
    src = ocrvqa(tmp_path)
    assert len(src) == 2  # the test-split book is left out
    assert answer(src[1]) == "Travel" and user_text(src[0]).endswith("Who wrote this book?")


def test_aokvqa_shuffles_options_with_a_seed(tmp_path):
    png(tmp_path / "train2017" / "000000000005.jpg")
    recs = [{"question_id": f"q{k}", "image_id": 5, "question": "What is shown?",
             "choices": ["cat", "dog", "bird", "fish"], "correct_choice_idx": 2} for k in range(8)]
    (tmp_path / "aokvqa_v1p0_train.json").write_text(json.dumps(recs))
    a, b, c = aokvqa(tmp_path, seed=0), aokvqa(tmp_path, seed=0), aokvqa(tmp_path, seed=1)
    texts = [user_text(a[i]) for i in range(8)]
    assert texts == [user_text(b[i]) for i in range(8)]
    assert texts != [user_text(c[i]) for i in range(8)]
    assert len(set(texts)) > 1  # the order differs between records
    for i in range(8):
        s = a[i]
        t = user_text(s)
        assert t.startswith("Answer with the option's letter from the given choices directly. What is shown?\nOptions:\n")
        letter = answer(s)
        assert f"\n{letter}. bird\n" in t
    opts, letter = shuffled_options(["x", "y"], 0, 3, "k")
    assert opts["AB".index(letter)] == "x"


def test_scienceqa_context(tmp_path):
    png(tmp_path / "images" / "train" / "11" / "image.png")
    (tmp_path / "problems.json").write_text(json.dumps({
        "11": {"question": "Which is a mammal?", "choices": ["frog", "whale"], "answer": 1,
               "hint": "Look at the animals.", "image": "image.png", "split": "train"},
        "12": {"question": "Text only?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": None,
               "split": "train"}}))
    src = scienceqa(tmp_path)
    assert len(src) == 1
    s = src[0]
    assert user_text(s) == ("Answer with the option's letter from the given choices directly. Context: Look at "
                            "the animals.\nWhich is a mammal?\nOptions:\nA. frog\nB. whale\n")
    assert answer(s) == "B"
    assert len(scienceqa(tmp_path, require_image=False)) == 2


def test_bbox_text():
    assert bbox_text((10, 20, 30, 40), 100, 200) == "<bbox>[0.100, 0.100][0.300, 0.200]</bbox>"
    assert bbox_text((-5, 0, 250, 10), 200, 100) == "<bbox>[0.000, 0.000][1.000, 0.100]</bbox>"
    with pytest.raises(BadRecord):
        bbox_text((0, 0, 1, 1), 0, 10)


def _refer(tmp_path: Path, dataset: str, as_pickle: bool) -> None:
    png(tmp_path / "images" / "COCO_train2014_000000000001.jpg", size=(200, 100))
    folder = tmp_path / dataset
    folder.mkdir()
    refs = [{"ref_id": 1, "ann_id": 10, "image_id": 1, "split": "train",
             "sentences": [{"sent": "left dog"}, {"sent": "brown dog"}]},
            {"ref_id": 2, "ann_id": 10, "image_id": 1, "split": "val", "sentences": [{"sent": "x"}]}]
    name = "refs(umd)" if dataset == "refcocog" else "refs(unc)"
    if as_pickle:
        (folder / f"{name}.p").write_bytes(pickle.dumps(refs))
    else:
        (folder / f"{name}.json").write_text(json.dumps(refs))
    (folder / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 200, "height": 100}],
        "annotations": [{"id": 10, "image_id": 1, "bbox": [20, 10, 50, 40]}]}))


@pytest.mark.parametrize("dataset", ["refcoco", "refcoco+", "refcocog"])
def test_refcoco_family(tmp_path, dataset):
    _refer(tmp_path, dataset, as_pickle=dataset != "refcoco+")
    src = refcoco(tmp_path, dataset=dataset)
    assert len(src) == 2 and src.name == dataset
    s = src[1]
    assert user_text(s) == "Provide a short description for this region. <bbox>[0.100, 0.100][0.350, 0.500]</bbox>"
    assert answer(s) == "brown dog"


def test_visual_genome(tmp_path):
    png(tmp_path / "VG_100K_2" / "3.jpg", size=(100, 50))
    (tmp_path / "image_data.json").write_text(json.dumps([{"image_id": 3, "width": 100, "height": 50}]))
    (tmp_path / "region_descriptions.json").write_text(json.dumps([{"id": 3, "regions": [
        {"region_id": 1, "image_id": 3, "phrase": "a tree", "x": 10, "y": 5, "width": 20, "height": 10},
        {"region_id": 2, "image_id": 4, "phrase": "unknown image", "x": 0, "y": 0, "width": 1, "height": 1}]}]))
    src = visual_genome(tmp_path)
    assert len(src) == 2
    s = src[0]
    assert user_text(s) == "Provide a short description for this region. <bbox>[0.100, 0.100][0.300, 0.300]</bbox>"
    assert answer(s) == "a tree" and s.images[0].size == (100, 50)
    with pytest.raises(BadRecord):
        src[1]


def test_llava150k(tmp_path):
    png(tmp_path / "train2017" / "000000000009.jpg")
    (tmp_path / "llava_instruct_150k.json").write_text(json.dumps([{"id": "9", "image": "000000000009.jpg",
        "conversations": [{"from": "human", "value": "What is this?\n<image>"}, {"from": "gpt", "value": "A box."},
                          {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Red."}]}]))
    src = llava150k(tmp_path)
    assert len(src) == 2 and src.name == "llava150k"
    assert answer(src[1]) == "Red." and len(src[1].images) == 1
    assert len(llava150k(tmp_path, turns="whole")) == 1
