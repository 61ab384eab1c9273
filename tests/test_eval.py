"""The synthetic-split runner with a fake model, and the open-question scorer (the paper's
benchmarks' scorers are in test_eval_scorers.py)."""

from __future__ import annotations

import json

import pytest
import torch

from aki.eval import cvbench, openqa
from aki.eval.runner import evaluate

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
    expected = cvbench.score([dict(r, prediction="(A)") for r in cv])  # official: "(A)" is not "A"
    assert res["cvbench"]["overall"] == pytest.approx(expected["overall"])
    assert res["cvbench"]["per_source"] == expected["per_source"]
    assert res["cvbench"]["overall"] == 0.0 and res["cvbench"]["lenient"]["overall"] > 0.0
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
    (data / "test" / "attributes.jsonl").unlink()
    res = evaluate(model, proc, data / "test", split_files=("pope.jsonl", "attributes.jsonl"), limit=3,
                   output_dir=out)
    assert res["skipped"] == ["attributes.jsonl"] and res["pope"]["overall"]["n"] == 3
    with pytest.raises(ValueError, match="unknown synthetic split"):  # never guessed from a name
        evaluate(model, proc, data / "test", split_files=("my_cvbench.jsonl",), output_dir=out)


def test_eval_cli_registered():
    from typer.testing import CliRunner

    from aki.cli.main import app

    res = CliRunner().invoke(app, ["eval", "--help"])
    assert res.exit_code == 0 and "--data" in res.output


def test_continuation_logprob_matches_generate_forced_to_the_continuation():
    """The log-likelihood path reads the prompt as generate does: generate forced to emit the
    continuation (its raw logits, before the forcing) gives the same summed log-probabilities and
    the same greedy verdict; the model's own greedy answer scores as greedy."""
    from PIL import Image

    from aki.eval.generation import continuation_logprob, prompt_inputs
    from aki.testing import tiny_model

    model, processor = tiny_model("llama", rule="mma")
    image = Image.new("RGB", (64, 64), "red")
    question = "What is shown?"
    inputs = prompt_inputs(model, processor, [question], [image])
    start = inputs["input_ids"].shape[1]

    def forced(text: str):
        ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=len(ids), do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, eos_token_id=None,
                                 prefix_allowed_tokens_fn=lambda _b, seq: [ids[len(seq) - start]])
        assert out.sequences[0, start:].tolist() == ids
        logp = [torch.log_softmax(step[0].float(), -1) for step in out.logits]
        return sum(float(lp[t]) for lp, t in zip(logp, ids, strict=True)), all(int(lp.argmax()) == t for lp, t in zip(logp, ids, strict=True))

    for text in ("red circle", "a blue square"):
        expected, expected_greedy = forced(text)
        logp, greedy = continuation_logprob(model, processor, question, image, text)
        assert logp == pytest.approx(expected, abs=1e-4)
        assert greedy == expected_greedy
    with torch.inference_mode():
        own = model.generate(**inputs, max_new_tokens=3, do_sample=False, eos_token_id=None)[0, start:].tolist()
    own_text = processor.tokenizer.decode(own)
    if processor.tokenizer(own_text, add_special_tokens=False)["input_ids"] == own:  # a clean round trip
        assert continuation_logprob(model, processor, question, image, own_text)[1]
    with pytest.raises(ValueError, match="empty"):
        continuation_logprob(model, processor, question, image, "")
