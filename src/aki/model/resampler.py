"""Perceiver Resampler: a fixed number of learned latents read the vision tokens by cross-attention.

Layout as in the official AKI release (Flamingo's resampler without time/frame embeddings):
each layer LayerNorms media and latents, queries come from the latents, keys/values from
``concat(media, latents)``, everything bias-free; then a bias-free GELU feed-forward; both
residual. A final LayerNorm and a biased ``projection`` map the latents to the LLM width.

Optional, off by default (``region_prior`` = 0, the official layout): a fixed additive 2D region
prior in the cross-attention, see :func:`region_bias`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aki.model.configuration import AkiResamplerConfig


class PerceiverAttention(nn.Module):
    """Latents attend to media and to themselves (Flamingo: keys include the latents)."""

    def __init__(self, dim: int, heads: int, head_dim: int, eps: float = 1e-5):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.norm_media = nn.LayerNorm(dim, eps=eps)
        self.norm_latents = nn.LayerNorm(dim, eps=eps)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        media, latents = self.norm_media(media), self.norm_latents(latents)
        B, n, _ = latents.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(B, x.shape[1], self.heads, self.head_dim).transpose(1, 2)

        q = split(self.to_q(latents))
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, split(k), split(v), attn_mask=bias)
        return self.to_out(out.transpose(1, 2).reshape(B, n, self.heads * self.head_dim))


class FeedForward(nn.Module):
    """LayerNorm -> Linear(dim, dim * mult) -> GELU -> Linear back, bias-free."""

    def __init__(self, dim: int, mult: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.up = nn.Linear(dim, dim * mult, bias=False)
        self.act = nn.GELU()
        self.down = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(self.norm(x))))


class ResamplerLayer(nn.Module):
    """One pre-norm cross-attention block and one feed-forward block, both residual."""

    def __init__(self, config: AkiResamplerConfig):
        super().__init__()
        eps = config.layer_norm_eps
        self.attn = PerceiverAttention(config.dim, config.heads, config.head_dim, eps)
        self.ff = FeedForward(config.dim, config.ff_mult, eps)

    def forward(self, media: torch.Tensor, latents: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        latents = latents + self.attn(media, latents, bias)
        return latents + self.ff(latents)


class PerceiverResampler(nn.Module):
    """``[N, T, dim]`` vision tokens -> ``[N, num_latents, output_dim]`` LLM input embeddings."""

    def __init__(self, config: AkiResamplerConfig):
        super().__init__()
        self.config = config
        self.latents = nn.Parameter(torch.randn(config.num_latents, config.dim))
        self.layers = nn.ModuleList(ResamplerLayer(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.dim, config.output_dim, bias=True)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        latents = self.latents.to(media.dtype).unsqueeze(0).expand(media.shape[0], -1, -1)
        bias = None
        if self.config.region_prior:
            bias = region_bias(latents.shape[1], media.shape[1], self.config.region_prior).to(media)
        for layer in self.layers:
            latents = layer(media, latents, bias)
        # A biased Linear on a 3D input returns a view of its 2D result, and a module output that
        # is a view makes FSDP2 warn (an in-place op on it would skip the unit's backward hook).
        # Adding the bias separately gives a fresh tensor; same weights, same math.
        return F.linear(self.norm(latents), self.projection.weight) + self.projection.bias


# Official (open_flamingo-style Sequential) names -> ours, inside one resampler layer.
def _grid(n: int, what: str) -> torch.Tensor:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"region_prior needs a square number of {what}; got {n}. Use a square count "
                         "(e.g. 16 or 64) or region_prior 0.")
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([y.flatten(), x.flatten()], dim=-1)


def region_bias(num_latents: int, num_media: int, strength: float) -> torch.Tensor:
    """``[num_latents, num_media + num_latents]`` additive attention bias: latent ``i`` sits at
    the centre of cell ``i`` of a square grid over the image, media token ``j`` at its patch
    centre (row-major, as vision towers order patches), and the bias is ``-strength * d^2`` with
    ``d`` the distance in latent-grid cells (latent keys: the distance between latents).

    Why: the official resampler must learn where to look from the features alone; its latents
    start as identical averages of every patch (nearly all background in our scenes), so images
    barely differ after it and binding (which colour goes with which shape) is lost. The prior
    makes each latent start as a soft summary of its own region, as Qwen-VL's resampler adds 2D
    positions to its query-key pairs; content logits learned on top can still move attention.
    """
    lat, med = _grid(num_latents, "latents"), _grid(num_media, "vision tokens")
    cells = math.isqrt(num_latents)
    d2 = torch.cdist(lat, torch.cat([med, lat]), p=2).pow(2) * cells**2
    return -strength * d2


OFFICIAL_LAYER_NAMES = {
    "0.norm_media": "attn.norm_media",
    "0.norm_latents": "attn.norm_latents",
    "0.to_q": "attn.to_q",
    "0.to_kv": "attn.to_kv",
    "0.to_out": "attn.to_out",
    "1.0": "ff.norm",
    "1.1": "ff.up",
    "1.3": "ff.down",
}

__all__ = ["OFFICIAL_LAYER_NAMES", "FeedForward", "PerceiverAttention", "PerceiverResampler", "ResamplerLayer",
           "region_bias"]
