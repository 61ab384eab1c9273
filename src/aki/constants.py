"""Constants every part of aki shares, defined once.

A leaf module (imports nothing from aki), so the attention rules, the processor, the data
pipeline and the model can all read it without breaking the package's import order.
"""

from __future__ import annotations

IGNORE_INDEX = -100
"""Label of a position that carries no loss (prompt, image, padding): PyTorch's cross-entropy default."""

IMAGE_TOKEN = "<image>"
"""The marker a prompt holds once per image; the processor expands it to ``num_image_tokens`` ids."""

END_OF_CHUNK_TOKEN = "<|endofchunk|>"
"""Ends a pre-training caption, as in the official release."""

PAD_TOKEN = "<pad>"
"""Added when a tokenizer has no pad token, or its pad equals its EOS (as in the official release)."""

ORDERS = ("I&T", "T&I")
"""Input orders of a prompt: image then text (the paper's default) or text then image (reversed)."""

__all__ = ["END_OF_CHUNK_TOKEN", "IGNORE_INDEX", "IMAGE_TOKEN", "ORDERS", "PAD_TOKEN"]
