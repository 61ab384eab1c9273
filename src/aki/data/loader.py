"""Training batches made off the training thread: a ``torch.utils.data`` stream of optimizer steps.

Global sample slot ``t * batch_size + k`` of step ``t`` is the mixture's draw of that index
(:class:`~aki.data.mixture.MixtureSampler`); rank ``r`` of ``world`` takes the step's slots
``[r * B/world, (r + 1) * B/world)``, and DataLoader worker ``w`` of ``n`` makes the steps
``t = start + w, start + w + n, ...`` (the DataLoader hands them back in step order). Each slot is
read, augmented (seeded by the slot) and encoded once, in the worker; a bad record is counted
and replaced by the sampler's retry draws for that slot. The step's samples become the
micro-batches of that rank (sorted by length, or packed).

Every step is a pure function of its index, so the stream's whole state is the next step: a
resumed run restarts the DataLoader there and reads the same batches, with any number of
workers, and on another world size the same global set of samples per step. The records read
and skipped (by reason) travel with each step to the training process, which keeps the totals.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from aki.data.augment import augment_sample
from aki.data.batching import Encoded, encode_sample, micro_batches
from aki.data.mixture import MixtureSampler
from aki.data.order import order_at
from aki.data.readers import RecordSource
from aki.data.records import BadRecord

MAX_ATTEMPTS = 64
"""Draws tried for one slot before the data is declared unusable."""


class SkipRateError(RuntimeError):
    """Too much of the data is unusable: the run stops instead of training on what is left."""


def check_skip_rate(records: int, skipped: dict[str, int], max_rate: float, min_records: int,
                    last: str = "") -> None:
    """Raise :class:`SkipRateError` when more than ``max_rate`` of ``records`` were skipped
    (only once ``min_records`` have been read)."""
    n = sum(skipped.values())
    if records >= min_records and records and n / records > max_rate:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
        raise SkipRateError(
            f"{n} of {records} records ({n / records:.1%}) were unusable, above max_skip_rate={max_rate:.1%} "
            f"({reasons}). Last one: {last or 'n/a'}. Fix the data (or raise max_skip_rate) and run again."
        )


@dataclass(frozen=True)
class StreamOptions:
    """How samples become one rank's micro-batches (see :class:`StepStream`)."""

    seed: int
    stage: str
    order: str
    max_steps: int
    batch_size: int
    accum: int
    world_size: int = 1
    rank: int = 0
    max_length: int = 512
    pack_length: int | None = None
    loss_on: str = "answer"
    caption_segment: str = "answer"
    augment: bool = True

    @property
    def per_rank(self) -> int:
        return self.batch_size // self.world_size


class StepStream(IterableDataset):
    """Yields, for steps ``start..max_steps-1``, one dict per step: ``batches`` (the rank's
    micro-batches), ``step``, ``order``, ``samples``, ``records``, ``skipped`` (by reason),
    ``last_bad``, and ``error`` (a skip-rate failure, raised by the training process)."""

    def __init__(self, sources: Sequence[RecordSource], weights: Sequence[float], processor: Any,
                 options: StreamOptions, start_step: int = 0):
        if options.batch_size % options.world_size:
            raise ValueError(f"batch_size={options.batch_size} is not divisible by {options.world_size} processes")
        if options.per_rank % options.accum:
            raise ValueError(f"{options.per_rank} samples per rank cannot form {options.accum} micro-batches")
        self.sources = list(sources)
        self.sampler = MixtureSampler([len(s) for s in sources], weights, seed=options.seed)
        self.processor = processor
        self.options = options
        self.start_step = int(start_step)
        tok = getattr(processor, "tokenizer", processor)
        self.pad_id = int(getattr(tok, "pad_token_id", 0) or 0)

    # ------------------------------------------------------------------ one step
    def _encode(self, slot: int, order: str) -> tuple[Encoded | None, int, Counter[str], str]:
        """The slot's sample (retry draws replace unusable records; None when ``MAX_ATTEMPTS``
        draws all failed), the records read, the skips by reason, the last bad record."""
        o = self.options
        skipped: Counter[str] = Counter()
        last = ""
        for attempt in range(MAX_ATTEMPTS):
            s, i = self.sampler.draw(slot) if attempt == 0 else self.sampler.retry(slot, attempt)
            try:
                sample = self.sources[s][i]
                if o.augment and sample.images:
                    sample = augment_sample(sample, o.stage, random.Random(f"{o.seed}:aug:{slot}:{attempt}"))
                enc = encode_sample(self.processor, sample, order=order, max_length=o.max_length,
                                    loss_on=o.loss_on, caption_segment=o.caption_segment)
                return enc, attempt + 1, skipped, last
            except BadRecord as err:
                skipped[err.reason] += 1
                last = f"{self.sources[s].name}[{i}]: {err}"
        return None, MAX_ATTEMPTS, skipped, last

    def make_step(self, step: int, order: str | None = None) -> dict[str, Any]:
        """The rank's data of optimizer step ``step`` (``order`` overrides the schedule's)."""
        o = self.options
        order = order or order_at(o.order, step, o.max_steps)
        first = step * o.batch_size + o.rank * o.per_rank
        items: list[Encoded] = []
        records, skipped, last = 0, Counter(), ""
        unit: dict[str, Any] = {"step": step, "order": order, "error": None}
        for slot in range(first, first + o.per_rank):
            enc, n, bad, why = self._encode(slot, order)
            records += n
            skipped.update(bad)
            last = why or last
            if enc is None:
                unit["error"] = (f"{MAX_ATTEMPTS} draws in a row for sample slot {slot} were unusable; last one: "
                                 f"{last}. Fix the data and run again.")
                break
            items.append(enc)
        unit.update(records=records, skipped=dict(skipped), last_bad=last, samples=len(items))
        if unit["error"] is None:
            unit["batches"] = micro_batches(items, o.accum, self.pad_id, o.pack_length)
        return unit

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start_step + worker, self.options.max_steps, workers):
            unit = self.make_step(step)
            yield unit
            if unit["error"]:
                return


def make_loader(stream: StepStream, num_workers: int, pin_memory: bool = False,
                prefetch_factor: int = 2) -> DataLoader:
    """A DataLoader over ``stream`` (items are whole steps: no automatic batching). Workers are
    forked where the platform allows it, so the record indexes are shared, not copied."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked workers tokenize on their own
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["prefetch_factor"] = prefetch_factor
        if "fork" in multiprocessing.get_all_start_methods():
            kwargs["multiprocessing_context"] = "fork"
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kwargs)


class DataCounters:
    """Records read and skipped (by reason) in this process, from the steps it consumed."""

    def __init__(self) -> None:
        self.records = 0
        self.skipped: Counter[str] = Counter()
        self.last_bad = ""

    def add(self, unit: dict[str, Any]) -> None:
        self.records += int(unit.get("records", 0))
        self.skipped.update(unit.get("skipped") or {})
        self.last_bad = unit.get("last_bad") or self.last_bad

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def state_dict(self) -> dict:
        return {"records": self.records, "skipped": dict(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        self.records = int(state["records"])
        self.skipped = Counter({k: int(v) for k, v in state["skipped"].items()})


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a batch to ``device`` without waiting (pinned host memory makes the copy async)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}
