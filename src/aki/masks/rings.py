"""CCA's concentric rings: where each image token sits on its image's h x w token grid.

Shared by the CCA mask (an image token sees its own and every outer ring) and CCA's position ids
(one position per ring). The grid comes from the ``grid`` option or is the square root of the tokens per image.
When the layout carries ``tokens_per_image`` (the model's resampler latents) every check runs on
the host; otherwise the image sizes are read back from the device and checked (public builders).
"""

from __future__ import annotations

import math

import torch

from aki.masks.segments import Segment, TokenLayout


def image_sizes(layout: TokenLayout) -> torch.Tensor:
    """Token count of every image (1-D, one entry per image occurrence)."""
    is_image = layout.segments == Segment.IMAGE
    nxt_same = torch.nn.functional.pad(
        (layout.image_ids[:, 1:] == layout.image_ids[:, :-1])
        & (layout.document_ids[:, 1:] == layout.document_ids[:, :-1])
        & is_image[:, 1:],
        (0, 1),
        value=False,
    )
    last = is_image & ~nxt_same
    return layout.image_rank[last] + 1


def check_grid(grid) -> tuple[int, int]:
    """A ``(h, w)`` grid of positive ints (the ``grid`` option of ``cca``)."""
    try:
        h, w = (int(grid[0]), int(grid[1]))
        ok = len(grid) == 2 and h >= 1 and w >= 1 and (h, w) == (grid[0], grid[1])
    except (TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"grid must be two positive integers (h, w), e.g. (12, 12); got {grid!r}.")
    return h, w


def resolve_grid(layout: TokenLayout, grid=None) -> tuple[int, int]:
    """The ``(h, w)`` token grid of the layout's images.

    With the layout's ``tokens_per_image`` (the model sets it) everything is checked on the host;
    otherwise every image's token count is read back from the device and checked.
    """
    known = layout.tokens_per_image
    if known is not None:
        n = int(known)
        if grid is not None:
            h, w = check_grid(grid)
            if h * w != n:
                raise ValueError(f"CCA grid {h}x{w} expects {h * w} tokens per image, but images have {n}.")
            return h, w
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(
                f"CCA needs every image on a square grid, but images have {n} tokens; "
                "pass grid=(h, w) in rule_options with h*w equal to the number of tokens per image."
            )
        return side, side
    is_image = layout.segments == Segment.IMAGE
    if grid is not None:
        h, w = check_grid(grid)
        if bool(is_image.any()):
            sizes = image_sizes(layout)
            if bool((sizes != h * w).any()):
                raise ValueError(
                    f"CCA grid {h}x{w} expects {h * w} tokens per image, got {sorted(set(sizes.tolist()))}."
                )
        return h, w
    if not bool(is_image.any()):
        return 1, 1
    sizes = image_sizes(layout)
    side = torch.sqrt(sizes.float()).round().long()
    if not torch.equal(side * side, sizes):
        bad = sorted(set(sizes[side * side != sizes].tolist()))
        raise ValueError(
            f"CCA needs every image on a square grid, but images have {bad} tokens; "
            "pass grid=(h, w) with h*w equal to the number of tokens per image."
        )
    h = int(side.max())
    if not bool((side == h).all()):
        raise ValueError(
            f"CCA got images of different sizes {sorted(set(sizes.tolist()))}; "
            "pass grid=(h, w) or use one number of tokens per image."
        )
    return h, h


def concentric_rings(layout: TokenLayout, grid=None) -> torch.Tensor:
    """Ring index of every IMAGE token on its image's h x w grid (0 = outermost ring), -1 elsewhere.

    Without ``grid`` each image must have a square number of tokens (144 -> 12 x 12).
    """
    h, w = resolve_grid(layout, grid)
    rank = layout.image_rank
    row = torch.div(rank, w, rounding_mode="floor")
    col = rank % w
    ring = torch.minimum(torch.minimum(row, col), torch.minimum(h - 1 - row, w - 1 - col))
    return torch.where(layout.segments == Segment.IMAGE, ring, torch.full_like(ring, -1))


def largest_ring(grid: tuple[int, int]) -> int:
    """The innermost ring's index on an h x w grid."""
    return (min(grid) - 1) // 2


__all__ = ["check_grid", "concentric_rings", "image_sizes", "largest_ring", "resolve_grid"]
