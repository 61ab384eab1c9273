"""Test helpers: hand-built batches for tiny models (no processor needed).

The tiny model presets themselves live in :mod:`aki.model.presets` (the trainer uses them too);
they are re-exported here, so ``aki.testing.tiny_model(backbone, rule, seed)`` keeps working.
"""

from __future__ import annotations

import torch

from aki.masks import Segment
from aki.model.presets import (
    BACKBONES,
    TINY_IMAGE_SIZE,
    TINY_NUM_IMAGE_TOKENS,
    build_seeded,
    tiny_config,
    tiny_model,
    tiny_processor,
    tiny_text_config,
    tiny_vision_config,
)

PAD_ID = 0


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
