"""The attention rules: MMA and its baselines, as functions of per-token segment labels.

Everything else in aki asks this package for masks::

    from aki.masks import Segment, build_attention_mask, get_rule
    mask = build_attention_mask(segments, rule="mma")       # bool [B, 1, L, L], True = may attend
    rule = get_rule("mma")                                  # the Rule object: options, mask functions,
    or_mask, and_mask = rule.mask_functions(token_layout(segments), unlock_fraction=0.5)
"""

from __future__ import annotations

import torch

from aki.masks.leaks import LeakageError, find_leaks, predicts_from_labels, reachable_max
from aki.masks.positions import cca_position_ids, sequential_positions
from aki.masks.render import render_mask
from aki.masks.rings import concentric_rings
from aki.masks.rules import RULE_NAMES, RULES, MaskMod, Rule, RuleOption, causal_mask, get_rule
from aki.masks.segments import Segment, TokenLayout, check_segments, token_layout


def rule_mask_function(
    segments: torch.Tensor,
    rule: str = "mma",
    *,
    document_ids: torch.Tensor | None = None,
    image_ids: torch.Tensor | None = None,
    modality_ids: torch.Tensor | None = None,
    **rule_options,
) -> MaskMod:
    """The complete ``mask_mod(b, h, q_idx, kv_idx)`` of ``rule`` over these segments."""
    the_rule = get_rule(rule)
    layout = token_layout(segments, document_ids=document_ids, image_ids=image_ids, modality_ids=modality_ids)
    return the_rule.mask_function(layout, **rule_options)


def build_attention_mask(segments: torch.Tensor, rule: str = "mma", **options) -> torch.Tensor:
    """Dense bool mask ``[B, 1, L, L]`` (True = may attend) of ``rule`` for SDPA.

    ``segments``: ``[B, L]`` :class:`Segment` labels (PAD anywhere: left or right padding).
    Keyword options: ``document_ids`` (packed rows, no attention across documents), ``image_ids``
    (per-token image index when images touch), ``modality_ids`` (extra modalities for
    ``mma-general``), and the rule's own options (``unlock_fraction`` for ``mma``, ``grid`` for
    ``cca``). A PAD query sees only itself, so no attention row is empty (no NaN).
    """
    mod = rule_mask_function(segments, rule, **options)
    B, L = check_segments(segments).shape
    return render_mask(mod, B, L, implementation="sdpa", device=torch.as_tensor(segments).device)


def build_additive_mask(segments: torch.Tensor, rule: str = "mma", *, dtype: torch.dtype = torch.float32,
                        **options) -> torch.Tensor:
    """Additive float mask ``[B, 1, L, L]`` (0 / dtype min) of ``rule`` for eager attention."""
    mod = rule_mask_function(segments, rule, **options)
    B, L = check_segments(segments).shape
    return render_mask(mod, B, L, implementation="eager", dtype=dtype, device=torch.as_tensor(segments).device)


def build_block_mask(segments: torch.Tensor, rule: str = "mma", *, block_size: int = 128, **options):
    """FlexAttention ``BlockMask`` of ``rule`` (block-sparse: skipped tiles cost nothing on GPU)."""
    from torch.nn.attention.flex_attention import create_block_mask

    mod = rule_mask_function(segments, rule, **options)
    B, L = check_segments(segments).shape
    return create_block_mask(mod, B=B, H=None, Q_LEN=L, KV_LEN=L, device=torch.as_tensor(segments).device,
                             BLOCK_SIZE=block_size)


def build_position_ids(
    segments: torch.Tensor,
    rule: str = "mma",
    *,
    document_ids: torch.Tensor | None = None,
    image_ids: torch.Tensor | None = None,
    **rule_options,
) -> torch.Tensor:
    """Position ids ``[B, L]`` that go with ``rule``: per-document, left-padding aware; CCA's rings."""
    the_rule = get_rule(rule)
    layout = token_layout(segments, document_ids=document_ids, image_ids=image_ids)
    return the_rule.position_ids(layout, **rule_options)


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
    "LeakageError",
    "MaskMod",
    "Rule",
    "RuleOption",
    "Segment",
    "TokenLayout",
    "build_additive_mask",
    "build_attention_mask",
    "build_block_mask",
    "build_position_ids",
    "causal_mask",
    "cca_position_ids",
    "check_no_leaks",
    "check_segments",
    "concentric_rings",
    "find_leaks",
    "get_rule",
    "predicts_from_labels",
    "reachable_max",
    "render_mask",
    "rule_mask_function",
    "sequential_positions",
    "token_layout",
]
