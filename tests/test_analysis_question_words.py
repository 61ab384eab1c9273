"""Which question words the image tokens read: words, shares, the resampler's patch weights, pictures."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aki.analysis import attention_by_segment
from aki.analysis.question_words import (
    layer_word_figure,
    overlay_heatmap,
    perceiver_attention_weights,
    question_word_attention,
    word_heatmap_html,
)
from aki.prompts import assistant_message, user_message
from aki.testing import tiny_model

QUESTION = "How many red circles are there?"


@pytest.fixture(scope="module")
def models():
    return {rule: tiny_model("qwen3", rule=rule, seed=1) for rule in ("mma", "causal")}


def test_recomputed_resampler_weights_reproduce_the_layer_output():
    model, _ = tiny_model("llama", rule="mma")
    attn = model.resampler.layers[0].attn
    g = torch.Generator().manual_seed(0)
    media = torch.randn(2, 16, attn.norm_media.normalized_shape[0], generator=g)
    latents = torch.randn(2, 16, attn.norm_latents.normalized_shape[0], generator=g)
    weights = perceiver_attention_weights(attn, media, latents)  # [N, heads, latents, media + latents]
    assert weights.shape == (2, attn.heads, 16, 32)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, attn.heads, 16))
    _, v = attn.to_kv(torch.cat([attn.norm_media(media), attn.norm_latents(latents)], 1)).chunk(2, -1)
    v = v.view(2, 32, attn.heads, attn.head_dim).transpose(1, 2)
    out = attn.to_out((weights @ v).transpose(1, 2).reshape(2, 16, -1))
    torch.testing.assert_close(out, attn(media, latents), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rule", ["mma", "causal"])
def test_word_shares_add_up_to_the_question_share(models, rule):
    model, processor = models[rule]
    image = Image.new("RGB", (48, 40), "red")
    result = question_word_attention(model, processor, image, QUESTION)
    user_words = [w for w, t in zip(result.words, result.is_template, strict=True) if not t]
    assert user_words == QUESTION.split()
    assert "<|im_start|>" in result.words and result.is_template[result.words.index("<|im_start|>")]
    n_layers = model.config.text_config.num_hidden_layers
    assert result.image_to_words.shape == (n_layers, processor.num_image_tokens, len(result.words))
    by_segment = attention_by_segment(model, processor, [image], [QUESTION])["query"]
    for layer in range(n_layers):  # the words partition the question span the segment analysis measures
        assert result.question_share(layer) == pytest.approx(by_segment[layer], abs=1e-5)
    assert result.patch_weights.shape == (1, processor.num_image_tokens, 16)
    assert result.patch_weights.sum(-1) == pytest.approx(1.0, abs=1e-5)
    heat = result.image_heatmap(layer=0)
    assert heat.shape == result.grid == (4, 4)
    if rule == "causal":
        assert result.question_share() == 0.0 and float(abs(heat).max()) == 0.0
    else:
        assert result.question_share() > 0.0 and float(heat.min()) > 0.0
        word = result.words.index("circles")
        assert (result.image_heatmap(0, word) <= heat + 1e-7).all()  # one word's share of the whole
        assert result.token_scores(word=word).shape == (processor.num_image_tokens,)


def test_later_turns_read_the_first_question(models):
    model, processor = models["mma"]
    image = Image.new("RGB", (32, 32), "blue")
    messages = [user_message(QUESTION), assistant_message("Two."), user_message("And blue ones?", n_images=0)]
    later = question_word_attention(model, processor, [image], messages=messages)
    first = question_word_attention(model, processor, image, QUESTION)
    assert later.words == first.words  # the image's prompt block holds the first question only


def test_refusals(models):
    model, processor = models["mma"]
    result = question_word_attention(model, processor, Image.new("RGB", (32, 32)), QUESTION)
    with pytest.raises(ValueError, match="layer 9 does not exist"):
        result.word_scores(9)
    with pytest.raises(ValueError, match="word 99 does not exist"):
        result.token_scores(word=99)
    with pytest.raises(ValueError, match="no image"):
        question_word_attention(model, processor, [], QUESTION)
    with pytest.raises(ValueError, match="either question"):
        question_word_attention(model, processor, Image.new("RGB", (32, 32)))


def test_pictures(models):
    model, processor = models["mma"]
    image = Image.new("RGB", (60, 30), "green")
    result = question_word_attention(model, processor, image, "Is <b>this</b> & that red?")
    html = word_heatmap_html(result, 0, word=1)
    assert "&lt;b&gt;this&lt;/b&gt;" in html and "<b>" not in html and "outline" in html
    assert html.count('class="aki-word"') == len(result.words)
    over = overlay_heatmap(image, result.image_heatmap())
    assert over.size == image.size and over.mode == "RGB"
    fig = layer_word_figure(result)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(result.words)
    assert len(ax.get_yticklabels()) == result.num_layers + 1


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(WORD, min_size=1, max_size=8), end=st.sampled_from(["", "?", "."]))
def test_words_of_any_question_are_recovered(models, words, end):
    model, processor = models["mma"]
    question = " ".join(words) + end
    result = question_word_attention(model, processor, Image.new("RGB", (32, 32)), question)
    assert [w for w, t in zip(result.words, result.is_template, strict=True) if not t] == question.split()
