"""The attention rules: one :class:`Rule` object per rule, all defined in this file.

A rule reads a prompt as attention-gym style mask functions ``mask_mod(b, h, q_idx, kv_idx) ->
bool`` over a :class:`~aki.masks.segments.TokenLayout`, in the form transformers' mask machinery
takes (``create_causal_mask(or_mask_function=, and_mask_function=)``)::

    allowed(q, kv) = (causal(q, kv) | or_mask(q, kv)) & and_mask(q, kv)

``Rule.mask_functions`` returns that ``(or_mask, and_mask)`` pair (either may be None); padding
and packed documents are added by whoever renders it (the model: transformers' 2D padding mask
and a document and-mask). ``Rule.mask_function`` is the complete rule on its own: real tokens of
one document only, plus the padding diagonal (a PAD query sees only itself, so no softmax row is
empty); ``aki.masks.build_attention_mask`` renders it and the paper-formula tests check it.

Mask functions only index per-token tensors computed here, so the same function renders on
broadcast index grids (one call, dense masks) and under vmap on scalar indices (flex attention's
``BlockMask``). Pitfall: comparing a tensor with a :class:`Segment` (an IntEnum) *inside* a
mask_mod silently becomes a constant False under flex tracing (torch 2.13); every comparison
with a Segment happens here, outside, on whole tensors.

Adding a rule: write its ``(or_mask, and_mask)`` factory and add one ``Rule(...)`` to ``RULES``.
Its options (validated), position ids and causal reduction travel with it; configs pass
``rule_options`` through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch.nn.attention.flex_attention import and_masks, or_masks

from aki.masks.positions import cca_position_ids, sequential_positions
from aki.masks.rings import check_grid, concentric_rings
from aki.masks.segments import Segment, TokenLayout

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Overlays = tuple[MaskMod | None, MaskMod | None]


def causal_mask(b, h, q, kv):
    """Standard autoregressive attention: a query sees itself and every earlier key."""
    return q >= kv


def _distinct_where(flag: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``key`` where ``flag``, else a value unique to the position (-1 - position, below every key).

    Comparing two such keys is one pass over the pairs: ``k[q] == k[kv]`` holds exactly when both
    are flagged with equal keys, or ``q == kv``. This keeps a dense rendering cheap (one full-size
    comparison per predicate instead of three)."""
    B, L = key.shape
    key = key - key.min() if key.numel() else key  # flagged keys >= 0 (a tensor op, no read-back)
    pos = torch.arange(L, device=key.device).expand(B, L)
    return torch.where(flag, key, -1 - pos)


# ------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class RuleOption:
    """One option of a rule: its name, what it does, and a check that returns the normalised value
    (raising ``TypeError`` / ``ValueError`` with the fix in the message)."""

    name: str
    description: str
    check: Callable[[Any], Any]


def as_fraction(unlock_fraction: float) -> Fraction:
    """The unlock fraction as an exact small fraction (so every implementation agrees bit for bit)."""
    if isinstance(unlock_fraction, bool) or not isinstance(unlock_fraction, int | float | Fraction) or math.isnan(
        float(unlock_fraction)
    ):
        raise TypeError(f"unlock_fraction must be a number in [0, 1]; got {unlock_fraction!r}.")
    if not 0.0 <= float(unlock_fraction) <= 1.0:
        raise ValueError(f"unlock_fraction must lie in [0, 1] (0 = causal, 1 = full MMA); got {unlock_fraction}.")
    return Fraction(unlock_fraction).limit_denominator(10_000)


# ------------------------------------------------------------------------------------ the rule


def _sequential(layout: TokenLayout, **_) -> torch.Tensor:
    return sequential_positions(layout)


def _never(**_) -> bool:
    return False


