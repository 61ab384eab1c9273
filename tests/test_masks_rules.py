"""Rule objects, and the mask the model hands its decoder, against the paper-formula references.

The model renders a rule as ``(causal | or_mask) & and_mask`` plus documents and the 2D padding
mask, through transformers' mask interface (``aki.model.masking``). On every real query row that
must equal the reference (``test_masks_reference.ref_mask``), for sdpa and eager, in row chunks,
and with a static cache's extra key slots (which no row may see).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig

from aki.masks import RULE_NAMES, RULES, Rule, Segment, build_attention_mask, get_rule, token_layout
from aki.model.masking import prompt_attention_mask
from test_masks_reference import PAD, Case, cases, library_options, ref_mask

SETTINGS = settings(deadline=None, derandomize=True, max_examples=40)


def _model_mask(case: Case, rule: str, options: dict, implementation: str, extra_keys: int = 0,
                chunk: bool = False) -> torch.Tensor:
    """The decoder's mask as the model builds it (bool, True = may attend)."""
    seg = case.seg()
    layout_options = {k: v for k, v in case.tensors().items() if k in ("document_ids", "image_ids", "modality_ids")}
    if extra_keys:  # a static cache: PAD slots after the prompt
        seg = torch.nn.functional.pad(seg, (0, extra_keys), value=PAD)
        layout_options = {k: torch.nn.functional.pad(v, (0, extra_keys), value=-1) for k, v in layout_options.items()}
    layout = token_layout(seg, **layout_options)
    config = LlamaConfig(num_hidden_layers=1)
    config._attn_implementation = implementation

    class Cache:  # what the mask code asks a cache: the key length
        is_sliding: list = []

        def get_mask_sizes(self, q_length, layer):
            return q_length + extra_keys, 0

    kwargs = {"past_key_values": Cache()} if extra_keys else {}
    if chunk:
        import aki.masks.render as render

        old, render.CHUNK_ELEMENTS = render.CHUNK_ELEMENTS, 7
    try:
        mask = prompt_attention_mask(config, get_rule(rule), options, layout, case.length,
                                     document_ids=layout_options.get("document_ids"), **kwargs)
    finally:
        if chunk:
            render.CHUNK_ELEMENTS = old
    return mask == 0 if implementation == "eager" else mask


@st.composite
def rule_cases(draw):
    rule = draw(st.sampled_from([*RULE_NAMES, "mma@0.3", "mma@0"]))
    name, _, fraction = rule.partition("@")
    case = draw(cases("cca" if name == "cca" else "any"))
    options = {k: v for k, v in library_options(case, name).items() if k == "grid"}
    if fraction:
        options["unlock_fraction"] = float(fraction)
    return case, name, options


@SETTINGS
@given(data=rule_cases(), implementation=st.sampled_from(["sdpa", "eager"]), extra=st.sampled_from([0, 3]),
       chunk=st.booleans())
def test_model_mask_equals_the_reference_on_real_rows(data, implementation, extra, chunk):
    case, rule, options = data
    got = _model_mask(case, rule, options, implementation, extra, chunk)
    B, L = len(case.segments), case.length
    assert got.shape == (B, 1, L, L + extra)
    want = ref_mask(case, rule, options.get("unlock_fraction"))
    real = case.seg() != PAD
    for b in range(B):
        rows = real[b]
        assert torch.equal(got[b, 0, rows, :L], want[b, 0, rows]), (case.segments, rule, options)
    assert not got[..., L:].any()  # a static cache's empty slots are never seen


def test_rule_objects():
    assert set(RULE_NAMES) == set(RULES) and all(isinstance(r, Rule) for r in RULES.values())
    with pytest.raises(ValueError, match="unknown attention rule 'full'"):
        get_rule("full")
    mma, cca, causal = get_rule("mma"), get_rule("cca"), get_rule("causal")
    assert mma.option_names == ("unlock_fraction",) and cca.option_names == ("grid",) and causal.option_names == ()
    assert causal.is_causal() and mma.is_causal(unlock_fraction=0) and not mma.is_causal()
    assert not mma.is_causal(unlock_fraction=0.5) and not get_rule("mixed").is_causal()
    assert mma.has_sequential_positions and not cca.has_sequential_positions
    assert mma.check_options({"unlock_fraction": None}) == {}
    assert cca.check_options({"grid": [3, 4]}) == {"grid": (3, 4)}
    with pytest.raises(ValueError, match="rule 'causal' takes no option"):
        causal.check_options({"grid": (2, 2)})
    with pytest.raises(ValueError, match="two positive integers"):
        cca.check_options({"grid": [3, "x"]})
    with pytest.raises(TypeError, match="unlock_fraction"):
        mma.check_options({"unlock_fraction": True})
    with pytest.raises(ValueError, match="takes no option"):
        mma.mask_functions(token_layout(torch.tensor([[0, 1, 2]])), grid=(1, 1))


def test_a_new_rule_is_one_definition():
    """A rule defined in one place renders, positions and guards like the built-in ones."""
    prompt = [Segment.TEXT, Segment.IMAGE, Segment.IMAGE, Segment.QUERY, Segment.ANSWER, Segment.ANSWER]
    seg = torch.tensor([[int(s) for s in prompt]])

    def bidirectional_prompt(layout):
        block = torch.where(layout.segments != Segment.ANSWER, layout.block_ids, -1 - torch.arange(6))

        def same_prompt(b, h, q, kv):
            return block[b, q] == block[b, kv]

        return same_prompt, None

    rule = Rule("prefix-lm", "the whole prompt is bidirectional", bidirectional_prompt)
    mask = build_attention_mask(seg, rule)[0, 0]
    assert mask[:4, :4].all() and not mask[:4, 4:].any()  # the prompt sees itself, not the answer
    assert torch.equal(mask[4:], build_attention_mask(seg, "causal")[0, 0, 4:])
    assert rule.position_ids(token_layout(seg)).tolist() == [[0, 1, 2, 3, 4, 5]]
