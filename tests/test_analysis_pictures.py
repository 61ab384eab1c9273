"""The pictures of what MMA changes: question-pair attention and state difference, the paper's
Fig. 6 word classes (spaCy), the files, the CLI, and the quickstart's guarded call."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aki.analysis.pictures import (
    CLASSES_FILE,
    NUMBERS_FILE,
    PAIR_FILE,
    family_items,
    question_pair,
    write_mma_pictures,
)
from aki.analysis.question_words import question_word_attention
from aki.analysis.word_classes import CLASSES, PENN_CLASSES, token_class, word_classes
from aki.cli.main import app
from aki.data.synth import generate
from aki.eval.runner import read_jsonl
from aki.processing import load_image
from aki.testing import tiny_model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A synthetic test split and a causal / MMA pair of tiny random models (same weights)."""
    root = tmp_path_factory.mktemp("pictures")
    generate(root / "data", n_train=4, n_test=8, seed=3)
    for rule in ("mma", "causal"):
        model, processor = tiny_model("llama", rule=rule, seed=1)
        model.save_pretrained(root / rule)
        processor.save_pretrained(root / rule)
    return root


@pytest.fixture(scope="module")
def written(pair):
    return write_mma_pictures(pair / "mma", pair / "causal", pair / "data", pair / "out", n_per_family=2)


# ------------------------------------------------------------------------------ word classes


@pytest.mark.parametrize(("sentence", "expected"), [
    ("How many red circles are in the image?",
     ["function", "attributes", "attributes", "objects", "function", "relations", "function", "objects"]),
    ("Is the blue square to the left or to the right of the red circle?",
     ["function", "function", "attributes", "objects", "relations", "function", "relations", "function",
      "relations", "function", "relations", "relations", "function", "attributes", "objects"]),
    ("Which object is closer to the camera, the green cross or the purple diamond?",
     ["function", "objects", "function", "relations", "relations", "function", "objects", "function",
      "attributes", "objects", "function", "function", "attributes", "objects"]),
    ("Count the yellow triangles in the image.",
     ["actions", "function", "attributes", "objects", "relations", "function", "objects"]),
    ("Is the red circle above or below the blue square?\nOptions:\nA. above\nB. below",
     ["function", "function", "attributes", "objects", "relations", "function", "relations", "function",
      "attributes", "objects", "objects", "punctuation", "relations", "punctuation", "relations"]),
])
def test_words_of_the_synthetic_templates_get_the_expected_class(sentence, expected):
    assert word_classes(sentence, sentence.split()) == expected


def test_token_class_rules():
    assert {PENN_CLASSES[t] for t in ("NN", "NNS", "NNP")} == {"objects"}
    assert token_class("circle", "NN") == "objects"
    assert token_class("red", "JJ") == "attributes" and token_class("3", "CD") == "attributes"
    assert token_class("taking", "VBG", "VERB") == "actions"
    assert token_class("is", "VBZ", "AUX") == "function"  # auxiliaries are function words, not actions
    assert token_class("of", "IN") == "relations" and token_class("Left", "NN") == "relations"
    assert token_class("the", "DT") == "function" and token_class("directly", "RB") == "function"
    assert token_class("?", ".") == "punctuation" and token_class("(B)", "NN") == "punctuation"
    assert token_class("whatever", "XX") == "punctuation"  # anything unlisted: Punctuation/Other
    assert word_classes("Is there a red circle?", ["circle?", "nowhere"]) == ["objects", "function"]
    # the synthetic vocabulary comes first: the small tagger reads "Green Cross" as a proper noun
    assert token_class("green", "NNP") == "attributes" and token_class("Cross", "NNP") == "objects"
    assert token_class("crosses", "VBZ") == "objects" and token_class("small", "NN") == "attributes"


def test_existence_questions_of_the_test_split_tag_colour_and_shape(pair):
    """Every POPE question names "<colour> <shape>": the colour is an attribute, the shape an object."""
    rows = read_jsonl(pair / "data" / "test" / "pope.jsonl")
    assert rows
    for row in rows:
        words = row["text"].split()
        colour, shape = row["object"].split()
        classes = dict(zip(words, word_classes(row["text"], words), strict=True))
        assert classes[colour] == "attributes" and classes[shape] == "objects"
        assert set(classes.values()) <= set(CLASSES)


