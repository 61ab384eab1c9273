"""The attention rules, as FlexAttention-style ``mask_mod(b, h, q_idx, kv_idx) -> bool`` functions.

A rule is built from a :class:`~aki.masks.segments.TokenLayout` and returns one ``mask_mod``.
The same function renders to a dense ``[B, 1, L, L]`` mask (called once on broadcast index
grids, so no Python loop over positions) and to a FlexAttention ``BlockMask`` (called under
vmap on scalar indices). Small predicates are composed with :func:`and_masks` /
:func:`or_masks`, as in attention-gym.

Every rule is ``valid(q) & valid(k) & same_document(q, k) & (causal(q, k) | extra(q, k))`` plus
the padding diagonal (a PAD query sees only itself, so its softmax row stays finite). CCA is the
one rule that also *removes* causal pairs: an outer-ring image token cannot see an earlier
inner-ring token of its image (see :func:`cca`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import torch

from aki.masks.segments import Segment, TokenLayout

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def and_masks(*mods: MaskMod) -> MaskMod:
    """Intersection of mask_mods."""

    def mod(b, h, q, kv):
        out = mods[0](b, h, q, kv)
        for m in mods[1:]:
            out = out & m(b, h, q, kv)
        return out

    return mod


def or_masks(*mods: MaskMod) -> MaskMod:
    """Union of mask_mods."""

    def mod(b, h, q, kv):
        out = mods[0](b, h, q, kv)
        for m in mods[1:]:
            out = out | m(b, h, q, kv)
        return out

    return mod


def causal_mod(b, h, q, kv):
    """Standard autoregressive rule: a query sees itself and every earlier key."""
    return q >= kv


def _distinct_where(flag: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``key`` where ``flag``, else a value unique to the position (-1 - position, below every key).

    Comparing two such keys is one pass over the pairs: ``k[q] == k[kv]`` holds exactly when both
    are flagged with equal keys, or ``q == kv``. This is what keeps the dense rendering cheap (one
    full-size comparison per predicate instead of three)."""
    B, L = key.shape
    key = key - key.min() if key.numel() else key  # flagged keys >= 0
    pos = torch.arange(L, device=key.device).expand(B, L)
    return torch.where(flag, key, -1 - pos)


def _finish(layout: TokenLayout, body: MaskMod) -> MaskMod:
    """Restrict a rule body to real tokens of one document and add the PAD diagonal.

    ``valid(q) & valid(kv) & same_document(q, kv) & body | pad(q) & (q == kv)``, written with one
    per-token key (real tokens: their document; PAD: unique) as ``same_key & (body | pad(q))``.
    """
    key = _distinct_where(layout.valid, layout.document_ids)
    pad = ~layout.valid

    def mod(b, h, q, kv):
        return (key[b, q] == key[b, kv]) & (body(b, h, q, kv) | pad[b, q])

    return mod


def as_fraction(unlock_fraction: float) -> Fraction:
    """The unlock fraction as an exact small fraction (so every implementation agrees bit for bit)."""
    if not (isinstance(unlock_fraction, int | float | Fraction)) or math.isnan(float(unlock_fraction)):
        raise TypeError(f"unlock_fraction must be a number in [0, 1]; got {unlock_fraction!r}.")
    if not 0.0 <= float(unlock_fraction) <= 1.0:
        raise ValueError(f"unlock_fraction must lie in [0, 1] (0 = causal, 1 = full MMA); got {unlock_fraction}.")
    return Fraction(unlock_fraction).limit_denominator(10_000)


def causal(layout: TokenLayout) -> MaskMod:
    """The plain causal mask (the paper's I&T baseline; also used for T&I order)."""
    return _finish(layout, causal_mod)


def mma(layout: TokenLayout, unlock_fraction: float = 1.0) -> MaskMod:
    """Modality-mutual attention, paper Eq. 5.

    Causal, or: the query is an IMAGE token, the key a QUERY token, and no ANSWER token lies
    between them (same block). The answer bound makes it leak-free for several images and turns.

    ``unlock_fraction`` f (paper App. E.4) unlocks only part of those extra image->query pairs,
    deterministically: with i the image token's index among the row's IMAGE tokens and j the key's
    index among the row's QUERY tokens, the pair is unlocked iff ``floor((i+j+1)·f) > floor((i+j)·f)``
    (f as an exact fraction with denominator <= 10000). This spreads the unlocked pairs evenly along
    anti-diagonals: every image row gets about f·|question| of its question tokens, every question
    column about f·|image| image tokens; f = 0 is exactly causal and f = 1 exactly MMA.
    """
    # Per-token keys computed here, not inside the mask_mod: comparing against a Segment (an
    # IntEnum) inside a mask_mod is silently mis-evaluated by flex_attention (torch 2.13: the
    # comparison becomes a constant False under its tracing). An IMAGE query and a QUERY key
    # match when they share a block (no ANSWER between them); other tokens get distinct keys.
    block = layout.block_ids
    seg = layout.segments
    image_block = torch.where(seg == Segment.IMAGE, block, -1)
    query_block = torch.where(seg == Segment.QUERY, block, -2)
    frac = as_fraction(unlock_fraction)
    num, den = frac.numerator, frac.denominator
    img_rank, qry_rank = layout.image_rank_in_row, layout.query_rank_in_row

    def image_sees_question(b, h, q, kv):
        return image_block[b, q] == query_block[b, kv]

    if frac == 1:
        extra = image_sees_question
    elif frac == 0:
        return causal(layout)
    else:

        # Whether anti-diagonal s = i + j is unlocked depends on s alone: tabulate it once, so the
        # mask_mod does one small-int add and a lookup instead of int64 arithmetic on every pair.
        # Ranks are clamped to >= 0 (the -1 of non-image / non-query tokens is masked out by
        # image_sees_question anyway), so every index lies inside the table.
        i = img_rank.clamp(min=0).to(torch.int32)
        j = qry_rank.clamp(min=0).to(torch.int32)
        top = (int(i.max()) + int(j.max())) if i.numel() else 0
        s = torch.arange(top + 1, device=i.device)
        table = ((s + 1) * num) // den > (s * num) // den

        def thinned(b, h, q, kv):
            return table[i[b, q] + j[b, kv]]

        extra = and_masks(image_sees_question, thinned)
    return _finish(layout, or_masks(causal_mod, extra))


