"""Per-token segment labels: the only input the attention rules need.

Every rule in :mod:`aki.masks` is a function of a ``[B, L]`` LongTensor of :class:`Segment`
labels (plus optional document, image and modality ids). Labels come from the processor, which
derives them from the chat template's structure, never from hard-coded token ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch


class Segment(IntEnum):
    """What a token is, as far as attention is concerned."""

    PAD = -1
    """Padding: never attended to, attends only to itself (so its softmax row is finite)."""
    TEXT = 0
    """System prompt, chat-template text, anything not labelled otherwise."""
    IMAGE = 1
    """A token standing for part of an image (one resampler latent)."""
    QUERY = 2
    """The user's text after an image in the same prompt, up to and including the assistant marker."""
    ANSWER = 3
    """The assistant's response: tokens carrying loss, the caption in pre-training, generated tokens."""


TEXT_MODALITY = 0
IMAGE_MODALITY = 1


@dataclass(frozen=True)
class TokenLayout:
    """Per-token tensors derived once from segments; every rule reads only these.

    All tensors are ``[B, L]``. They are cheap (O(B·L)) and vectorised, so a rule's ``mask_mod``
    can index them with broadcast or scalar (vmapped) indices alike.
    """

    segments: torch.Tensor
    valid: torch.Tensor
    """True for every non-PAD token."""
    document_ids: torch.Tensor
    """Packed sequences: tokens of different documents never attend to each other."""
    block_ids: torch.Tensor
    """Number of ANSWER tokens up to and including this one. Two non-ANSWER tokens share a block
    exactly when no ANSWER token lies between them (the bound that keeps MMA leak-free)."""
    image_ids: torch.Tensor
    """Which image an IMAGE token belongs to (-1 elsewhere)."""
    image_rank: torch.Tensor
    """0-based index of an IMAGE token within its image (-1 elsewhere)."""
    modality: torch.Tensor
    """Modality id per token (text 0, image 1 by default; -1 for PAD)."""
    image_rank_in_row: torch.Tensor
    """0-based index of an IMAGE token among the row's IMAGE tokens (for unlock_fraction)."""
    query_rank_in_row: torch.Tensor
    """0-based index of a QUERY token among the row's QUERY tokens (for unlock_fraction)."""
    tokens_per_image: int | None = None
    """How many tokens every image has, when the caller knows it (the model: its resampler's
    latents). Lets CCA find its grid without reading the layout back from the device."""

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.segments.shape)  # type: ignore[return-value]


def check_segments(segments: torch.Tensor, check_values: bool = True) -> torch.Tensor:
    """Validate a segment tensor and return it as a 2-D long tensor.

    ``check_values=False`` checks only shape and dtype (no read-back from the device)."""
    if not isinstance(segments, torch.Tensor):
        segments = torch.as_tensor(segments)
    if segments.dim() == 1:
        segments = segments.unsqueeze(0)
    if segments.dim() != 2:
        raise ValueError(
            f"segments must have shape [B, L]; got {tuple(segments.shape)}. "
            "Pass one row of Segment labels per sample."
        )
    if segments.dtype.is_floating_point or segments.dtype == torch.bool:
        raise TypeError(f"segments must be an integer tensor of Segment labels; got {segments.dtype}.")
    segments = segments.long()
    if check_values and segments.numel() and (segments.min() < Segment.PAD or segments.max() > Segment.ANSWER):
        bad = sorted(set(segments.unique().tolist()) - {int(s) for s in Segment})
        raise ValueError(
            f"segments contain unknown labels {bad}; use aki.masks.Segment values "
            f"({', '.join(f'{s.name}={int(s)}' for s in Segment)})."
        )
    return segments


