"""From samples to model batches: encode one sample at a time, then pad or pack.

Encoding one sample at a time lets a too-long prompt become one counted skip, and lets packing
place whole samples into rows. Packed rows carry ``document_ids`` so the model's masks (and
position ids) keep every document's attention rule intact, with no attention across documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aki.constants import IGNORE_INDEX
from aki.data.order import reorder_messages
from aki.data.records import BadRecord, Sample
from aki.masks import Segment

LOSS_ON = ("answer", "all")
CAPTION_SEGMENTS = ("answer", "query")


@dataclass
class Encoded:
    """One sample's unpadded token tensors (1-D) and its images ``[n, 3, H, W]`` (or None)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    segments: torch.Tensor
    pixel_values: torch.Tensor | None
    source: str = ""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_trained(self) -> int:
        return int((self.labels[1:] != IGNORE_INDEX).sum())


def encode_sample(processor, sample: Sample, *, order: str = "I&T", max_length: int = 512,
                  loss_on: str = "answer", caption_segment: str = "answer") -> Encoded:
    """Tokenise one sample with the processor (captions or conversations), in ``order``.

    ``loss_on="all"`` also trains on prompt text (never on image tokens); ``caption_segment=
    "query"`` labels captions as prompt text. Both exist to express configurations the leakage
    guard must refuse under prompt-unlocking rules. ``max_length`` counts text tokens with each
    image once (the processor's, and the paper's, convention): a sample whose prompt leaves no
    room for an answer raises ``BadRecord("too_long")``; a longer answer is cut by the processor.
    """
    from aki.processing import ImageCountError, PromptTooLongError

    try:
        if sample.caption is not None:
            feats = processor.encode_captions([sample.caption], [sample.images], order=order,
                                              padding_side="right", max_length=max_length)
        elif sample.messages is not None:
            feats = processor.encode_conversations([reorder_messages(sample.messages, order)], [sample.images],
                                                   padding_side="right", max_length=max_length)
        else:
            raise BadRecord("sample has neither caption nor messages", "malformed")
    except PromptTooLongError as err:
        raise BadRecord(f"sample from {sample.source!r}: {err}", "too_long") from err
    except ImageCountError as err:
        raise BadRecord(f"sample from {sample.source!r}: {err}", "malformed") from err
    except BadRecord:
        raise
    except (ValueError, KeyError, TypeError, IndexError, OSError) as err:
        raise BadRecord(f"cannot encode sample from {sample.source!r}: {err}", "malformed") from err
    # One sample, so the processor added no padding: take the row as it is (no unpad copy).
    n = int(feats["attention_mask"].shape[-1])
    ids = feats["input_ids"][0, :n]
    seg = feats["segments"][0, :n].long()
    labels = feats["labels"][0, :n] if "labels" in feats else torch.full_like(ids, IGNORE_INDEX)
    if not bool((labels[1:] != IGNORE_INDEX).any()):
        raise BadRecord(f"sample from {sample.source!r} has no answer tokens to train on", "no_answer")
    if loss_on == "all":
        text = (seg != Segment.IMAGE) & (seg != Segment.PAD)
        labels = torch.where(text, ids, torch.full_like(ids, IGNORE_INDEX))
        labels[0] = IGNORE_INDEX  # nothing predicts the first token
    elif loss_on != "answer":
        raise ValueError(f"loss_on must be one of {LOSS_ON}; got {loss_on!r}")
    if sample.caption is not None and caption_segment == "query":
        seg = torch.where(seg == Segment.ANSWER, torch.full_like(seg, int(Segment.QUERY)), seg)
    elif caption_segment not in CAPTION_SEGMENTS:
        raise ValueError(f"caption_segment must be one of {CAPTION_SEGMENTS}; got {caption_segment!r}")
    pixels = feats.get("pixel_values")
    if pixels is not None and not isinstance(pixels, torch.Tensor):  # a list of per-image arrays
        pixels = torch.stack([torch.as_tensor(p) for p in pixels]) if len(pixels) else None
    return Encoded(ids, labels, seg, pixels, sample.source)


