"""The tower's pre-training objective: dense per-patch prediction of the scene's annotations.

Why dense supervision rather than SigLIP's sigmoid image-text loss: the generator knows, for every
pixel, which object is seen there and what lies behind it, so each image gives 64 supervised
patches with ten labels each, where a contrastive batch gives one match/no-match bit per image
pair (and our captions, being templated, would first need a text tower to learn to read them).
On 2 CPU cores the budget is a few thousand steps; the contrastive route was not tried.

Measured while choosing the targets (one seed each, not a controlled sweep): with targets that
spread a patch's label over its pixels *including the background* (most pixels of most patches),
the shape probe was 47 % after 800 steps (37 % untrained); asking instead for the class shares
among the patch's *object* pixels, weighted by how many there are, the shape probe reaches 95 %
after 3,000 steps (see :mod:`aki.vision.labels`). The heads are linear, so what they read is
linearly written in the patch features, which is what a frozen tower must give the resampler.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aki.vision.labels import HEADS, MIN_PIXELS_FRACTION

CENTRE_LOSS_WEIGHT = 5.0
"""Scale of the centre regression (squared error in image-side units) next to the cross-entropies."""


class DenseHeads(nn.Module):
    """Per head of :data:`aki.vision.labels.HEADS`, a linear classifier of the patch feature;
    plus objectness and the centre regression."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.classifiers = nn.ModuleDict({h: nn.Linear(hidden_size, n) for h, n in HEADS.items()})
        self.objectness = nn.Linear(hidden_size, 1)
        self.centre = nn.Linear(hidden_size, 2)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {h: head(features) for h, head in self.classifiers.items()}
        out["objectness"] = self.objectness(features)[..., 0]
        out["centre"] = self.centre(features)
        return out


def dense_loss(preds: dict[str, torch.Tensor], targets: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Per head, the soft cross-entropy of each patch against the class shares of its relevant
    pixels, weighted by how many it has (full weight from ``MIN_PIXELS_FRACTION`` of the patch);
    plus objectness (binary cross-entropy on the object share) and the centre regression.
    ``targets``: :func:`aki.vision.labels.batch_targets`. Returns the total and each part."""
    parts: dict[str, torch.Tensor] = {}
    for h in HEADS:
        w = (targets["pixels"][h] / MIN_PIXELS_FRACTION).clamp(max=1.0)
        ce = -(targets["shares"][h] * F.log_softmax(preds[h].float(), dim=-1)).sum(-1)
        parts[h] = (ce * w).sum() / w.sum().clamp_min(1.0)
    objectness = targets["objectness"]
    parts["objectness"] = F.binary_cross_entropy_with_logits(preds["objectness"].float(), objectness)
    w = (objectness / MIN_PIXELS_FRACTION).clamp(max=1.0)
    err = (preds["centre"].float() - targets["centre"]).pow(2).sum(-1)
    parts["centre"] = CENTRE_LOSS_WEIGHT * (err * w).sum() / w.sum().clamp_min(1.0)
    total = torch.stack(list(parts.values())).sum()
    return total, {k: float(v.detach()) for k, v in parts.items()}
