"""The project's one loss: next-token cross-entropy at the trained positions only.

Only the positions whose next token carries a label (about a tenth of an SFT batch: answers, not
prompts or images) go through the output head, so the ``[B, L, vocab]`` logits are never built.
The cross-entropy is computed in fp32 and summed, then divided by ``num_items_in_batch`` when it
is given (the number of trained tokens of the whole optimizer step, over micro-batches and
ranks: gradient accumulation stays a token mean) or else by this batch's count.

With a large vocabulary the positions are processed in chunks under activation checkpointing:
each chunk's logits live only while its loss is computed and are recomputed in the backward
pass, so the peak is one chunk's logits instead of all of them (transformers' own
``ForCausalLMLoss`` takes full logits, hence this function).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from aki.constants import IGNORE_INDEX

CHUNK_LOGITS = 1 << 26
"""Logit entries per chunk (64 Mi: 256 MiB in fp32)."""


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: position p is trained when ``labels[p + 1]`` is not ignored (labels are
    aligned with ``input_ids``; the shift happens here)."""
    keep = labels[:, 1:] != IGNORE_INDEX
    return torch.nn.functional.pad(keep, (0, 1), value=False)


def _chunk_loss(head, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def next_token_loss(
    hidden_states: torch.Tensor,
    labels: torch.Tensor,
    head: torch.nn.Module,
    *,
    num_items_in_batch: int | float | torch.Tensor | None = None,
    softcap: float | None = None,
    chunk_logits: int = CHUNK_LOGITS,
) -> torch.Tensor:
    """Summed fp32 next-token cross-entropy over labels != -100, divided by ``num_items_in_batch``
    (when given) or by the number of trained tokens (1 when there are none, giving 0).

    ``hidden_states``: ``[B, L, D]`` final hidden states; ``labels``: ``[B, L]`` aligned with them;
    ``head``: the output projection (weight ``[V, D]``, optional bias).
    """
    if labels.shape != hidden_states.shape[:2]:
        raise ValueError(f"labels {tuple(labels.shape)} must match the sequence {tuple(hidden_states.shape[:2])}.")
    labels = labels.to(hidden_states.device)
    keep = trained_positions(labels)
    hidden = hidden_states[keep]  # [N, D]; N is read back once (the shape depends on it)
    targets = labels[:, 1:][keep[:, :-1]]
    n = targets.shape[0]
    vocab = head.weight.shape[0]
    rows = max(1, chunk_logits // max(1, vocab))
    if n <= rows:
        total = _chunk_loss(head, softcap, hidden, targets)
    else:
        total = hidden.new_zeros((), dtype=torch.float32)
        grad = torch.is_grad_enabled()
        for start in range(0, n, rows):
            h, t = hidden[start : start + rows], targets[start : start + rows]
            if grad:
                total = total + checkpoint(_chunk_loss, head, softcap, h, t, use_reentrant=False)
            else:
                total = total + _chunk_loss(head, softcap, h, t)
    if num_items_in_batch is None:
        return total / max(n, 1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


__all__ = ["CHUNK_LOGITS", "next_token_loss", "trained_positions"]