@dataclass(frozen=True)
class Rule:
    """An attention rule: name, description, options, mask functions, position ids.

    ``overlays(layout, **options) -> (or_mask, and_mask)`` is the rule's deviation from causal;
    ``positions(layout, **options)`` its position ids; ``causal_when(**options)`` says when the
    options reduce it to plain causal attention (then the model takes the LLM's native path).
    """

    name: str
    description: str
    overlays: Callable[..., Overlays]
    options: tuple[RuleOption, ...] = ()
    positions: Callable[..., torch.Tensor] = _sequential
    causal_when: Callable[..., bool] = _never

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    @property
    def has_sequential_positions(self) -> bool:
        """Whether the position ids are 0, 1, 2, ... over real tokens (every rule but CCA)."""
        return self.positions is _sequential

    def check_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validated, normalised options (None values dropped, as "use the default").

        Raises ``ValueError`` for an option the rule does not take, naming the ones it does.
        """
        given = {k: v for k, v in dict(options or {}).items() if v is not None}
        unknown = sorted(set(given) - set(self.option_names))
        if unknown:
            raise ValueError(
                f"rule {self.name!r} takes no option(s) {unknown}; its options are "
                f"{list(self.option_names) or 'none'}."
            )
        checks = {o.name: o.check for o in self.options}
        return {k: checks[k](v) for k, v in given.items()}

    def mask_functions(self, layout: TokenLayout, **options) -> Overlays:
        """``(or_mask, and_mask)`` to combine with causal attention (transformers' form)."""
        return self.overlays(layout, **self.check_options(options))

    def mask_function(self, layout: TokenLayout, **options) -> MaskMod:
        """The complete rule: ``(causal | or) & and`` between real tokens of one document, plus the
        padding diagonal. ``valid(q) & valid(kv) & same_doc & body | pad(q) & (q == kv)`` is
        written with one per-token key (real: its document, PAD: unique) as
        ``same_key & (body | pad(q))``."""
        or_mask, and_mask = self.mask_functions(layout, **options)
        body = causal_mask if or_mask is None else or_masks(causal_mask, or_mask)
        if and_mask is not None:
            body = and_masks(body, and_mask)
        key = _distinct_where(layout.valid, layout.document_ids)
        pad = ~layout.valid

        def rule_mask(b, h, q, kv):
            return (key[b, q] == key[b, kv]) & (body(b, h, q, kv) | pad[b, q])

        return rule_mask

    def position_ids(self, layout: TokenLayout, **options) -> torch.Tensor:
        """``[B, L]`` position ids that go with the rule (per document, left-padding aware)."""
        return self.positions(layout, **self.check_options(options))

    def is_causal(self, **options) -> bool:
        """Whether these options reduce the rule to plain causal attention."""
        return bool(self.causal_when(**self.check_options(options)))


# ------------------------------------------------------------------------------------ the rules


def _no_overlay(layout: TokenLayout) -> Overlays:
    return None, None


def _mma(layout: TokenLayout, unlock_fraction: Fraction = Fraction(1)) -> Overlays:
    """Modality-mutual attention, paper Eq. 5.

    Causal, or: the query is an IMAGE token, the key a QUERY token, and no ANSWER token lies
    between them (same block). The answer bound makes it leak-free for several images and turns.

    ``unlock_fraction`` f (paper App. E.4) unlocks only part of those extra image->query pairs,
    deterministically: with i the image token's index among the row's IMAGE tokens and j the key's
    index among the row's QUERY tokens, the pair is unlocked iff ``floor((i+j+1)·f) > floor((i+j)·f)``
    (f as an exact fraction n/d, d <= 10000). This spreads the unlocked pairs evenly along
    anti-diagonals: every image row gets about f·|question| of its question tokens, every question
    column about f·|image| image tokens; f = 0 is exactly causal and f = 1 exactly MMA.
    """
    # An IMAGE query and a QUERY key match when they share a block (no ANSWER between them);
    # other tokens get keys that never match.
    seg = layout.segments
    image_block = torch.where(seg == Segment.IMAGE, layout.block_ids, -1)
    query_block = torch.where(seg == Segment.QUERY, layout.block_ids, -2)

    def image_sees_question(b, h, q, kv):
        return image_block[b, q] == query_block[b, kv]

    if unlock_fraction == 1:
        return image_sees_question, None
    if unlock_fraction == 0:
        return None, None
    # floor((s+1)n/d) > floor(sn/d) with s = i + j  <=>  (s·n mod d) >= d - n
    #                                               <=>  ((i·n + n) mod d + (j·n mod d)) mod d < n.
    # Both terms are per-token residues in [0, d), so a pair costs one small-int add, a remainder
    # and a comparison (no int64 products, no table gather). Ranks of non-image / non-query tokens
    # are clamped to 0; image_sees_question masks those pairs out anyway.
    n, d = unlock_fraction.numerator, unlock_fraction.denominator
    small = torch.int16 if 2 * d < 2**15 else torch.int32
    i = layout.image_rank_in_row.clamp(min=0)
    j = layout.query_rank_in_row.clamp(min=0)
    image_residue = ((i * n + n) % d).to(small)
    query_residue = ((j * n) % d).to(small)

    def thinned(b, h, q, kv):
        return (image_residue[b, q] + query_residue[b, kv]) % d < n

    return and_masks(image_sees_question, thinned), None


def _mma_general(layout: TokenLayout) -> Overlays:
    """Modality-mutual attention for any number of modalities, paper Eq. 6.

    Causal, or: q and k have different modalities and lie in the same prompt block (neither is
    ANSWER and no ANSWER lies between them). Text (TEXT, QUERY) and image are the default
    modalities; pass ``modality_ids`` to :func:`~aki.masks.segments.token_layout` for more.
    """
    modality = layout.modality
    # same prompt block (real non-ANSWER tokens, no ANSWER between), as one key
    prompt_block = _distinct_where((layout.segments != Segment.ANSWER) & layout.valid, layout.block_ids)

    def cross_modal_prompt(b, h, q, kv):
        return (modality[b, q] != modality[b, kv]) & (prompt_block[b, q] == prompt_block[b, kv])

    return cross_modal_prompt, None


def _mixed(layout: TokenLayout) -> Overlays:
    """Mixed attention (MA, Show-o): causal, plus full attention inside each image."""
    image = _distinct_where(layout.image_ids >= 0, layout.image_ids)  # q == kv matches: causal anyway

    def same_image(b, h, q, kv):
        return image[b, q] == image[b, kv]

    return same_image, None


def _cca(layout: TokenLayout, grid: tuple[int, int] | None = None) -> Overlays:
    """Concentric causal attention (Xing et al., NeurIPS 2024), the CCA baseline.

    Inside each image (tokens laid on an h x w grid), a token sees the tokens of its own ring and
    of every outer ring (outer ring first, centre last); everything else is causal. CCA is the one
    rule that also *removes* causal pairs (an outer-ring token cannot see an earlier inner-ring
    token of its image), hence an and-mask. Its position ids give each ring one position.
    """
    rings = concentric_rings(layout, grid)
    image = _distinct_where(layout.image_ids >= 0, layout.image_ids)

    def outer_ring_of_same_image(b, h, q, kv):
        return (image[b, q] == image[b, kv]) & (rings[b, kv] <= rings[b, q])

    def not_inner_ring_of_same_image(b, h, q, kv):
        # outside an image ring -1 <= -1 (q == kv) or different keys: always allowed here
        return (image[b, q] != image[b, kv]) | (rings[b, kv] <= rings[b, q])

    return outer_ring_of_same_image, not_inner_ring_of_same_image


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "causal",
            "plain causal attention (the paper's I&T baseline; T&I order too)",
            _no_overlay,
            causal_when=lambda **_: True,
        ),
        Rule(
            "mma",
            "modality-mutual attention (paper Eq. 5): image tokens also see the later question",
            _mma,
            options=(
                RuleOption(
                    "unlock_fraction",
                    "share of image->question pairs unlocked, in [0, 1] (paper App. E.4); 1 = full MMA",
                    as_fraction,
                ),
            ),
            causal_when=lambda unlock_fraction=Fraction(1), **_: unlock_fraction == 0,
        ),
        Rule(
            "mma-general",
            "modality-mutual attention for any modalities (paper Eq. 6): cross-modal pairs of a prompt",
            _mma_general,
        ),
        Rule("mixed", "mixed attention (MA, Show-o): full attention inside each image", _mixed),
        Rule(
            "cca",
            "concentric causal attention (Xing et al. 2024): image tokens read outer rings first",
            _cca,
            options=(
                RuleOption("grid", "(h, w) token grid of an image; default: the square root", check_grid),
            ),
            positions=lambda layout, grid=None: cca_position_ids(layout, grid),
        ),
    )
}
"""Every attention rule by name (the names configs and the CLI use)."""

RULE_NAMES: tuple[str, ...] = tuple(RULES)


def get_rule(name: str) -> Rule:
    """The rule called ``name``; a clear error naming the known rules otherwise."""
    if isinstance(name, Rule):
        return name
    try:
        return RULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown attention rule {name!r}; choose one of {sorted(RULES)}.") from None


__all__ = [
    "RULES",
    "RULE_NAMES",
    "MaskMod",
    "Rule",
    "RuleOption",
    "as_fraction",
    "causal_mask",
    "get_rule",
]
