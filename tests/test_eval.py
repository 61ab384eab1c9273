"""Scorers (CV-Bench, POPE, open QA) on hand-worked examples, and the runner with a fake model."""

from __future__ import annotations

import json

import pytest
import torch

from aki.eval import cvbench, openqa, pope
from aki.eval.runner import evaluate

# ------------------------------------------------------------------------------------ POPE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No, there is not.", "no"),
        ("There is no dog.", "no"),
        ("Yes, a dog.", "yes"),
        ("It is not clear.", "no"),
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("no", "no"),
        ("No", "no"),
        ("Yes. There is no cat.", "yes"),  # only the first sentence counts
        ("Nope", "yes"),  # LLaVA's rule: not one of the words No/not/no
        ("NO", "yes"),  # ... and case-sensitive
        ("no, none", "no"),
        ("", "yes"),
    ],
)
def test_pope_parse(text, expected):
    assert pope.parse_yes_no(text) == expected


def test_pope_metrics_hand_worked():
    # random: labels y y n n, predictions y n y n -> TP1 FN1 FP1 TN1
    rows = [
        {"label": "yes", "prediction": "Yes", "category": "random"},
        {"label": "yes", "prediction": "No.", "category": "random"},
        {"label": "no", "prediction": "Yes, there is.", "category": "random"},
        {"label": "no", "prediction": "There is no cat.", "category": "random"},
        # popular: labels y n n n, predictions y y y n -> TP1 FP2 TN1 FN0
        {"label": "yes", "prediction": "yes", "category": "popular"},
        {"label": "no", "prediction": "yes", "category": "popular"},
        {"label": "no", "prediction": "yes", "category": "popular"},
        {"label": "no", "prediction": "It is not.", "category": "popular"},
    ]
    s = pope.score(rows)
    r = s["random"]
    assert r["accuracy"] == pytest.approx(50.0)
    assert r["precision"] == pytest.approx(50.0)
    assert r["recall"] == pytest.approx(50.0)
    assert r["f1"] == pytest.approx(50.0)
    assert r["yes_ratio"] == pytest.approx(50.0)
    p = s["popular"]
    assert p["accuracy"] == pytest.approx(50.0)
    assert p["precision"] == pytest.approx(100 / 3)
    assert p["recall"] == pytest.approx(100.0)
    assert p["f1"] == pytest.approx(100 * 2 * (1 / 3) / (1 / 3 + 1))  # 50
    assert p["yes_ratio"] == pytest.approx(75.0)  # predicted yes / N, not ground-truth yes / N
    o = s["overall"]  # TP2 FP3 TN2 FN1
    assert o["accuracy"] == pytest.approx(50.0)
    assert o["precision"] == pytest.approx(40.0)
    assert o["recall"] == pytest.approx(100 * 2 / 3)
    assert o["yes_ratio"] == pytest.approx(62.5)
    assert s["average"]["accuracy"] == pytest.approx(50.0)
    assert s["average"]["yes_ratio"] == pytest.approx(62.5)


def test_pope_all_no_has_zero_precision():
    s = pope.score([{"label": "yes", "prediction": "no", "category": "adversarial"}])
    assert s["adversarial"]["precision"] == 0.0 and s["adversarial"]["f1"] == 0.0


# -------------------------------------------------------------------------------- CV-Bench


@pytest.mark.parametrize(
    ("prediction", "choices", "expected"),
    [
        ("(B)", None, "B"),
        ("B", None, "B"),
        ("B.", None, "B"),
        ("b)", None, "B"),
        ("b", None, "B"),
        ("The answer is B", None, "B"),
        ("The answer is (C).", None, "C"),
        ("Answer: D", None, "D"),
        ("B. right", ["left", "right"], "B"),
        ("C right", ["left", "right", "x"], "C"),
        ("right", ["left", "right"], "B"),
        ("Right.", ["left", "right"], "B"),
        ("the blue square", ["red circle", "blue square"], "B"),
        ("2", ["0", "1", "2", "3"], "C"),
        ("There are 3.", ["0", "1", "2", "3"], "D"),
        ("A red circle", ["blue square", "red circle"], "B"),  # the article "A" is not a letter
        ("A", ["left", "right"], "A"),
        ("E", ["left", "right"], None),  # out of range
        ("left or right", ["left", "right"], None),  # matches two choices
        ("I do not know", ["left", "right"], None),
        ("", None, None),
    ],
)
def test_letter_extraction(prediction, choices, expected):
    assert cvbench.extract_letter(prediction, choices) == expected


