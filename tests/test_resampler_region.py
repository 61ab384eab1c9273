"""The resampler's optional 2D region prior: the bias equals its formula computed point by point,
it is off by default (the official layout, unchanged outputs), refuses non-square grids, and with
it on each latent starts out reading its own region of the image."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aki.model.configuration import AkiResamplerConfig
from aki.model.resampler import PerceiverResampler, region_bias


def _reference(n_lat: int, n_med: int, strength: float) -> torch.Tensor:
    sl, sm = math.isqrt(n_lat), math.isqrt(n_med)
    out = torch.zeros(n_lat, n_med + n_lat)
    for i in range(n_lat):
        yi, xi = (i // sl + 0.5) / sl, (i % sl + 0.5) / sl
        for j in range(n_med + n_lat):
            if j < n_med:
                yj, xj = (j // sm + 0.5) / sm, (j % sm + 0.5) / sm
            else:
                k = j - n_med
                yj, xj = (k // sl + 0.5) / sl, (k % sl + 0.5) / sl
            out[i, j] = -strength * ((yi - yj) ** 2 + (xi - xj) ** 2) * sl**2
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 9), st.floats(0.1, 8.0))
def test_region_bias_matches_its_formula(side_lat, side_med, strength):
    got = region_bias(side_lat**2, side_med**2, strength)
    assert torch.allclose(got, _reference(side_lat**2, side_med**2, strength), atol=1e-4)


def test_non_square_grid_is_refused():
    with pytest.raises(ValueError, match="square number of latents"):
        region_bias(12, 64, 1.0)
    with pytest.raises(ValueError, match="square number of vision tokens"):
        region_bias(16, 50, 1.0)


def _resampler(prior: float) -> PerceiverResampler:
    torch.manual_seed(0)
    return PerceiverResampler(AkiResamplerConfig(dim=32, output_dim=16, num_latents=16, depth=1, heads=2,
                                                 head_dim=8, region_prior=prior)).eval()


def _official(r: PerceiverResampler, media: torch.Tensor) -> torch.Tensor:
    """The official resampler written out: no attention bias anywhere."""
    lat = r.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
    for layer in r.layers:
        a = layer.attn
        m, x = a.norm_media(media), a.norm_latents(lat)
        q = a.to_q(x).view(*x.shape[:2], a.heads, a.head_dim).transpose(1, 2)
        k, v = a.to_kv(torch.cat([m, x], 1)).chunk(2, -1)
        k, v = (t.view(t.shape[0], t.shape[1], a.heads, a.head_dim).transpose(1, 2) for t in (k, v))
        w = (q @ k.transpose(-1, -2) / math.sqrt(a.head_dim)).softmax(-1)
        lat = lat + a.to_out((w @ v).transpose(1, 2).reshape(*x.shape[:2], -1))
        lat = lat + layer.ff(lat)
    return r.projection(r.norm(lat))


def test_off_by_default_and_official_outputs_unchanged():
    assert AkiResamplerConfig().region_prior == 0.0
    off, on = _resampler(0.0), _resampler(4.0)
    on.load_state_dict(off.state_dict())  # no new weights: the prior is a fixed bias
    media = torch.randn(2, 64, 32)
    with torch.no_grad():
        assert torch.allclose(off(media), _official(off, media), atol=1e-5)
        assert not torch.allclose(on(media), _official(off, media), atol=1e-3)


def test_each_latent_starts_on_its_own_region():
    r = _resampler(4.0)
    media = torch.randn(1, 64, 32)
    captured = {}

    def hook(q, k, v, attn_mask=None):
        w = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + attn_mask).softmax(-1)
        captured["w"] = w
        return w @ v

    import aki.model.resampler as mod

    real = mod.F.scaled_dot_product_attention
    mod.F.scaled_dot_product_attention = hook
    try:
        with torch.no_grad():
            r(media)
    finally:
        mod.F.scaled_dot_product_attention = real
    w = captured["w"][0].mean(0)  # [16 latents, 64 media + 16 latents], averaged over heads
    for i in range(16):
        row, col = divmod(i, 4)
        own = [(2 * row + a) * 8 + 2 * col + b for a in (0, 1) for b in (0, 1)]  # its 2x2 patches
        assert w[i, own].sum() > 0.4, (i, float(w[i, own].sum()))
