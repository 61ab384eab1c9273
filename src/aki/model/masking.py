"""The decoder's attention mask for a prompt read under an attention rule.

The rule's ``(or_mask, and_mask)`` functions (``aki.masks.Rule.mask_functions``) are combined with
causal attention, packed documents (an and-mask) and padding (the 2D mask), and rendered by
transformers' mask interface for the LLM's attention implementation: a bool tensor for sdpa, an
additive one for eager, a ``BlockMask`` for flex attention (block-sparse on GPU).

Why not ``create_causal_mask(or_mask_function=..., and_mask_function=...)`` itself: it evaluates
any custom function under ``torch.vmap`` (it cannot know it is index-based) and in one piece.
aki's rules are index-based, so :func:`aki.masks.render_mask` calls the same
``ALL_MASK_ATTENTION_FUNCTIONS`` interface with ``use_vmap=False`` in row chunks. Measured side
by side (``benchmarks/bench_masks.py``, MMA, B=8, L=8192, CPU): the same time within noise
(3.1-3.2 s each), half the peak memory (530 MiB instead of 1088 MiB for a 512 MiB mask).
``create_causal_mask`` also must not be given position ids: its packed-sequence detection would
read CCA's ring positions and left padding as document boundaries.

A prepared 4D mask bypasses the backbone's own sliding window, so the window is added here as an
and-mask: for every layer when the config has no ``layer_types`` (Phi-3, Mistral), else as the
``{"full_attention": ..., "sliding_attention": ...}`` mapping Qwen2/3 accept.
"""

from __future__ import annotations

import torch
from torch.nn.attention.flex_attention import and_masks, or_masks
from transformers.masking_utils import find_first_full_attention_index, sliding_window_overlay

from aki.masks import MaskMod, Rule, TokenLayout, causal_mask, render_mask


def is_flash(implementation: str | None) -> bool:
    return "flash" in (implementation or "")


def refuse_flash(rule: Rule, options: dict, implementation: str) -> None:
    """Flash attention takes no custom mask: a non-causal rule would silently run causal."""
    if is_flash(implementation) and not rule.is_causal(**options):
        raise ValueError(
            f"attn_implementation={implementation!r} cannot take the {rule.name!r} attention mask: it would "
            "silently run plain causal attention. Use 'sdpa', 'eager' or 'flex_attention' (block-sparse, fast "
            "on GPU), or attention_rule='causal'."
        )


def _window(text_config) -> int | None:
    window = getattr(text_config, "sliding_window", None)
    return int(window) if window else None


def mask_sizes(past_key_values, q_length: int, sliding: bool = False) -> tuple[int, int]:
    """``(kv_length, kv_offset)`` the attention will see for a prompt of ``q_length`` tokens (a
    static cache makes kv as long as the cache)."""
    if past_key_values is None:
        return q_length, 0
    if sliding:
        flags = list(getattr(past_key_values, "is_sliding", []))
        layer = flags.index(True) if True in flags else 0
    else:
        layer = find_first_full_attention_index(past_key_values)
    return past_key_values.get_mask_sizes(q_length, layer)


def key_length(text_config, past_key_values, q_length: int) -> int:
    """The longest key axis any layer's mask needs (the layout must cover it)."""
    lengths = [mask_sizes(past_key_values, q_length)[0]]
    if _window(text_config) is not None:
        lengths.append(mask_sizes(past_key_values, q_length, sliding=True)[0])
    return max(lengths)


def decoder_mask_function(rule: Rule, options: dict, layout: TokenLayout,
                       document_ids: torch.Tensor | None = None) -> MaskMod:
    """``(causal | or) & and & same_document``: the rule without padding (that is the 2D mask's)."""
    or_mask, and_mask = rule.mask_functions(layout, **options)
    fn = causal_mask if or_mask is None else or_masks(causal_mask, or_mask)
    extra = [m for m in (and_mask,) if m is not None]
    if document_ids is not None:
        docs = layout.document_ids

        def same_document(b, h, q, kv):
            return docs[b, q] == docs[b, kv]

        extra.append(same_document)
    return and_masks(fn, *extra) if extra else fn


def prompt_attention_mask(text_config, rule: Rule, options: dict, layout: TokenLayout, q_length: int, *,
                          past_key_values=None, document_ids: torch.Tensor | None = None,
                          dtype: torch.dtype = torch.float32):
    """The mask (or per-layer-type mapping) the LLM's decoder takes for a prompt read under ``rule``.

    ``layout`` covers the key axis (:func:`key_length`: the prompt, padded with PAD up to a static
    cache's size); its ``valid`` flags are the padding mask. Query rows are the first ``q_length``.
    """
    implementation = text_config._attn_implementation or "sdpa"
    refuse_flash(rule, options, implementation)
    fn = decoder_mask_function(rule, options, layout, document_ids)
    B = layout.segments.shape[0]
    device = layout.segments.device

    def render(mask_function, sliding: bool):
        kv_length, kv_offset = mask_sizes(past_key_values, q_length, sliding)
        return render_mask(mask_function, B, q_length, kv_length, implementation=implementation,
                           padding_mask=layout.valid, kv_offset=kv_offset, dtype=dtype, device=device)

    window = _window(text_config)
    if window is None:
        return render(fn, sliding=False)
    windowed = and_masks(fn, sliding_window_overlay(window))
    layer_types = getattr(text_config, "layer_types", None)
    if layer_types is None:  # every layer slides (Phi-3, Mistral)
        return render(windowed, sliding=False)
    masks = {}
    if "full_attention" in layer_types:
        masks["full_attention"] = render(fn, sliding=False)
    if "sliding_attention" in layer_types:
        masks["sliding_attention"] = render(windowed, sliding=True)
    return masks


__all__ = ["decoder_mask_function", "is_flash", "key_length", "mask_sizes", "prompt_attention_mask", "refuse_flash"]
