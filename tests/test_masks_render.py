"""The three renderings of a rule agree: dense bool, additive float, FlexAttention BlockMask.

- bool and additive masks give the same SDPA output (and match a float64 softmax written out);
  no NaN anywhere, PAD rows and all-PAD rows included, for every rule;
- the BlockMask's ``mask_mod`` gives the same attention output through ``flex_attention`` (eager,
  CPU: it works on torch 2.13, unfused) as the dense mask through SDPA, and its block structure
  is right: a block is listed iff its tile holds an allowed pair, and a block marked *full*
  (mask_mod skipped by fused kernels) really is all True.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention.flex_attention import create_mask, flex_attention

from aki.masks import (
    RULE_NAMES,
    build_additive_mask,
    build_attention_mask,
    build_block_mask,
    render_mask,
    rule_mask_function,
)
from test_masks_reference import IMAGE, PAD, QUERY, TEXT, Case, cases, library_options, ref_mask

SETTINGS = settings(deadline=None, derandomize=True, max_examples=30)
RULE_AND_FRACTION = [(r, None) for r in RULE_NAMES] + [("mma", 0.5), ("mma", 0.3)]


@st.composite
def case_and_rule(draw):
    rule, fraction = draw(st.sampled_from(RULE_AND_FRACTION))
    case = draw(cases("cca" if rule == "cca" else "any"))
    options = library_options(case, rule)
    if fraction is not None:
        options["unlock_fraction"] = fraction
    return case, rule, options


def _qkv(batch: int, length: int, heads: int = 2, dim: int = 8, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=g).to(dtype) for _ in range(3)]


def _softmax_reference(q, k, v, mask):
    scores = (q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v.double()


# --------------------------------------------------------------------------------------------
# Dense bool vs additive float, through SDPA
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(data=case_and_rule())
def test_bool_and_additive_agree_through_sdpa(data):
    case, rule, options = data
    seg = case.seg()
    dense = build_attention_mask(seg, rule, **options)
    additive = build_additive_mask(seg, rule, **options)
    assert torch.equal(additive == 0, dense)
    assert set(additive[~dense].unique().tolist()) <= {torch.finfo(torch.float32).min}
    q, k, v = _qkv(seg.shape[0], seg.shape[1])
    out_bool = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    out_add = F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
    assert not out_bool.isnan().any() and not out_add.isnan().any()
    real = (seg != PAD)[:, None, :, None].expand_as(out_bool)
    torch.testing.assert_close(out_bool[real], out_add[real], atol=1e-5, rtol=1e-5)
    want = _softmax_reference(q, k, v, dense).float()
    torch.testing.assert_close(out_bool, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_add, want, atol=1e-5, rtol=1e-5)
    # every row (PAD rows too) attends to something, so no softmax row is empty
    assert dense.any(-1).all()


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_all_pad_row_and_pad_rows_have_no_nan(rule):
    seg = torch.tensor([[PAD] * 6, [TEXT, IMAGE, IMAGE, IMAGE, IMAGE, QUERY], [PAD, IMAGE, IMAGE, IMAGE, IMAGE, QUERY]])
    dense = build_attention_mask(seg, rule)
    assert torch.equal(dense[0, 0], torch.eye(6, dtype=torch.bool))
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        additive = build_additive_mask(seg, rule, dtype=dtype)
        assert additive.dtype == dtype
        assert torch.equal(additive == 0, dense)
        assert torch.equal(additive[~dense].unique(), torch.tensor([torch.finfo(dtype).min], dtype=dtype))
        q, k, v = _qkv(3, 6, dtype=dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
        assert out.isfinite().all()
    q, k, v = _qkv(3, 6)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    assert out.isfinite().all()
    # a PAD query sees only itself: its output is its own value
    torch.testing.assert_close(out[0], v[0])


def test_render_mask_rejects_unknown_implementations():
    mod = rule_mask_function(torch.tensor([[0, 1, 2]]), "mma")
    with pytest.raises(ValueError, match="no mask interface"):
        render_mask(mod, 1, 3, implementation="paged_magic")


@SETTINGS
@given(data=case_and_rule(), split=st.integers(0, 40), chunk=st.integers(1, 200))
def test_render_mask_rows_and_chunks(data, split, chunk):
    """A slice of query rows (q_offset), and rendering in row chunks, give the full mask's rows."""
    case, rule, options = data
    seg = case.seg()
    B, L = seg.shape
    split = min(split, L - 1)
    mod = rule_mask_function(seg, rule, **options)
    full = render_mask(mod, B, L)
    assert torch.equal(full, build_attention_mask(seg, rule, **options))
    part = render_mask(mod, B, L - split, q_offset=split, kv_length=L)
    assert torch.equal(part, full[:, :, split:])
    assert torch.equal(render_mask(mod, B, L, chunk_elements=chunk), full)
    additive = render_mask(mod, B, L, implementation="eager", dtype=torch.bfloat16, chunk_elements=chunk)
    assert additive.dtype == torch.bfloat16 and torch.equal(additive == 0, full)


