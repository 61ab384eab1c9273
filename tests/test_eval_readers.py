"""Readers on small files in the published layouts that the tests write, and `aki eval` end to end."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from aki.eval.benchmarks import get_benchmark
from aki.eval.items import BadRow, BenchmarkFileError
from aki.eval.suite import _load_source
from eval_files import b64, mmbench_tsv, mme_tsv, png_bytes, write_jsonl, write_parquet, write_tsv


def _read(name, path, **kw):
    bench = get_benchmark(name)
    return bench.read(bench.locate(path), **kw)


def test_vlmevalkit_tsv_images_by_reference_and_rows_without_image(tmp_path):
    rows, bad, _ = _read("mme", mme_tsv(tmp_path / "MME.tsv"))
    assert len(rows) == 8 and not bad
    # the second question of each image shares the first row's image (and pair key)
    assert rows[1]["images"][0].text == rows[0]["images"][0].text and rows[1]["pair"] == rows[0]["pair"]
    assert _load_source(rows[1]["images"][0]).size == (24, 24)
    write_tsv(tmp_path / "bad" / "MME.tsv", [
        {"index": 0, "image": b64(0), "question": "q?", "answer": "Yes", "category": "count"},
        {"index": 1, "image": None, "question": "q?", "answer": "No", "category": "count"},
        {"index": 2, "image": "7", "question": "q?", "answer": "No", "category": "count"},
        {"index": 3, "image": b64(1), "question": "q?", "answer": "Maybe", "category": "count"},
    ])
    rows, bad, _ = _read("mme", tmp_path / "bad")
    assert [r["index"] for r in rows] == ["0"]
    messages = [str(b) for b in bad]
    assert any("MME.tsv:3" in m and "no image" in m for m in messages)  # a row without its image
    assert any("MME.tsv:4" in m and "row index '7'" in m for m in messages)
    assert any("MME.tsv:5" in m and "Yes or No" in m for m in messages)


def test_corrupt_base64_image_is_a_bad_row(tmp_path):
    write_tsv(tmp_path / "POPE.tsv", [{"index": 0, "image": "!" * 100, "question": "q?", "answer": "yes",
                                        "category": "random"}])
    rows, _, _ = _read("pope", tmp_path)
    with pytest.raises(BadRow, match=r"POPE.tsv:2: image cell is not valid base64"):
        _load_source(rows[0]["images"][0])


def test_mmbench_tsv_with_its_rotations_is_kept(tmp_path):
    rows, bad, notes = _read("mmbench", mmbench_tsv(tmp_path / "MMBench_DEV_EN.tsv", with_rotations=True))
    assert len(rows) == 9 and not bad and not notes


def test_cvbench_jsonl_with_image_folder_and_missing_image(tmp_path):
    root = tmp_path / "CV-Bench"
    (root / "img" / "2D").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "img" / "2D" / "a.png")
    base = {"type": "2D", "task": "Count", "question": "How many?", "choices": ["1", "2"], "answer": "(B)",
            "source": "COCO", "prompt": "file's own prompt"}
    write_jsonl(root / "test_2d.jsonl", [dict(base, idx=0, filename="img/2D/a.png"),
                                          dict(base, idx=1, filename="img/2D/missing.png")])
    (root / "test_3d.jsonl").write_text('{"idx": 2, "broken json\n')
    rows, bad, _ = _read("cvbench", tmp_path)
    assert [r["index"] for r in rows] == ["0"] and rows[0]["images"][0].name == "a.png"
    messages = [str(b) for b in bad]
    assert any("test_2d.jsonl:2" in m and "missing.png" in m and "--image-root" in m for m in messages)
    assert any("test_3d.jsonl:1" in m and "not valid JSON" in m for m in messages)
    # the official prompt, not the file's own
    assert get_benchmark("cvbench").module.prompt(rows[0]).endswith("Options:\nA. 1\nB. 2\n")


def test_cvbench_parquet_with_image_bytes(tmp_path):
    write_parquet(tmp_path / "CV-Bench" / "test_3d.parquet", [{
        "idx": 5, "type": "3D", "task": "Depth", "question": "Closer?", "choices": ["x", "y"], "answer": "(A)",
        "source": "Omni3D", "image": {"bytes": png_bytes(2), "path": None}}])
    rows, bad, _ = _read("cvbench", tmp_path)
    assert not bad and _load_source(rows[0]["images"][0]).getpixel((0, 0)) == (30, 30, 200)


def test_pope_llava_question_files_with_coco_image_root(tmp_path):
    coco = tmp_path / "val2014"
    coco.mkdir()
    Image.new("RGB", (8, 8)).save(coco / "COCO_val2014_000000000001.jpg")
    rows = [{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog?", "label": "no"},
            {"question_id": 2, "image": "COCO_val2014_000000000002.jpg", "text": "Is there a cat?", "label": "yes"}]
    write_jsonl(tmp_path / "POPE" / "coco_pope_adversarial.json", rows)
    got, bad, _ = _read("pope", tmp_path, image_root=coco)
    assert [r["index"] for r in got] == ["adversarial-1"] and got[0]["category"] == "adversarial"
    assert "COCO_val2014_000000000002.jpg" in str(bad[0]) and str(coco) in str(bad[0])


def test_hugging_face_parquet_layouts(tmp_path):
    img = {"bytes": png_bytes(0), "path": None}
    write_parquet(tmp_path / "MME" / "data" / "test-00000-of-00001.parquet", [
        {"question_id": "count/1.png", "question": "Two? Please answer yes or no.", "answer": "Yes",
         "category": "count", "image": img},
        {"question_id": "count/1.png", "question": "Three? Please answer yes or no.", "answer": "No",
         "category": "count", "image": img}])
    rows, bad, _ = _read("mme", tmp_path)
    assert len(rows) == 2 and not bad and rows[0]["pair"] == rows[1]["pair"] == "count/1.png"
    write_parquet(tmp_path / "MMMU" / "Art" / "validation-00000-of-00001.parquet", [
        {"id": "validation_Art_1", "question": "Look at <image 2>. Which?", "options": "['x', 'y']",
         "answer": "B", "question_type": "multiple-choice", "image_1": {"bytes": png_bytes(0), "path": None},
         "image_2": {"bytes": png_bytes(1), "path": None}, "image_3": None}])
    rows, bad, _ = _read("mmmu", tmp_path)
    assert not bad and rows[0]["split"] == "validation" and rows[0]["category"] == "Art"
    assert len(rows[0]["images"]) == 1 and rows[0]["images"][0] == png_bytes(1)  # the first image referenced
    assert "<image" not in get_benchmark("mmmu").module.prompt(rows[0])
    write_parquet(tmp_path / "SEED-Bench" / "test.parquet", [
        {"question_id": "1", "question": "What?", "choice_a": "a", "choice_b": "b", "choice_c": "c",
         "choice_d": "d", "answer": "C", "data_type": "image", "question_type_id": 1, "image": [img]},
        {"question_id": "2", "question": "Video?", "choice_a": "a", "choice_b": "b", "choice_c": "c",
         "choice_d": "d", "answer": "A", "data_type": "video", "question_type_id": 10, "image": [img]}])
    rows, bad, _ = _read("seed", tmp_path)
    assert [r["index"] for r in rows] == ["1"] and rows[0]["category"] == "Scene Understanding"


def test_wrong_benchmark_for_a_file_names_the_missing_columns(tmp_path):
    write_parquet(tmp_path / "pope.parquet", [{"question_id": 1, "question": "q", "answer": "yes",
                                                "image": {"bytes": png_bytes(0), "path": None}}])
    rows, bad, _ = get_benchmark("mmmu").read([tmp_path / "pope.parquet"])
    assert not rows and "missing column(s)" in str(bad[0]) and "--bench" in str(bad[0])


def test_no_file_for_a_benchmark_says_where_it_looked(tmp_path):
    with pytest.raises(BenchmarkFileError, match=r"MME\.tsv.*--bench mme=PATH"):
        get_benchmark("mme").locate(tmp_path)


# ----------------------------------------------------------------------------- aki eval (CLI)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from aki.testing import tiny_model

    path = tmp_path_factory.mktemp("model")
    model, processor = tiny_model("llama")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _eval(*args):
    from typer.testing import CliRunner

    from aki.cli.main import app

    return CliRunner().invoke(app, ["eval", *map(str, args)])


def test_aki_eval_end_to_end_resumes_and_writes_the_required_files(saved_model, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    mme_tsv(data / "MME.tsv")
    mmbench_tsv(data / "MMBench_DEV_EN.tsv")
    write_tsv(data / "POPE.tsv", [
        {"index": i, "image": b64(i), "question": "Is there a dog?", "answer": "yes" if i % 2 else "no",
         "category": "random"} for i in range(3)] + [
        {"index": 3, "image": None, "question": "Is there a cat?", "answer": "no", "category": "random"}])
    res = _eval(saved_model, "--bench", "mme,mmbench,pope,llava-w", "--data-root", data, "--out", out,
                "--no-progress", "--max-new-tokens", "3")
    assert res.exit_code == 0, res.output
    preds = [json.loads(x) for x in (out / "mme.predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and all({"index", "prediction"} <= set(p) for p in preds)
    scores = json.loads((out / "scores.json").read_text())
    assert {"perception", "cognition"} <= set(scores["mme"]) and "overall" in scores["mmbench"]
    assert scores["pope"]["overall"]["n"] == 3 and "vlmevalkit" in scores["pope"]
    assert "llava-w" not in scores and "judge" in res.output and "skipped" in res.output
    assert "POPE.tsv:5" in res.output and "no image" in res.output  # the bad row, with file and line
    assert "rows scored" in res.output and "unparsed/empty" in res.output
    for name in ("table1.md", "table1.json", "table1.png"):
        assert (out / name).stat().st_size > 0
    assert "| MME-P |" in (out / "table1.md").read_text()
    # a rerun asks the model nothing (every prediction is stored) and gives the same scores
    again = _eval(saved_model, "--bench", "mme", "--data-root", data, "--out", out, "--no-progress",
                  "--max-new-tokens", "3")
    assert again.exit_code == 0 and "(0 generated now)" in again.output
    assert json.loads((out / "scores.json").read_text())["mme"]["perception"] == scores["mme"]["perception"]


def test_aki_eval_errors_are_one_line_and_nonzero(saved_model, tmp_path):
    res = _eval(saved_model, "--data-root", tmp_path)
    assert res.exit_code != 0 and "aki eval: error: nothing to evaluate" in res.output
    res = _eval(saved_model, "--bench", "mme", "--data-root", tmp_path, "--out", tmp_path / "o", "--no-progress")
    assert res.exit_code != 0 and "nothing was evaluated" in res.output and "MME.tsv" in res.output
    res = _eval(saved_model, "--bench", "nosuch", "--data-root", tmp_path)
    assert res.exit_code != 0 and "unknown benchmark 'nosuch'" in res.output


def test_aki_eval_synth_split(saved_model, tmp_path):
    from aki.data.synth.writer import generate

    generate(tmp_path / "synth", n_train=0, n_test=6, seed=1)
    res = _eval(saved_model, "--bench", "synth", "--data-root", tmp_path / "synth", "--out", tmp_path / "o",
                "--no-progress", "--limit", "4", "--max-new-tokens", "2")
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert {"cvbench", "pope", "attributes"} <= set(scores) and "lenient" in scores["cvbench"]
