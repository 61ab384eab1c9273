"""Tiny offline tokenizers: deterministic, fast, every character representable."""

from __future__ import annotations

import time

import pytest

from aki.processing import CHAT_TEMPLATES, FAMILIES, build_tiny_tokenizer

SCENE_CORPUS = [
    "A red cube is left of a blue sphere.",
    "Three green cylinders stand behind a small yellow cone.",
    "Émile's café — 東京 🙂 naïve façade\ttab\r\n",
]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_tokens_and_template(family):
    tok = build_tiny_tokenizer(family)
    spec = FAMILIES[family]
    vocab = tok.get_vocab()
    for name in (*spec.specials, *spec.plain_added):
        assert tok(name, add_special_tokens=False)["input_ids"] == [vocab[name]]
    n = len(tok)
    assert [vocab["<pad>"], vocab["<image>"], vocab["<|endofchunk|>"]] == [n - 3, n - 2, n - 1]
    assert tok.pad_token == "<pad>"
    assert tok.bos_token == spec.bos and tok.eos_token == spec.eos
    assert tok.chat_template == CHAT_TEMPLATES[family]
    assert tok.is_fast


def test_deterministic_and_fast():
    build_tiny_tokenizer("phi3", SCENE_CORPUS)  # warm the imports
    start = time.perf_counter()
    a = build_tiny_tokenizer("phi3", SCENE_CORPUS)
    elapsed = time.perf_counter() - start
    b = build_tiny_tokenizer("phi3", iter(SCENE_CORPUS))
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert elapsed < 1.0


@pytest.mark.parametrize("family", ["llama3", "qwen3"])
def test_every_character_round_trips(family):
    tok = build_tiny_tokenizer(family, SCENE_CORPUS, vocab_size=300)
    for text in [*SCENE_CORPUS, "unseen ✓ ∑ 𝔘 \x00 text"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok) <= 300


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        build_tiny_tokenizer("phi3", vocab_size=100)
    with pytest.raises(TypeError, match="strings"):
        build_tiny_tokenizer("phi3", corpus=["ok", 3])
