"""AdamW with the paper's decay groups and LR schedule.

Weight decay applies to matrices only: embeddings (incl. the resampler's latents), norms and
biases are excluded, as in the official release. The schedule warms up linearly *from min_lr*
(not from 0) to lr, then follows a cosine down to min_lr at ``max_steps``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NO_DECAY_TYPES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, NO_DECAY_TYPES) or "norm" in type(module).__name__.lower()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decay / no-decay groups (names kept for inspection)."""
    no_decay: set[int] = set()
    for module in model.modules():
        if _is_norm(module) or isinstance(module, nn.Embedding):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, keep = [], []
    decay_names, keep_names = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        low = name.lower()
        if id(p) in no_decay or p.ndim < 2 or name.endswith("bias") or "embed" in low or "latents" in low:
            keep.append(p)
            keep_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": keep, "weight_decay": 0.0, "names": keep_names},
    ]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8) -> torch.optim.AdamW:
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, weight_decay)]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lr_at(step: int, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """LR for optimizer step ``step`` (0-based): linear min_lr -> lr over ``warmup`` steps, then
    cosine lr -> min_lr over the remaining steps (min_lr from ``total`` on)."""
    if warmup > 0 and step < warmup:
        return min_lr + (lr - min_lr) * step / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, lr: float, min_lr: float, warmup: int,
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR (so its state saves and restores with the checkpoint) over :func:`lr_at`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, lr, min_lr, warmup, total) / lr if lr > 0 else 0.0
    )
