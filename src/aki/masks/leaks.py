"""The leakage guard: can a trained prediction see the token it is predicting, or any later one?

Attention composes over layers: if q may attend to k and k to j, then after two layers q's state
depends on j. A training position p (predicting token p + 1) leaks when the transitive closure of
the mask reaches any key after p. The closure's *largest reachable index* is all we need, and it
is the fixpoint of ``reach[q] = max(q, max_{k: mask[q, k]} reach[k])``: one masked max per sweep
(cost ~ the mask's entries), a handful of sweeps in practice (at most L), never a cubic closure.
"""

from __future__ import annotations

import torch

from aki.constants import IGNORE_INDEX


class LeakageError(ValueError):
    """An attention rule lets a trained prediction depend on the future it predicts."""


def _masked_max(mask: torch.Tensor, values: torch.Tensor, row_chunk: int) -> torch.Tensor:
    # mask [B, L, L] bool, values [B, L] int -> [B, L]: max over allowed keys (-1 when none).
    B, L, _ = mask.shape
    out = torch.empty(B, L, dtype=values.dtype, device=values.device)
    fill = torch.tensor(-1, dtype=values.dtype, device=values.device)
    for start in range(0, L, row_chunk):
        rows = mask[:, start : start + row_chunk]
        out[:, start : start + row_chunk] = torch.where(rows, values[:, None, :], fill).amax(-1)
    return out


def reachable_max(mask: torch.Tensor, max_sweeps: int | None = None, row_chunk: int = 1024) -> torch.Tensor:
    """For each position, the largest index its representation can depend on through any depth."""
    if mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"find_leaks expects a head-broadcast mask [B, 1, L, L]; got {tuple(mask.shape)}.")
        mask = mask[:, 0]
    if mask.dtype != torch.bool:
        raise TypeError(f"the mask must be bool (True = may attend); got {mask.dtype}.")
    if mask.shape[-1] != mask.shape[-2]:
        raise ValueError(f"the mask must be square over the sequence; got {mask.shape[-2]} x {mask.shape[-1]}.")
    B, L = mask.shape[0], mask.shape[1]
    idx = torch.arange(L, device=mask.device, dtype=torch.int32).expand(B, L)
    reach = idx.clone()
    for _ in range(max_sweeps or L):
        new = torch.maximum(reach, _masked_max(mask, reach, row_chunk))
        if torch.equal(new, reach):
            break
        reach = new
    return reach


def find_leaks(mask: torch.Tensor, predicts: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: True where position p is trained (``predicts[b, p]``: p predicts token p+1)
    and its prediction can depend, through any number of attention layers, on a token after p."""
    if predicts.dim() == 1:
        predicts = predicts.unsqueeze(0)
    reach = reachable_max(mask)
    if tuple(predicts.shape) != tuple(reach.shape):
        raise ValueError(f"predicts must be [B, L] = {tuple(reach.shape)}; got {tuple(predicts.shape)}.")
    idx = torch.arange(reach.shape[-1], device=reach.device)
    return predicts.bool() & (reach > idx)


def predicts_from_labels(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Which positions are trained, for labels aligned with input_ids (the model shifts them):
    position p is trained to predict ``labels[p + 1]`` when that label is not ignored."""
    if labels.dim() == 1:
        labels = labels.unsqueeze(0)
    trained = labels[:, 1:] != ignore_index
    return torch.nn.functional.pad(trained, (0, 1), value=False)