def _runs(flag: torch.Tensor, breaks: torch.Tensor | None = None) -> torch.Tensor:
    """Id (0, 1, ...) of each maximal run of True in ``flag`` per row; -1 outside runs.

    ``breaks`` forces a new run to start at positions where it is True (e.g. a document change).
    """
    prev = torch.nn.functional.pad(flag, (1, 0), value=False)[:, :-1]
    start = flag & ~prev
    if breaks is not None:
        start = start | (flag & breaks)
    ids = torch.cumsum(start.long(), dim=-1) - 1
    return torch.where(flag, ids, torch.full_like(ids, -1))


def token_layout(
    segments: torch.Tensor,
    *,
    document_ids: torch.Tensor | None = None,
    image_ids: torch.Tensor | None = None,
    modality_ids: torch.Tensor | None = None,
    tokens_per_image: int | None = None,
    validate: bool = True,
) -> TokenLayout:
    """Derive the per-token tensors the rules use from segment labels.

    ``image_ids``: optional per-token image index (needed only when two images sit back to back
    with no token between them; otherwise each contiguous run of IMAGE tokens is one image).
    ``modality_ids``: optional per-token modality for ``mma-general`` (e.g. 2 for audio);
    defaults to text (TEXT, QUERY, ANSWER) = 0 and image = 1.
    ``validate=False`` skips the check of the label values (it reads them back from the device):
    for the model's hot path, whose segments come from the processor. Every step is a tensor op,
    so the layout is built without a host sync.
    """
    segments = check_segments(segments, check_values=validate)
    B, L = segments.shape
    device = segments.device
    valid = segments != Segment.PAD
    is_image = segments == Segment.IMAGE
    is_query = segments == Segment.QUERY
    is_answer = segments == Segment.ANSWER

    def _check(name: str, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = torch.as_tensor(t, device=device)
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if tuple(t.shape) != (B, L):
            raise ValueError(f"{name} must have the same shape as segments {B, L}; got {tuple(t.shape)}.")
        return t.long()

    document_ids = _check("document_ids", document_ids)
    image_ids = _check("image_ids", image_ids)
    modality_ids = _check("modality_ids", modality_ids)

    if document_ids is None:
        document_ids = torch.zeros(B, L, dtype=torch.long, device=device)
    doc_change = torch.nn.functional.pad(document_ids[:, 1:] != document_ids[:, :-1], (1, 0), value=False)

    block_ids = torch.cumsum(is_answer.long(), dim=-1)

    if image_ids is None:
        image_ids = _runs(is_image, breaks=doc_change)
    else:
        image_ids = torch.where(is_image, image_ids, torch.full_like(image_ids, -1))
    # Rank of an image token inside its image: position minus the position where the image starts.
    pos = torch.arange(L, device=device).expand(B, L)
    id_change = torch.nn.functional.pad(image_ids[:, 1:] != image_ids[:, :-1], (1, 0), value=True)
    image_start = torch.where(is_image & (id_change | doc_change), pos, torch.zeros_like(pos))
    image_start = torch.cummax(image_start, dim=-1).values
    image_rank = torch.where(is_image, pos - image_start, torch.full_like(pos, -1))

    if modality_ids is None:
        modality = is_image.long()
    else:
        modality = modality_ids
    modality = torch.where(valid, modality, torch.full_like(modality, -1))

    image_rank_in_row = torch.where(is_image, torch.cumsum(is_image.long(), -1) - 1, -1)
    query_rank_in_row = torch.where(is_query, torch.cumsum(is_query.long(), -1) - 1, -1)
    return TokenLayout(
        segments=segments,
        valid=valid,
        document_ids=document_ids,
        block_ids=block_ids,
        image_ids=image_ids,
        image_rank=image_rank,
        modality=modality,
        image_rank_in_row=image_rank_in_row,
        query_rank_in_row=query_rank_in_row,
        tokens_per_image=tokens_per_image,
    )


__all__ = ["IMAGE_MODALITY", "TEXT_MODALITY", "Segment", "TokenLayout", "check_segments", "token_layout"]
