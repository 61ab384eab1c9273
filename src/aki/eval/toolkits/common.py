"""What both toolkit adapters share: loading a saved aki model, and one greedy answer."""

from __future__ import annotations

from pathlib import Path


def load(model_path: str | Path, device: str = "cpu", dtype: str | None = None):
    """``(model, processor)`` from a folder written by ``save_pretrained`` (checked first:
    :func:`aki.model.loading.load_pretrained`)."""
    from aki.model.loading import load_pretrained

    return load_pretrained(model_path, device=device, dtype=dtype, key="model_path")


def answer(model, processor, text: str, images: list, max_new_tokens: int) -> str:
    """One greedy answer; like the paper's models, only the first image is read."""
    from aki.eval.generation import generate_batch
    from aki.processing import load_image

    first = [load_image(images[0])] if images else []
    return generate_batch(model, processor, [text], [first], max_new_tokens)[0]
