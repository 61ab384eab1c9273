"""``aki data check`` on the paper's SFT config over a tiny copy of the layout docs/data.md
documents, and ``aki data kale`` on tiny img2dataset-style outputs (both written here)."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from aki.cli.main import app
from aki.data import pt_shards

CONFIGS = Path(__file__).parent.parent / "configs"


def img(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def paper_layout(root: Path) -> None:
    """One record per data set, laid out as docs/data.md says (under ``root/data``)."""
    d = root / "data"
    img(d / "coco/train2014/COCO_train2014_000000000042.jpg", (200, 100))
    img(d / "coco/train2017/000000000005.jpg")
    write_json(d / "vqav2/v2_OpenEnded_mscoco_train2014_questions.json",
               {"questions": [{"image_id": 42, "question": "What is it?", "question_id": 7}]})
    write_json(d / "vqav2/v2_mscoco_train2014_annotations.json",
               {"annotations": [{"question_id": 7, "image_id": 42, "multiple_choice_answer": "box"}]})
    img(d / "gqa/images/n1.jpg")
    write_json(d / "gqa/train_balanced_questions.json", {"q1": {"imageId": "n1", "question": "Is it red?",
                                                                "answer": "yes"}})
    img(d / "vsr/images/000000000009.jpg")
    (d / "vsr/train.jsonl").write_text(json.dumps({"image": "000000000009.jpg", "caption": "The cat is left of "
                                                   "the dog.", "label": 1}) + "\n")
    img(d / "ocrvqa/images/b1.jpg")
    write_json(d / "ocrvqa/dataset.json", {"b1": {"imageURL": "http://x/b1.jpg", "questions": ["Who wrote this "
                                                  "book?"], "answers": ["Ann"], "split": 1}})
    write_json(d / "aokvqa/aokvqa_v1p0_train.json", [{"question_id": "q", "image_id": 5, "question": "What is "
                                                      "shown?", "choices": ["cat", "dog"], "correct_choice_idx": 1}])
    img(d / "scienceqa/images/train/11/image.png")
    write_json(d / "scienceqa/problems.json", {"11": {"question": "Which is a mammal?", "choices": ["frog", "whale"],
                                                      "answer": 1, "hint": "", "image": "image.png",
                                                      "split": "train"}})
    for dataset, split_by in (("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd")):
        f = d / "refer" / dataset
        f.mkdir(parents=True)
        (f / f"refs({split_by}).p").write_bytes(pickle.dumps([{"ref_id": 1, "ann_id": 10, "image_id": 42,
                                                                "split": "train", "sentences": [{"sent": "left dog"}]}]))
        write_json(f / "instances.json", {"images": [{"id": 42, "file_name": "COCO_train2014_000000000042.jpg",
                                                       "width": 200, "height": 100}],
                                          "annotations": [{"id": 10, "image_id": 42, "bbox": [20, 10, 50, 40]}]})
    img(d / "vg/VG_100K_2/3.jpg")
    write_json(d / "vg/image_data.json", [{"image_id": 3, "width": 40, "height": 30}])
    write_json(d / "vg/region_descriptions.json", [{"id": 3, "regions": [{"region_id": 1, "image_id": 3, "phrase":
                                                                           "a tree", "x": 1, "y": 2, "width": 9,
                                                                           "height": 9}]}])
    write_json(d / "llava/llava_instruct_150k.json", [{"id": "5", "image": "000000000005.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A box."}]}])


def test_check_reads_the_paper_config_on_the_documented_layout(tmp_path, monkeypatch):
    paper_layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["data", "check", str(CONFIGS / "aki4b-sft.yaml"), "--set", "init={tiny: phi3}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    for name in ("vqav2", "gqa", "vsr", "ocrvqa", "aokvqa", "scienceqa", "refcoco", "refcoco+", "refcocog", "vg",
                 "llava150k"):
        assert f"[{name}] format=" in out
    assert out.count("records: 1 (0 with unusable annotations)") == 11
    assert out.count("images: all 1 records: 0 missing") == 11
    assert ("    <|user|>\n    <image>\n    Answer the question using a single word or phrase. What is it?<|end|>\n"
            "    <|assistant|>\n    box<|endoftext|>") in out
    assert "    Provide a short description for this region. <bbox>[0.100, 0.100][0.350, 0.500]</bbox>" in out
    assert "as the model reads it" in out and "all 11 sources OK" in out
    # before the PT stage has run, the samples are shown in the paper's template, and the check says so
    before_pt = CliRunner().invoke(app, args[:3])
    assert before_pt.exit_code == 0, before_pt.output
    assert "note: samples are rendered in the paper's phi3 template" in before_pt.output
    assert "runs/aki4b-pt holds no saved model yet" in before_pt.output
    assert "    <s><|system|>\n" in before_pt.output

    # a missing COCO image shows up in every source that uses it, and fails the check
    (tmp_path / "data/coco/train2014/COCO_train2014_000000000042.jpg").unlink()
    result = CliRunner().invoke(app, [*args, "--full"])
    assert result.exit_code == 1
    assert result.output.count("images: all 1 records: 1 missing") == 4  # VQAv2 and RefCOCO/+/g
    assert "COCO_train2014_000000000042.jpg" in result.output
    assert "4 of 11 sources have problems: vqav2, refcoco, refcoco+, refcocog" in result.output


def test_check_samples_large_sources_and_says_so(tmp_path):
    lines = [json.dumps({"image": f"img/{k}.png", "caption": f"caption {k}"}) for k in range(300)]
    for k in range(0, 300, 2):
        img(tmp_path / "img" / f"{k}.png")
    (tmp_path / "pt.jsonl").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"init: {{tiny: llama}}\nstage: pt\ndata: {{sources: [{{format: pt_jsonl, path: {tmp_path}/pt.jsonl}}]}}\n")
    result = CliRunner().invoke(app, ["data", "check", str(cfg), "--sample", "50"])
    assert result.exit_code == 1
    assert "images: 50 sampled of 300 records (--full checks all)" in result.output
    missing = int(result.output.split("records (--full checks all): ")[1].split(" missing")[0])
    assert 10 < missing < 40  # half of them are gone
    assert "<image>caption" in result.output.replace(" ", "")  # the caption sample as encoded
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"init: {{tiny: llama}}\ndata: {{sources: [{{format: vqav2, path: {tmp_path}, options: "
                   "{image_dir: x}}]}\n")
    result = CliRunner().invoke(app, ["data", "check", str(bad)])
    assert result.exit_code == 1 and "option 'image_dir' is not known to the vqav2 reader" in result.output


def png_bytes(colour=(0, 90, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buf, format="PNG")
    return buf.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_kale_converter_from_img2dataset_outputs(tmp_path):
    # img2dataset --output_format webdataset: KEY.jpg + KEY.txt + KEY.json
    dl = tmp_path / "kale-images"
    dl.mkdir()
    with tarfile.open(dl / "00000.tar", "w") as tar:
        for k in range(5):
            key = f"00000{k:04d}"
            add(tar, f"{key}.jpg", png_bytes() if k != 3 else b"broken bytes")
            add(tar, f"{key}.txt", f"caption {k}".encode() if k != 4 else b"")
            add(tar, f"{key}.json", json.dumps({"url": f"http://img/{k}", "key": key}).encode())
        add(tar, "000009999.json", b"{}")  # a failed download: metadata only
    # img2dataset --output_format files
    (tmp_path / "files" / "00001").mkdir(parents=True)
    (tmp_path / "files" / "00001" / "000010000.jpg").write_bytes(png_bytes((1, 2, 3)))
    (tmp_path / "files" / "00001" / "000010000.txt").write_text("a caption from a folder")

    runner = CliRunner()
    out = tmp_path / "shards"
    result = runner.invoke(app, ["data", "kale", str(dl), str(tmp_path / "files"), "--out", str(out), "--shard-size", "2"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 samples in 2 shards" in result.output
    assert "corrupt_image: 1" in result.output and "no_caption: 1" in result.output and "no_image: 1" in result.output
    src = pt_shards(out)
    assert [src[i].caption for i in range(len(src))] == ["caption 0", "caption 1", "caption 2",
                                                         "a caption from a folder"]
    assert not list(tmp_path.glob(".tmp-*"))
    assert runner.invoke(app, ["data", "kale", str(dl), "--out", str(out)]).exit_code == 2  # no silent overwrite

    # captions from KALE's parquet files, joined on the URL
    pq.write_table(pa.table({"url": [f"http://img/{k}" for k in range(5)],
                             "caption": [f"knowledge caption {k}" for k in range(5)]}), tmp_path / "shard_000.parquet")
    out2 = tmp_path / "shards2"
    result = runner.invoke(app, ["data", "kale", str(dl), "--out", str(out2), "--captions",
                                 str(tmp_path / "shard_000.parquet")])
    assert result.exit_code == 0, result.output
    src = pt_shards(out2)
    assert [src[i].caption for i in range(len(src))] == [f"knowledge caption {k}" for k in (0, 1, 2, 4)]
    bad = runner.invoke(app, ["data", "kale", str(dl), "--out", str(tmp_path / "x"), "--captions",
                              str(tmp_path / "shard_000.parquet"), "--caption-column", "text"])
    assert bad.exit_code == 2 and "no column 'text'" in bad.output and "['url', 'caption']" in bad.output


@pytest.mark.parametrize("what", ["parquet", "folder"])
def test_kale_converter_explains_that_parquet_holds_no_images(tmp_path, what):
    pq.write_table(pa.table({"url": ["http://x"], "caption": ["c"]}), tmp_path / "shard_000.parquet")
    target = tmp_path / "shard_000.parquet" if what == "parquet" else tmp_path
    result = CliRunner().invoke(app, ["data", "kale", str(target), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "download the images first" in result.output and "img2dataset" in result.output