def test_cvbench_formula_hand_made():
    def row(source, task, ok):
        return {"source": source, "task": task, "answer": "(A)", "prediction": "A" if ok else "(B)"}

    rows = (
        [row("ADE20K", "Count", k < 3) for k in range(4)]  # 75%
        + [row("COCO", "Relation", k < 1) for k in range(2)]  # 50%
        + [row("Omni3D", "Depth", k < 1) for k in range(5)]  # 20%
    )
    s = cvbench.score(rows)
    assert s["per_source"] == {"ADE20K": 75.0, "COCO": 50.0, "Omni3D": 20.0}
    assert s["2D"] == pytest.approx(62.5)  # mean of sources, not of items (4/6 = 66.7)
    assert s["3D"] == pytest.approx(20.0)
    assert s["overall"] == pytest.approx(41.25)
    assert s["per_task"] == {"Count": 75.0, "Depth": 20.0, "Relation": 50.0}
    assert s["n"] == 11 and s["unparsed"] == 0 and s["notes"] == []


def test_cvbench_missing_groups():
    s = cvbench.score([{"source": "COCO", "answer": "(A)", "prediction": "A"}])
    assert s["2D"] == 100.0 and s["3D"] is None and s["overall"] == 100.0
    assert any("ADE20K" in n for n in s["notes"]) and any("3D" in n for n in s["notes"])
    assert "per_task" not in s
    s = cvbench.score(
        [
            {"source": "Omni3D", "answer": "(B)", "prediction": "gibberish", "choices": ["x", "y"]},
            {"source": "Other", "answer": "(A)", "prediction": "A"},
        ]
    )
    assert s["2D"] is None and s["3D"] == 0.0 and s["overall"] == 0.0 and s["unparsed"] == 1
    assert s["per_source"]["Other"] == 100.0
    assert any("Other" in n for n in s["notes"])


# --------------------------------------------------------------------------------- open QA


def test_openqa():
    assert openqa.normalize("Two.") == "2"
    assert openqa.normalize("The Red") == "red"
    assert openqa.normalize("a circle!") == "circle"
    assert openqa.exact_match("Three", "3")
    assert openqa.exact_match("Blue.", "blue")
    assert not openqa.exact_match("blue circle", "blue")
    rows = [
        {"answer": "red", "prediction": "Red.", "task": "colour"},
        {"answer": "2", "prediction": "two", "task": "count"},
        {"answer": "2", "prediction": "3", "task": "count"},
        {"answer": "circle", "prediction": "circle shape", "task": "shape"},
    ]
    s = openqa.score(rows)
    assert s["accuracy"] == 50.0 and s["first_word"] == 75.0 and s["n"] == 4
    assert s["per_task"] == {"colour": 100.0, "count": 50.0, "shape": 0.0}


# ---------------------------------------------------------------------------------- runner