# --------------------------------------------------------------------------------------------
# FlexAttention BlockMask
# --------------------------------------------------------------------------------------------


def _tiles(dense: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(any, all) of every block x block tile of a [B, 1, L, L] mask (padded past L)."""
    B, _, L, _ = dense.shape
    n = -(-L // block)
    padded_any = torch.zeros(B, 1, n * block, n * block, dtype=torch.bool)
    padded_any[:, :, :L, :L] = dense
    tiles = padded_any.view(B, 1, n, block, n, block).permute(0, 1, 2, 4, 3, 5)
    return tiles.any(-1).any(-1), tiles.all(-1).all(-1)


def _listed_blocks(num: torch.Tensor, idx: torch.Tensor, n_kv: int) -> torch.Tensor:
    B, H, n_q = num.shape
    out = torch.zeros(B, H, n_q, n_kv, dtype=torch.bool)
    for b in range(B):
        for h in range(H):
            for i in range(n_q):
                out[b, h, i, idx[b, h, i, : num[b, h, i]].long()] = True
    return out


@settings(deadline=None, derandomize=True, max_examples=40)
@given(data=case_and_rule(), block=st.sampled_from([2, 4, 8, 128]))
def test_block_mask_matches_dense(data, block):
    case, rule, options = data
    seg = case.seg()
    B, L = seg.shape
    dense = build_attention_mask(seg, rule, **options)
    block_mask = build_block_mask(seg, rule, block_size=block, **options)
    assert block_mask.shape == (B, 1, L, L)

    # mask_mod evaluated under vmap on scalar indices (how flex sees it) == the dense rendering
    assert torch.equal(create_mask(block_mask.mask_mod, B, None, L, L, device="cpu"), dense)

    # block structure: listed (partial or full) iff the tile holds a True; full only if all True
    any_tile, all_tile = _tiles(dense, block)
    assert torch.equal(block_mask.to_dense().bool(), any_tile)
    n = any_tile.shape[-1]
    full = _listed_blocks(block_mask.full_kv_num_blocks, block_mask.full_kv_indices, n)
    partial = _listed_blocks(block_mask.kv_num_blocks, block_mask.kv_indices, n)
    assert not (full & partial).any()
    assert torch.equal(full | partial, any_tile)
    inner = L // block  # tiles wholly inside the sequence
    assert torch.equal(full[..., :inner, :inner], all_tile[..., :inner, :inner])
    assert not (full & ~all_tile).any()

    # attention output: flex_attention (eager CPU) with the BlockMask == SDPA with the dense mask
    q, k, v = _qkv(B, L, seed=block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "flex_attention called without torch.compile()"
        out_flex = flex_attention(q, k, v, block_mask=block_mask)
    out_sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    assert not out_flex.isnan().any()
    torch.testing.assert_close(out_flex, out_sdpa, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_block_mask_realistic_layout(rule):
    """A 2-turn, 2-sample batch with 16-token images on the default 128 block size."""
    row = [TEXT] * 5 + [IMAGE] * 16 + [QUERY] * 6 + [3] * 5 + [QUERY] * 4 + [3] * 4
    seg = torch.tensor([row + [PAD] * 4, [PAD] * 4 + row])
    dense = build_attention_mask(seg, rule)
    assert torch.equal(dense, ref_mask(Case(segments=seg.tolist()), rule))
    block_mask = build_block_mask(seg, rule)
    q, k, v = _qkv(2, seg.shape[1], heads=4, dim=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out_flex = flex_attention(q, k, v, block_mask=block_mask)
    torch.testing.assert_close(out_flex, F.scaled_dot_product_attention(q, k, v, attn_mask=dense),
                               atol=1e-5, rtol=1e-5)

