"""The attention rules: MMA and its baselines, as pure functions of per-token segment labels.

Everything else in aki asks this package for masks::

    from aki.masks import Segment, build_attention_mask
    mask = build_attention_mask(segments, rule="mma")       # bool [B, 1, L, L], True = may attend
"""

from __future__ import annotations

import torch

from aki.masks.leaks import LeakageError, find_leaks, predicts_from_labels, reachable_max
from aki.masks.positions import cca_position_ids, position_ids
from aki.masks.render import render_dense, to_additive, to_block_mask
from aki.masks.rules import (
    RULE_OPTIONS,
    RULES,
    MaskMod,
    and_masks,
    causal_mod,
    concentric_rings,
    or_masks,
    rule_mask_mod,
)
from aki.masks.segments import Segment, TokenLayout, check_segments, token_layout

RULE_NAMES = tuple(RULES)


def _layout(segments, document_ids=None, image_ids=None, modality_ids=None) -> TokenLayout:
    return token_layout(segments, document_ids=document_ids, image_ids=image_ids, modality_ids=modality_ids)


def build_mask_mod(
    segments: torch.Tensor,
    rule: str = "mma",
    *,
    unlock_fraction: float | None = None,
    document_ids: torch.Tensor | None = None,
    image_ids: torch.Tensor | None = None,
    modality_ids: torch.Tensor | None = None,
    grid: tuple[int, int] | None = None,
) -> MaskMod:
    """The rule's ``mask_mod(b, h, q_idx, kv_idx)`` over these segments (FlexAttention style)."""
    layout = _layout(segments, document_ids, image_ids, modality_ids)
    return rule_mask_mod(layout, rule, unlock_fraction=unlock_fraction, grid=grid)


def build_attention_mask(
    segments: torch.Tensor,
    rule: str = "mma",
    *,
    unlock_fraction: float | None = None,
    document_ids: torch.Tensor | None = None,
    image_ids: torch.Tensor | None = None,
    modality_ids: torch.Tensor | None = None,
    grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Dense bool mask ``[B, 1, L, L]`` (True = may attend) of ``rule`` for SDPA.

    ``segments``: ``[B, L]`` :class:`Segment` labels (PAD anywhere: left or right padding).
    ``document_ids``: packed rows, no attention across documents. ``image_ids``: per-token image
    index when images touch. ``modality_ids``: extra modalities for ``mma-general``. ``grid``:
    the image token grid for ``cca``. ``unlock_fraction``: partial MMA (``mma`` only).
    A PAD query sees only itself, so no attention row is empty (no NaN).
    """
    segments = check_segments(segments)
    mod = build_mask_mod(segments, rule, unlock_fraction=unlock_fraction, document_ids=document_ids,
                         image_ids=image_ids, modality_ids=modality_ids, grid=grid)
    B, L = segments.shape
    return render_dense(mod, B, L, segments.device)


def build_additive_mask(segments: torch.Tensor, rule: str = "mma", *, dtype: torch.dtype = torch.float32,
                        **options) -> torch.Tensor:
    """Additive float mask ``[B, 1, L, L]`` (0 / dtype min) of ``rule`` for eager attention."""
    return to_additive(build_attention_mask(segments, rule, **options), dtype)


def build_block_mask(segments: torch.Tensor, rule: str = "mma", *, block_size: int = 128, **options):
    """FlexAttention ``BlockMask`` of ``rule`` for the flex backend."""
    segments = check_segments(segments)
    mod = build_mask_mod(segments, rule, **options)
    B, L = segments.shape
    return to_block_mask(mod, B, L, segments.device, block_size=block_size)


def build_position_ids(
    segments: torch.Tensor,
    rule: str = "mma",
    *,
    document_ids: torch.Tensor | None = None,
    image_ids: torch.Tensor | None = None,
    grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Position ids ``[B, L]`` that go with ``rule``: per-document, left-padding aware; CCA's rings."""
    layout = _layout(segments, document_ids, image_ids)
    if rule == "cca":
        return cca_position_ids(layout, grid)
    if rule not in RULES:
        raise ValueError(f"unknown attention rule {rule!r}; choose one of {sorted(RULES)}.")
    return position_ids(layout)


def check_no_leaks(segments: torch.Tensor, predicts: torch.Tensor, rule: str = "mma", **options) -> None:
    """Raise :class:`LeakageError` when ``rule`` lets a trained position see its own future."""
    mask = build_attention_mask(segments, rule, **options)
    leaks = find_leaks(mask, predicts)
    if bool(leaks.any()):
        b, p = (int(i) for i in leaks.nonzero()[0])
        seg = check_segments(segments)
        names = {int(s): s.name for s in Segment}
        raise LeakageError(
            f"attention rule {rule!r} leaks: in sample {b}, position {p} ({names[int(seg[b, p])]}) is trained "
            f"to predict token {p + 1} ({names[int(seg[b, p + 1])]}) but can attend, through the layers, to "
            f"later tokens ({int(leaks.sum())} leaking positions in the batch). Trained tokens must be "
            "labelled Segment.ANSWER (captions in pre-training too) so no rule unlocks them, or use the "
            "'causal' rule for this data (paper App. A: MMA in caption pre-training leaks)."
        )


__all__ = [
    "RULES",
    "RULE_NAMES",
    "RULE_OPTIONS",
    "LeakageError",
    "MaskMod",
    "Segment",
    "TokenLayout",
    "and_masks",
    "build_additive_mask",
    "build_attention_mask",
    "build_block_mask",
    "build_mask_mod",
    "build_position_ids",
    "causal_mod",
    "cca_position_ids",
    "check_no_leaks",
    "check_segments",
    "concentric_rings",
    "find_leaks",
    "or_masks",
    "position_ids",
    "predicts_from_labels",
    "reachable_max",
    "render_dense",
    "to_additive",
    "to_block_mask",
    "token_layout",
]