def mma_general(layout: TokenLayout) -> MaskMod:
    """Modality-mutual attention for any number of modalities, paper Eq. 6.

    Causal, or: q and k have different modalities and lie in the same prompt block (neither is
    ANSWER and no ANSWER lies between them). Text (TEXT, QUERY) and image are the default
    modalities; pass ``modality_ids`` to :func:`~aki.masks.segments.token_layout` for more.
    """
    modality = layout.modality
    # same prompt block (neither ANSWER, no ANSWER between), as one key (keys outside: see mma())
    prompt_block = _distinct_where(layout.segments != Segment.ANSWER, layout.block_ids)

    def cross_modal_prompt(b, h, q, kv):
        return (modality[b, q] != modality[b, kv]) & (prompt_block[b, q] == prompt_block[b, kv])

    return _finish(layout, or_masks(causal_mod, cross_modal_prompt))


def mixed(layout: TokenLayout) -> MaskMod:
    """Mixed attention (MA, Show-o): causal, plus full attention inside each image."""
    image = _distinct_where(layout.image_ids >= 0, layout.image_ids)  # q == kv matches: causal anyway

    def same_image(b, h, q, kv):
        return image[b, q] == image[b, kv]

    return _finish(layout, or_masks(causal_mod, same_image))


def concentric_rings(layout: TokenLayout, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Ring index of every IMAGE token on its image's h x w grid (0 = outermost ring), -1 elsewhere.

    Without ``grid`` each image must have a square number of tokens (144 -> 12 x 12).
    """
    seg, rank = layout.segments, layout.image_rank
    is_image = seg == Segment.IMAGE
    if grid is None:
        if is_image.any():
            # number of tokens in each image: 1 + the largest rank carrying that image's id
            sizes = _image_sizes(layout)
            side = torch.sqrt(sizes.float()).round().long()
            if not torch.equal(side * side, sizes):
                bad = sorted(set(sizes[side * side != sizes].tolist()))
                raise ValueError(
                    f"CCA needs every image on a square grid, but images have {bad} tokens; "
                    "pass grid=(h, w) with h*w equal to the number of tokens per image."
                )
            h = w = int(side.max())
            if not bool((side == h).all()):
                raise ValueError(
                    f"CCA got images of different sizes {sorted(set(sizes.tolist()))}; "
                    "pass grid=(h, w) or use one number of tokens per image."
                )
        else:
            h = w = 1
    else:
        h, w = (int(grid[0]), int(grid[1]))
        if is_image.any():
            sizes = _image_sizes(layout)
            if bool((sizes != h * w).any()):
                raise ValueError(
                    f"CCA grid {h}x{w} expects {h * w} tokens per image, got {sorted(set(sizes.tolist()))}."
                )
    row = torch.div(rank, w, rounding_mode="floor")
    col = rank % w
    ring = torch.minimum(torch.minimum(row, col), torch.minimum(h - 1 - row, w - 1 - col))
    return torch.where(is_image, ring, torch.full_like(ring, -1))


def _image_sizes(layout: TokenLayout) -> torch.Tensor:
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


def cca(layout: TokenLayout, grid: tuple[int, int] | None = None) -> MaskMod:
    """Concentric causal attention (Xing et al., NeurIPS 2024), the CCA baseline.

    Inside each image (tokens laid on an h x w grid), a token sees the tokens of its own ring and
    of every outer ring (outer ring first, centre last); everything else is causal. Pair it with
    :func:`aki.masks.positions.cca_position_ids`, which gives each ring one position id.
    """
    rings = concentric_rings(layout, grid)
    # q == kv outside images also "matches"; there ring -1 <= -1 allows it, as causal would
    image = _distinct_where(layout.image_ids >= 0, layout.image_ids)

    def body(b, h, q, kv):
        return torch.where(image[b, q] == image[b, kv], rings[b, kv] <= rings[b, q], q >= kv)

    return _finish(layout, body)


RULES: dict[str, Callable[..., MaskMod]] = {
    "causal": causal,
    "mma": mma,
    "mma-general": mma_general,
    "mixed": mixed,
    "cca": cca,
}
"""Every attention rule by name (the names configs and the CLI use)."""

RULE_OPTIONS: dict[str, frozenset[str]] = {
    "causal": frozenset(),
    "mma": frozenset({"unlock_fraction"}),
    "mma-general": frozenset(),
    "mixed": frozenset(),
    "cca": frozenset({"grid"}),
}


def rule_mask_mod(layout: TokenLayout, rule: str = "mma", **options) -> MaskMod:
    """Look a rule up by name and build its mask_mod for ``layout``."""
    if rule not in RULES:
        raise ValueError(f"unknown attention rule {rule!r}; choose one of {sorted(RULES)}.")
    unknown = set(k for k, v in options.items() if v is not None) - RULE_OPTIONS[rule]
    if unknown:
        raise ValueError(
            f"rule {rule!r} takes no option(s) {sorted(unknown)}; its options are "
            f"{sorted(RULE_OPTIONS[rule]) or 'none'}."
        )
    return RULES[rule](layout, **{k: v for k, v in options.items() if v is not None})
