"""Tiny random AKI models for tests and examples: offline, deterministic, seconds on a CPU.

``tiny_model("phi3")`` gives a model whose vision tower is a 2-layer SigLIP on 32x32 images,
whose resampler makes 16 image tokens, and whose LLM is a 2-layer decoder of the chosen family
(hidden 64, 4 heads, 2 KV heads), with a processor built on the family's tiny tokenizer.
"""

from __future__ import annotations

from typing import Any

import torch

from aki.masks import Segment

TINY_IMAGE_SIZE = 32
TINY_NUM_IMAGE_TOKENS = 16
BACKBONES = ("llama", "phi3", "qwen2", "qwen3")
_TOKENIZER_FAMILY = {"llama": "llama3", "phi3": "phi3", "qwen2": "qwen2", "qwen3": "qwen3"}
_MODEL_TYPE = {"llama": "llama", "phi3": "phi3", "qwen2": "qwen2", "qwen3": "qwen3"}
FALLBACK_VOCAB = 512
PAD_ID = 0


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
                     eos_token_id: int | None = None, pad_token_id: int | None = None) -> dict[str, Any]:
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


def tiny_config(backbone: str = "llama", rule: str = "mma", *, vocab_size: int = FALLBACK_VOCAB,
                image_token_id: int | None = None, **overrides):
    """The :class:`~aki.model.AkiConfig` of a tiny model (no tokenizer needed)."""
    from aki.model import AkiConfig

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
    from aki.processing import AkiImageProcessor, AkiProcessor
    from aki.processing.tiny_tokenizer import build_tiny_tokenizer

    family = _TOKENIZER_FAMILY[backbone]
    tokenizer = build_tiny_tokenizer(family)
    image_processor = AkiImageProcessor(size=TINY_IMAGE_SIZE)
    return AkiProcessor(image_processor=image_processor, tokenizer=tokenizer,
                        num_image_tokens=TINY_NUM_IMAGE_TOKENS, family=family)


def tiny_model(backbone: str = "llama", rule: str = "mma", seed: int = 0, **overrides):
    """``(model, processor)``: a small random AKI model and its processor, the same for the same seed.

    ``overrides`` go to :class:`~aki.model.AkiConfig` (e.g. ``attn_implementation="eager"``,
    ``unlock_fraction=0.5``, ``freeze_vision=False``).
    """

    processor = tiny_processor(backbone)
    tok = processor.tokenizer
    text = tiny_text_config(
        backbone,
        len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    image_token_id = processor.image_token_id
    attn = overrides.pop("attn_implementation", None)
    config = tiny_config(backbone, rule, vocab_size=len(tok), image_token_id=image_token_id,
                         text_config=text, **overrides)
    model = build_seeded(config, seed, attn)
    return model, processor


def build_seeded(config, seed: int = 0, attn_implementation: str | None = None):
    """Build a model from ``config`` with weights fixed by ``seed`` (global RNG state restored after)."""
    from aki.model import AkiForConditionalGeneration

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AkiForConditionalGeneration._from_config(config, **kwargs)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def make_batch(config, layouts: list[str], seed: int = 0, padding: str = "left", pixel_seed: int = 0):
    """A hand-built batch (no processor needed) for layouts like ``"TT I QQQ"``: model inputs.

    Letters: T text, I one image (expands to num_image_tokens IMAGE tokens), Q question, A answer.
    Text ids are random (seeded) below the image token id.
    """
    g = torch.Generator().manual_seed(seed)
    n_img = config.num_image_tokens
    rows, segs, n_images = [], [], 0
    for layout in layouts:
        ids, seg = [], []
        for c in layout.replace(" ", ""):
            if c == "I":
                ids += [config.image_token_id] * n_img
                seg += [int(Segment.IMAGE)] * n_img
                n_images += 1
            else:
                ids.append(int(torch.randint(1, config.image_token_id, (1,), generator=g)))
                seg.append(int({"T": Segment.TEXT, "Q": Segment.QUERY, "A": Segment.ANSWER}[c]))
        rows.append(ids)
        segs.append(seg)
    L = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), L), PAD_ID, dtype=torch.long)
    segments = torch.full((len(rows), L), int(Segment.PAD), dtype=torch.long)
    for b, (ids, seg) in enumerate(zip(rows, segs, strict=True)):
        sl = slice(L - len(ids), L) if padding == "left" else slice(0, len(ids))
        input_ids[b, sl] = torch.tensor(ids)
        segments[b, sl] = torch.tensor(seg)
    attention_mask = (segments != Segment.PAD).long()
    size = config.vision_config.image_size
    pg = torch.Generator().manual_seed(pixel_seed)
    pixel_values = torch.randn(n_images, 3, size, size, generator=pg) if n_images else None
    return {"input_ids": input_ids, "attention_mask": attention_mask, "segments": segments,
            "pixel_values": pixel_values}


def split_rows(batch: dict, config) -> list[dict]:
    """The batch's rows as batch-size-1 batches without padding (images assigned in order)."""
    out, img = [], 0
    n_img = config.num_image_tokens
    for b in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][b].bool()
        ids = batch["input_ids"][b][keep][None]
        k = int((ids == config.image_token_id).sum()) // n_img
        px = batch["pixel_values"][img : img + k] if k else None
        img += k
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "segments": batch["segments"][b][keep][None], "pixel_values": px})
    return out


__all__ = [
    "BACKBONES",
    "TINY_IMAGE_SIZE",
    "TINY_NUM_IMAGE_TOKENS",
    "build_seeded",
    "make_batch",
    "split_rows",
    "tiny_config",
    "tiny_model",
    "tiny_processor",
    "tiny_text_config",
    "tiny_vision_config",
]