# ------------------------------------------------------------------------------ choices


def test_the_pair_is_one_image_with_two_present_objects(pair):
    test = pair / "data" / "test"
    image, prompts, objects = question_pair(test)
    first = next(r for r in read_jsonl(test / "pope.jsonl") if r["label"] == "yes")
    assert image == test / first["image"] and objects[0] == first["object"]
    assert objects[0] != objects[1] and all(o in p for o, p in zip(objects, prompts, strict=True))
    items = family_items(test, 2)
    assert list(items)[:4] == ["Count", "Relation", "Depth", "Distance"] or set(items) >= {"Count", "Existence"}
    assert all(1 <= len(v) <= 2 for v in items.values())
    assert family_items(test, 2) == items  # deterministic


# ------------------------------------------------------------------------------ the pictures


def test_causal_states_do_not_move_and_mma_states_do(written):
    diff = written["state_difference_per_layer"]
    assert all(d == 0.0 for d in diff["causal"])  # exactly: the image tokens never see the question
    assert written["final_state_difference"]["causal"] == 0.0
    assert written["final_state_difference"]["mma"] > 0.0
    assert diff["mma"][0] == 0.0  # embeddings: before any attention


def test_word_shares_match_the_question_words_module(pair, written):
    from aki.model.loading import load_pretrained

    model, processor = load_pretrained(pair / "mma")
    fresh = question_word_attention(model, processor, load_image(written["image"]), written["questions"][0])
    saved = written["question_words"]["mma"][0]
    assert saved["words"] == list(fresh.words)
    assert saved["share_per_word"] == pytest.approx(fresh.word_scores().tolist(), abs=1e-6)
    assert sum(saved["share_per_word"]) == pytest.approx(saved["question_share"], abs=1e-6)
    assert all(q["question_share"] == 0.0 for q in written["question_words"]["causal"])
    for family in written["word_classes"]["families"].values():  # classes + template = the whole span
        assert sum(family["share"].values()) + family["template_share"] == pytest.approx(family["question_share"])
        assert family["question_share"] > 0.0 and family["share"]["objects"] > 0.0


def test_files_are_written_with_stable_names(written):
    files = written["files"]
    assert files["pair"].endswith(f"pictures/{PAIR_FILE}")
    assert files["word_classes"].endswith(f"pictures/{CLASSES_FILE}")
    from pathlib import Path

    for key in ("pair", "word_classes"):
        head = Path(files[key]).read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" and Path(files[key]).stat().st_size > 5000
    assert json.loads(Path(files["numbers"]).read_text()) == json.loads(json.dumps(written))
    assert Path(files["numbers"]).name == NUMBERS_FILE


# ------------------------------------------------------------------------------ CLI and quickstart


def test_cli_writes_the_pictures(pair, tmp_path):
    result = CliRunner().invoke(app, ["pictures", "--mma", str(pair / "mma"), "--causal", str(pair / "causal"),
                                      "--data", str(pair / "data"), "--out", str(tmp_path), "--n", "1"])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path}/pictures/{PAIR_FILE}" in result.output and "causal 0 " in result.output
    assert (tmp_path / "pictures" / NUMBERS_FILE).is_file()


def test_cli_names_a_missing_model_folder_in_one_line(pair, tmp_path):
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, [
        "pictures", "--mma", str(tmp_path / "nope"), "--causal", str(pair / "causal"),
        "--data", str(pair / "data"), "--out", str(tmp_path)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("aki pictures: error:")
    assert "--mma" in lines[0] and "nope" in lines[0]


def test_cli_refuses_the_folders_swapped(pair, tmp_path):
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, [
        "pictures", "--mma", str(pair / "causal"), "--causal", str(pair / "mma"),
        "--data", str(pair / "data"), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "attention rule 'causal'" in result.output
    assert not (tmp_path / "pictures" / NUMBERS_FILE).exists()


def test_quickstart_hook_warns_and_keeps_going(tmp_path, capsys):
    from aki.cli.quickstart import write_pictures

    write_pictures(tmp_path, 0, tmp_path / "data")  # nothing there: a warning, not an exception
    err = capsys.readouterr().err
    assert "warning: the pictures were not written" in err and "aki pictures --mma" in err
