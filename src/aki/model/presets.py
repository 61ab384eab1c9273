"""Tiny model presets: small random AKI models that build offline, deterministically, in seconds.

The trainer's ``init.tiny`` presets, the quickstart, the benchmarks and the tests all start from
them. ``tiny_model("phi3")`` gives a model whose vision tower is a 2-layer SigLIP on 32x32 images,
whose resampler makes 16 image tokens, and whose LLM is a 2-layer decoder of the chosen family
(hidden 64, 4 heads, 2 KV heads), with a processor built on the family's tiny tokenizer and a
generation config that stops at the family's end-of-turn tokens.
"""

from __future__ import annotations

from typing import Any

import torch

TINY_IMAGE_SIZE = 32
TINY_NUM_IMAGE_TOKENS = 16
BACKBONES = ("llama", "phi3", "qwen2", "qwen3")
_TOKENIZER_FAMILY = {"llama": "llama3", "phi3": "phi3", "qwen2": "qwen2", "qwen3": "qwen3"}
_MODEL_TYPE = {"llama": "llama", "phi3": "phi3", "qwen2": "qwen2", "qwen3": "qwen3"}
FALLBACK_VOCAB = 512


def tiny_vision_config() -> dict[str, Any]:
    """A 2-layer SigLIP vision tower on 32x32 images in 8x8 patches (16 tokens of width 32)."""
    return {
        "model_type": "siglip_vision_model",
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": 8,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }


def tiny_text_config(backbone: str, vocab_size: int, *, bos_token_id: int | None = None,
                     eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None) -> dict[str, Any]:
    """A 2-layer decoder of ``backbone``'s family: hidden 64, 4 heads, 2 KV heads."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown tiny backbone {backbone!r}; choose one of {BACKBONES}.")
    cfg: dict[str, Any] = {
        "model_type": _MODEL_TYPE[backbone],
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }
    if backbone == "phi3":
        cfg["sliding_window"] = None
        cfg["original_max_position_embeddings"] = 512
    if backbone in ("qwen2", "qwen3"):
        cfg["use_sliding_window"] = False
    if backbone == "qwen3":
        cfg["head_dim"] = 16
    return cfg


def sized_text_config(backbone: str, vocab_size: int, hidden: int, layers: int,
                      max_positions: int = 4096) -> dict[str, Any]:
    """A decoder of ``backbone``'s family at a chosen size (heads of 64, GQA 4:1, MLP 4x): the
    shapes the benchmarks time, between the tiny presets and the paper's 3-4B models."""
    cfg = tiny_text_config(backbone, vocab_size)
    cfg.update({
        "hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64), "num_key_value_heads": max(1, hidden // 256),
        "max_position_embeddings": max_positions,
    })
    cfg.pop("head_dim", None)
    if backbone == "phi3":
        cfg["original_max_position_embeddings"] = max_positions
    return cfg


def tiny_config(backbone: str = "llama", rule: str = "mma", *, vocab_size: int = FALLBACK_VOCAB,
                image_token_id: int | None = None, **overrides):
    """The :class:`~aki.model.AkiConfig` of a tiny model (no tokenizer needed).

    ``overrides`` go to the config (``rule_options={"unlock_fraction": 0.5}``, ``text_config=``, ...).
    """
    from aki.model.configuration import AkiConfig

    text = overrides.pop("text_config", None) or tiny_text_config(backbone, vocab_size)
    resampler = {"num_latents": TINY_NUM_IMAGE_TOKENS, "depth": 2, "heads": 2, "head_dim": 16, "ff_mult": 2}
    resampler.update(overrides.pop("resampler_config", {}) or {})
    return AkiConfig(
        vision_config=overrides.pop("vision_config", None) or tiny_vision_config(),
        resampler_config=resampler,
        text_config=text,
        image_token_id=vocab_size - 1 if image_token_id is None else image_token_id,
        attention_rule=rule,
        **overrides,
    )


def tiny_processor(backbone: str = "llama"):
    """The processor of a tiny model: the family's tiny tokenizer + a 32x32 SigLIP image processor."""
    from aki.processing import AkiProcessor, siglip_image_processor
    from aki.processing.tiny_tokenizer import build_tiny_tokenizer

    if backbone not in BACKBONES:
        raise ValueError(f"unknown tiny backbone {backbone!r}; choose one of {BACKBONES}.")
    family = _TOKENIZER_FAMILY[backbone]
    tokenizer = build_tiny_tokenizer(family)
    image_processor = siglip_image_processor(TINY_IMAGE_SIZE)
    return AkiProcessor(image_processor=image_processor, tokenizer=tokenizer,
                        num_image_tokens=TINY_NUM_IMAGE_TOKENS, family=family)


def build_seeded(config, seed: int = 0, attn_implementation: str | None = None):
    """Build a model from ``config`` with weights fixed by ``seed`` (global RNG state restored after)."""
    from aki.model.modeling import AkiForConditionalGeneration

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AkiForConditionalGeneration._from_config(config, **kwargs)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def tiny_model(backbone: str = "llama", rule: str = "mma", seed: int = 0, **overrides):
    """``(model, processor)``: a small random AKI model and its processor, the same for the same seed.

    ``overrides`` go to :class:`~aki.model.AkiConfig` (e.g. ``attn_implementation="eager"``,
    ``rule_options={"unlock_fraction": 0.5}``, ``freeze_vision=False``).
    """
    from aki.model.generation import generation_config_for

    processor = tiny_processor(backbone)
    tok = processor.tokenizer
    text = tiny_text_config(
        backbone,
        len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=list(processor.eos_token_ids),
        pad_token_id=processor.pad_token_id,
    )
    attn = overrides.pop("attn_implementation", None)
    config = tiny_config(backbone, rule, vocab_size=len(tok), image_token_id=processor.image_token_id,
                         text_config=text, **overrides)
    model = build_seeded(config, seed, attn)
    model.generation_config = generation_config_for(processor)
    return model, processor


__all__ = [
    "BACKBONES",
    "FALLBACK_VOCAB",
    "TINY_IMAGE_SIZE",
    "TINY_NUM_IMAGE_TOKENS",
    "build_seeded",
    "sized_text_config",
    "tiny_config",
    "tiny_model",
    "tiny_processor",
    "tiny_text_config",
    "tiny_vision_config",
]
