"""Attention analysis: the unlocked image->question path is measured, and is zero under causal."""

from __future__ import annotations

import pytest
from PIL import Image

from aki.analysis import attention_by_segment, question_sensitivity
from aki.testing import tiny_model

QUESTIONS = ["How many red circles are there?", "Is the square left of the circle?"]


@pytest.mark.parametrize("rule", ["causal", "mma"])
def test_image_attention_shares_and_question_sensitivity(rule):
    model, processor = tiny_model("llama", rule=rule)
    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue")]
    impl = model.language_model.config._attn_implementation
    shares = attention_by_segment(model, processor, images, QUESTIONS)
    assert model.language_model.config._attn_implementation == impl  # restored after the eager pass
    n_layers = model.config.text_config.num_hidden_layers
    assert all(len(v) == n_layers for v in shares.values())
    for layer in range(n_layers):
        total = sum(shares[k][layer] for k in shares)
        assert total == pytest.approx(1.0, abs=1e-4)  # image rows see only text, image, query keys
    sens = question_sensitivity(model, processor, images[0], QUESTIONS)
    if rule == "causal":
        assert all(x == 0.0 for x in shares["query"])
        assert sens == 0.0
    else:
        assert all(x > 0.0 for x in shares["query"])
        assert sens > 0.0


def test_question_sensitivity_needs_two_questions():
    model, processor = tiny_model("llama", rule="mma")
    with pytest.raises(ValueError, match="two questions"):
        question_sensitivity(model, processor, Image.new("RGB", (32, 32)), ["one"])
