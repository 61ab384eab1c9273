"""Rendering a rule's mask_mod for each attention backend.

- dense bool ``[B, 1, L, L]`` (True = may attend): SDPA;
- additive float (0 / dtype min): eager attention;
- FlexAttention ``BlockMask``: the flex backend (block-sparse, near-flash speed on GPU).
"""

from __future__ import annotations

import torch

from aki.masks.rules import MaskMod


def render_dense(mask_mod: MaskMod, batch: int, length: int, device: torch.device | str = "cpu",
                 kv_length: int | None = None, q_offset: int = 0) -> torch.Tensor:
    """Evaluate ``mask_mod`` once on broadcast index grids: a bool ``[B, 1, Lq, Lk]`` tensor.

    ``q_offset`` renders only the rows ``q_offset .. q_offset + length`` (useful for chunked prefill).
    """
    kv_length = length if kv_length is None else kv_length
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    q = torch.arange(q_offset, q_offset + length, device=device).view(1, 1, length, 1)
    kv = torch.arange(kv_length, device=device).view(1, 1, 1, kv_length)
    out = mask_mod(b, h, q, kv)
    return out.expand(batch, 1, length, kv_length)


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bool mask -> additive float mask: 0 where attention is allowed, the dtype's minimum elsewhere."""
    if mask.dtype != torch.bool:
        raise TypeError(f"to_additive expects a bool mask (True = may attend); got {mask.dtype}.")
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill_(~mask, torch.finfo(dtype).min)


def to_block_mask(mask_mod: MaskMod, batch: int, length: int, device: torch.device | str = "cpu",
                  block_size: int = 128):
    """FlexAttention BlockMask for ``mask_mod`` (heads broadcast)."""
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(mask_mod, B=batch, H=None, Q_LEN=length, KV_LEN=length,
                             device=device, BLOCK_SIZE=block_size)
