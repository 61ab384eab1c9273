"""Position ids that go with the rules: per-document restarts, left padding, CCA's rings.

Every function is tensor ops only (no read-back from the device), so the model can call them on
its hot path.
"""

from __future__ import annotations

import torch

from aki.masks.rings import concentric_rings, largest_ring, resolve_grid
from aki.masks.segments import Segment, TokenLayout


def _restart_per_document(steps: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Exclusive running sum of ``steps`` that restarts at every document boundary."""
    before = torch.cumsum(steps, dim=-1) - steps
    doc = layout.document_ids
    doc_start = torch.nn.functional.pad(doc[:, 1:] != doc[:, :-1], (1, 0), value=True)
    offset = torch.cummax(torch.where(doc_start, before, torch.zeros_like(before)), dim=-1).values
    return before - offset


def sequential_positions(layout: TokenLayout) -> torch.Tensor:
    """0, 1, 2, ... over real tokens, restarting per document; PAD tokens get 0 (never seen)."""
    steps = layout.valid.long()
    pos = _restart_per_document(steps, layout)
    return torch.where(layout.valid, pos, torch.zeros_like(pos))


def cca_position_ids(layout: TokenLayout, grid=None) -> torch.Tensor:
    """CCA positions: an image's tokens share one position per ring (outer ring first).

    Text advances by one per token; an image that starts at position p gives ring r position
    p + r, and the token after it continues at p + (largest ring) + 1.
    """
    grid = resolve_grid(layout, grid)
    rings = concentric_rings(layout, grid)
    is_image = layout.segments == Segment.IMAGE
    # Each image advances the position by (its largest ring + 1), charged to its last token.
    nxt_same = torch.nn.functional.pad(
        is_image[:, 1:]
        & (layout.image_ids[:, 1:] == layout.image_ids[:, :-1])
        & (layout.document_ids[:, 1:] == layout.document_ids[:, :-1]),
        (0, 1),
        value=False,
    )
    last_of_image = is_image & ~nxt_same
    steps = torch.where(is_image, torch.zeros_like(rings), layout.valid.long())
    steps = torch.where(last_of_image, torch.full_like(steps, largest_ring(grid) + 1), steps)
    pos = _restart_per_document(steps, layout) + torch.where(is_image, rings, torch.zeros_like(rings))
    return torch.where(layout.valid, pos, torch.zeros_like(pos))


__all__ = ["cca_position_ids", "sequential_positions"]