def _images(items: list[Encoded]) -> torch.Tensor | None:
    pix = [e.pixel_values for e in items if e.pixel_values is not None and e.pixel_values.shape[0]]
    return torch.cat(pix) if pix else None


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad samples to the longest one: one sample per row."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    L = max(len(e) for e in items)
    B = len(items)
    batch = {
        "input_ids": torch.full((B, L), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros(B, L, dtype=torch.long),
        "segments": torch.full((B, L), int(Segment.PAD), dtype=torch.long),
        "labels": torch.full((B, L), IGNORE_INDEX, dtype=torch.long),
    }
    for b, e in enumerate(items):
        n = len(e)
        batch["input_ids"][b, :n] = e.input_ids
        batch["attention_mask"][b, :n] = 1
        batch["segments"][b, :n] = e.segments
        batch["labels"][b, :n] = e.labels
    pix = _images(items)
    if pix is not None:
        batch["pixel_values"] = pix
    return batch


def pack(items: list[Encoded], max_length: int, pad_id: int, min_rows: int = 1) -> dict[str, torch.Tensor]:
    """Place whole samples into as few rows of at most ``max_length`` tokens as possible, with
    the rows' lengths balanced (longest sample first onto the shortest row: the LPT rule), so
    padding the rows to the longest one wastes little. ``document_ids`` number the samples within
    each row (-1 on pads); the images follow the rows' order, so the model's splice sees them in
    marker order. A sample longer than ``max_length`` gets a row of its own."""
    rows = pack_rows([len(e) for e in items], max_length, min_rows)
    return _packed_batch([[items[i] for i in row] for row in rows], pad_id)


def pack_rows(lengths: list[int], max_length: int, min_rows: int = 1) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows: the fewest rows (at least ``min_rows``, at most
    one per sample) whose LPT assignment keeps every row within ``max_length``, then balanced
    further by moving or swapping samples between the longest and the shortest row.

    Written by hand: bin packing is not in PyTorch or transformers (their packers fill rows in
    stream order, first-fit, and leave the last row short)."""
    if not lengths:
        raise ValueError("cannot pack an empty batch")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1; got {max_length}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    long = [i for i in order if lengths[i] > max_length]
    rest = [i for i in order if lengths[i] <= max_length]
    n_rows = max(min(min_rows, len(lengths)) - len(long), -(-sum(lengths[i] for i in rest) // max_length), 0)
    rows: list[list[int]] = []
    while rest:
        n_rows = max(n_rows, 1)
        rows = [[] for _ in range(n_rows)]
        used = [0] * n_rows
        for i in rest:
            r = min(range(n_rows), key=lambda k: (used[k], k))
            rows[r].append(i)
            used[r] += lengths[i]
        if max(used) <= max_length:
            break
        n_rows += 1
    _balance(rows, lengths)
    return [[i] for i in long] + [r for r in rows if r]


def _balance(rows: list[list[int]], lengths: list[int], rounds: int = 200) -> None:
    """Shrink the longest row: move one sample to the shortest row, or swap a pair between them,
    whichever brings the two closest to equal; stop when nothing shortens the longest row."""
    for _ in range(rounds):
        if len(rows) < 2:
            return
        used = [sum(lengths[i] for i in r) for r in rows]
        hi = max(range(len(rows)), key=lambda k: (used[k], -k))
        lo = min(range(len(rows)), key=lambda k: (used[k], k))
        gap = used[hi] - used[lo]
        best, best_d = None, 0  # best_d: the amount moved from hi to lo, 0 < d < gap
        for a in rows[hi]:
            if 0 < lengths[a] < gap and abs(gap - 2 * lengths[a]) < abs(gap - 2 * best_d):
                best, best_d = (a, None), lengths[a]
            for b in rows[lo]:
                d = lengths[a] - lengths[b]
                if 0 < d < gap and abs(gap - 2 * d) < abs(gap - 2 * best_d):
                    best, best_d = (a, b), d
        if best is None:
            return
        a, b = best
        rows[hi].remove(a)
        rows[lo].append(a)
        if b is not None:
            rows[lo].remove(b)
            rows[hi].append(b)


def split_rows(rows: list[list[int]], parts: int) -> list[list[list[int]]]:
    """``rows`` cut into ``parts`` consecutive groups whose sizes differ by at most one."""
    if parts < 1 or parts > len(rows):
        raise ValueError(f"cannot split {len(rows)} rows into {parts} micro-batches")
    size, extra = divmod(len(rows), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (k < extra)
        out.append(rows[start:end])
        start = end
    return out


def _packed_batch(rows: list[list[Encoded]], pad_id: int) -> dict[str, torch.Tensor]:
    L = max(sum(len(e) for e in row) for row in rows)
    batch = collate([_concat(row) for row in rows], pad_id)
    docs = torch.full((len(rows), L), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for d, e in enumerate(row):
            docs[r, start:start + len(e)] = d
            start += len(e)
    batch["document_ids"] = docs
    pix = _images([e for row in rows for e in row])
    if pix is not None:
        batch["pixel_values"] = pix
    return batch


def micro_batches(items: list[Encoded], parts: int, pad_id: int, pack_length: int | None = None
                  ) -> list[dict[str, torch.Tensor]]:
    """One rank's samples of an optimizer step as ``parts`` micro-batches.

    Without packing, samples are sorted by length and cut into ``parts`` equal groups (less
    padding; the step's loss does not depend on the grouping). With ``pack_length``, all the
    step's samples are packed together (:func:`pack_rows`, at least one row per micro-batch) and
    the rows are dealt out to the micro-batches."""
    if pack_length is None:
        if len(items) % parts:
            raise ValueError(f"{len(items)} samples cannot form {parts} equal micro-batches")
        order = sorted(range(len(items)), key=lambda i: (len(items[i]), i))
        size = len(items) // parts
        return [collate([items[i] for i in order[k * size:(k + 1) * size]], pad_id) for k in range(parts)]
    rows = pack_rows([len(e) for e in items], pack_length, min_rows=parts)
    return [_packed_batch([[items[i] for i in row] for row in group], pad_id) for group in split_rows(rows, parts)]


def _concat(row: list[Encoded]) -> Encoded:
    return Encoded(torch.cat([e.input_ids for e in row]), torch.cat([e.labels for e in row]),
                   torch.cat([e.segments for e in row]), None)


def non_pad_fraction(batch: dict[str, torch.Tensor]) -> float:
    """Share of the batch's token slots that hold real tokens (what packing raises)."""
    return float(batch["attention_mask"].float().mean())


def count_trained(batch: dict[str, torch.Tensor]) -> int:
    """Positions that carry loss (labels shifted by one, as the model's loss reads them)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