class FakeProcessor:
    """Character-level stand-in for AkiProcessor (ids = code points, 0 = pad)."""

    image_token = "<image>"

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        assert not tokenize and add_generation_prompt
        (msg,) = messages
        parts = ["<image>" if c["type"] == "image" else c["text"] for c in msg["content"]]
        return "USER: " + "\n".join(parts) + " ASSISTANT:"

    def __call__(self, text, images=None, padding_side="left", return_tensors="pt"):
        assert padding_side == "left" and return_tensors == "pt"
        self.calls.append((list(text), images))
        ids = [[ord(ch) for ch in t] for t in text]
        width = max(map(len, ids))
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for i, row in enumerate(ids):
            input_ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        n_images = sum(len(x) for x in images) if images else 0
        out = {"input_ids": input_ids, "attention_mask": mask, "segments": mask.clone()}
        if n_images:
            out["pixel_values"] = torch.zeros(n_images, 3, 8, 8)
        return out

    def batch_decode(self, ids, skip_special_tokens=True):
        return ["".join(chr(i) for i in row.tolist() if i > 0) for row in ids]


class FakeModel(torch.nn.Module):
    """Answers '(A)' to multiple choice, 'Yes' to yes/no questions and 'red' otherwise."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.batches = []

    def generate(
        self,
        input_ids,
        attention_mask,
        pixel_values=None,
        segments=None,
        max_new_tokens=8,
        do_sample=True,
    ):
        assert do_sample is False
        assert pixel_values is not None and pixel_values.shape[0] == input_ids.shape[0]
        self.batches.append(input_ids.shape[0])
        outs = []
        for row in input_ids.tolist():
            prompt = "".join(chr(i) for i in row if i > 0)
            assert prompt.startswith("USER: <image>\n") and prompt.endswith(" ASSISTANT:")
            if "Options:" in prompt:
                ans = "(A)"
            elif prompt.split("\n")[1].startswith("Is there"):
                ans = "Yes"
            else:
                ans = "red"
            new = [ord(c) for c in ans][:max_new_tokens]
            new += [0] * (max_new_tokens - len(new))
            outs.append(row + new)
        return torch.tensor(outs)


def test_runner_with_fake_model(tmp_path):
    from aki.data.synth.writer import generate

    data = tmp_path / "data"
    generate(data, n_train=0, n_test=12, seed=3)
    model, proc = FakeModel(), FakeProcessor()
    out = tmp_path / "preds"
    res = evaluate(model, proc, data, batch_size=5, max_new_tokens=8, output_dir=out)
    assert res["skipped"] == []
    cv = [json.loads(line) for line in (data / "test/cvbench.jsonl").read_text().splitlines()]
    preds = [
        json.loads(line) for line in (out / "cvbench.predictions.jsonl").read_text().splitlines()
    ]
    assert [p["prediction"] for p in preds] == ["(A)"] * len(cv)  # only the new tokens are decoded
    expected = cvbench.score([dict(r, prediction="A") for r in cv])
    assert res["cvbench"]["overall"] == pytest.approx(expected["overall"])
    assert res["cvbench"]["per_source"] == expected["per_source"]
    # POPE: always "Yes" on a balanced set
    assert res["pope"]["overall"]["yes_ratio"] == 100.0
    assert res["pope"]["overall"]["accuracy"] == pytest.approx(50.0)
    attrs = [json.loads(line) for line in (data / "test/attributes.jsonl").read_text().splitlines()]
    assert res["attributes"]["accuracy"] == pytest.approx(
        100 * sum(a["answer"] == "red" for a in attrs) / len(attrs)
    )
    assert (
        json.loads((out / "scores.json").read_text())["cvbench"]["overall"]
        == res["cvbench"]["overall"]
    )
    # batching: batches of at most 5, one image per sample
    assert max(model.batches) == 5
    texts, images = proc.calls[0]
    assert len(texts) == len(images) == 5 and all(len(x) == 1 for x in images)
    # limit and missing files
    res = evaluate(
        model,
        proc,
        data / "test",
        split_files=("pope.jsonl", "nope.jsonl"),
        limit=3,
        output_dir=out,
    )
    assert res["skipped"] == ["nope.jsonl"] and res["pope"]["overall"]["n"] == 3


def test_eval_cli_registered():
    from typer.testing import CliRunner

    from aki.cli.main import app

    res = CliRunner().invoke(app, ["eval", "--help"])
    assert res.exit_code == 0 and "--data" in res.output
