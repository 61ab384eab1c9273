"""Rendering a mask function for an attention backend, through transformers' mask interface.

transformers' ``ALL_MASK_ATTENTION_FUNCTIONS`` turns a ``mask_mod(b, h, q, kv)`` into what each
attention implementation takes: a bool ``[B, 1, Lq, Lk]`` tensor (sdpa), an additive float
tensor (eager), a ``BlockMask`` (flex). Two things are added here, because transformers does
not do them:

- **Row chunks.** A dense mask is filled a few query rows at a time into one output tensor, so
  the mask function's intermediate full-size tensors (one per predicate) exist only for a chunk;
  the peak is the mask itself plus a chunk.
- **No vmap.** ``create_causal_mask`` evaluates any custom mask function under ``torch.vmap``
  (it cannot know the function is index-based). aki's rules are, so they are called on broadcast
  index grids (``use_vmap=False``).

Measured by ``benchmarks/bench_masks.py`` (MMA, B=8, L=8192, one thread of a shared 2-core CPU,
medians of 3): ``create_causal_mask`` with vmap 3.09 s and 1088 MiB peak, the interface in one
piece 3.14 s and 1088 MiB, in row chunks 3.21 s and 530 MiB, for a 512 MiB mask. The times are
equal within the noise; the chunks halve the peak, so they are what the model uses.
"""

from __future__ import annotations

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from aki.masks.rules import MaskMod

DENSE_IMPLEMENTATIONS = ("sdpa", "eager")
CHUNK_ELEMENTS = 1 << 24
"""Pairs evaluated at once when rendering a dense mask (16 Mi: 16 MiB per bool temporary)."""


def render_mask(
    mask_function: MaskMod,
    batch: int,
    q_length: int,
    kv_length: int | None = None,
    *,
    implementation: str = "sdpa",
    padding_mask: torch.Tensor | None = None,
    q_offset: int = 0,
    kv_offset: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    chunk_elements: int = CHUNK_ELEMENTS,
):
    """``mask_function`` rendered for ``implementation`` (``sdpa``: bool, True = may attend;
    ``eager``: additive ``dtype``; ``flex_attention``: ``BlockMask``).

    ``padding_mask``: optional 2D ``[B, kv]`` bool/int mask of real keys (padded with zeros up to
    ``kv_offset + kv_length`` as transformers does); rows ``q_offset .. q_offset + q_length``.
    """
    kv_length = q_length if kv_length is None else kv_length
    if implementation not in ALL_MASK_ATTENTION_FUNCTIONS:
        raise ValueError(
            f"no mask interface for attention implementation {implementation!r}; known: "
            f"{sorted(ALL_MASK_ATTENTION_FUNCTIONS)}."
        )
    interface = ALL_MASK_ATTENTION_FUNCTIONS[implementation]
    if padding_mask is not None:
        padding_mask = padding_mask.to(device=device, dtype=torch.bool)
    common = dict(
        batch_size=batch, kv_length=kv_length, kv_offset=kv_offset, mask_function=mask_function,
        attention_mask=padding_mask, allow_is_causal_skip=False, use_vmap=False, dtype=dtype, device=device,
    )
    if implementation not in DENSE_IMPLEMENTATIONS:
        return interface(q_length=q_length, q_offset=q_offset, **common)
    rows = max(1, chunk_elements // max(1, batch * kv_length))
    if rows >= q_length:
        return interface(q_length=q_length, q_offset=q_offset, **common)
    out = torch.empty(batch, 1, q_length, kv_length, device=device,
                      dtype=torch.bool if implementation == "sdpa" else dtype)
    for start in range(0, q_length, rows):
        n = min(rows, q_length - start)
        out[:, :, start : start + n] = interface(q_length=n, q_offset=q_offset + start, **common)
    return out


__all__ = ["CHUNK_ELEMENTS", "render_mask"]
