"""Position ids that go with the rules: per-document restarts, left padding, CCA's rings."""

from __future__ import annotations

import torch

from aki.masks.rules import concentric_rings
from aki.masks.segments import Segment, TokenLayout


def _restart_per_document(steps: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Exclusive running sum of ``steps`` that restarts at every document boundary."""
    before = torch.cumsum(steps, dim=-1) - steps
    doc = layout.document_ids
    doc_start = torch.nn.functional.pad(doc[:, 1:] != doc[:, :-1], (1, 0), value=True)
    offset = torch.cummax(torch.where(doc_start, before, torch.zeros_like(before)), dim=-1).values
    return before - offset


def position_ids(layout: TokenLayout) -> torch.Tensor:
    """0, 1, 2, ... over real tokens, restarting per document; PAD tokens get 0 (never seen)."""
    steps = layout.valid.long()
    pos = _restart_per_document(steps, layout)
    return torch.where(layout.valid, pos, torch.zeros_like(pos))


def cca_position_ids(layout: TokenLayout, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """CCA positions: an image's tokens share one position per ring (outer ring first).

    Text advances by one per token; an image that starts at position p gives ring r position
    p + r, and the token after it continues at p + (largest ring) + 1.
    """
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
    # largest ring of each image = ring of its centre; rings grow then shrink in raster order,
    # so take the running max within the image and read it at the image's last token.
    ring_max = _running_max_within_image(rings, layout)
    steps = torch.where(is_image, torch.zeros_like(rings), layout.valid.long())
    steps = torch.where(last_of_image, ring_max + 1, steps)
    pos = _restart_per_document(steps, layout) + torch.where(is_image, rings, torch.zeros_like(rings))
    return torch.where(layout.valid, pos, torch.zeros_like(pos))


def _running_max_within_image(rings: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    # Offsetting each image by a large per-image constant makes a row-wide cummax stay inside it.
    big = int(rings.max().clamp(min=0)) + 2
    image_index = torch.cumsum((layout.image_rank == 0).long(), dim=-1)
    keyed = torch.where(rings >= 0, rings + image_index * big, torch.zeros_like(rings))
    return torch.where(rings >= 0, torch.cummax(keyed, dim=-1).values - image_index * big, rings)
