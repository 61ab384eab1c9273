"""The training data stream: config sources -> weighted mixture -> augmented, encoded samples ->
padded or packed micro-batches, with every bad record skipped and counted.

The stream's only state is the mixture sampler's counters (augmentation is seeded by the draw
index), so a checkpoint restores it exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from aki.data import (
    FORMATS,
    BadRecord,
    MixtureSampler,
    RecordSource,
    augment,
    pt_jsonl,
    pt_shards,
    sft_llava,
)
from aki.data.batching import Encoded, collate, encode_sample, pack
from aki.training.config import ConfigError, DataSource, TrainConfig


class SkipRateError(RuntimeError):
    """Too much of the data is unusable: the run stops instead of training on what is left."""


GENERIC = {"pt_jsonl": pt_jsonl, "pt_shards": pt_shards, "sft_llava": sft_llava}


def ensure_synth(cfg: TrainConfig, is_main: bool = True) -> None:
    """Generate the synthetic set into ``data.synth_dir`` when it is missing (offline presets)."""
    d = cfg.data.synth_dir
    if d is None or not is_main or (Path(d) / "metadata.json").exists():
        return
    from aki.data.synth import generate

    generate(d, n_train=cfg.data.synth_scenes, n_test=0, seed=cfg.data.synth_seed)


def build_source(src: DataSource, cfg: TrainConfig, seed: int) -> RecordSource:
    """One configured source -> its reader."""
    opts: dict[str, Any] = dict(src.options)
    if src.name:
        opts.setdefault("name", src.name)
    if src.format in GENERIC:
        if src.format == "sft_llava":
            opts.setdefault("turns", cfg.data.turns)
        return GENERIC[src.format](src.path, **opts)
    if src.format in FORMATS:
        if src.format == "llava150k":
            opts.setdefault("turns", cfg.data.turns)
        if src.format == "aokvqa":
            opts.setdefault("seed", seed)
        return FORMATS[src.format](src.path, **opts)
    raise ConfigError(f"unknown data format {src.format!r}; choose one of {sorted([*GENERIC, *FORMATS])}")


def build_sources(cfg: TrainConfig) -> tuple[list[RecordSource], list[float]]:
    sources, weights = [], []
    for src in cfg.data.sources:
        source = build_source(src, cfg, cfg.seed)
        if len(source) == 0:
            raise ConfigError(f"data source {source.name!r} ({src.path}) has no records")
        sources.append(source)
        weights.append(src.weight)
    return sources, weights


class DataStream:
    """Draws, loads, augments and encodes samples; builds micro-batches; counts skips."""

    def __init__(self, cfg: TrainConfig, sources: list[RecordSource], weights: list[float], processor: Any,
                 rank: int = 0, world_size: int = 1):
        self.cfg, self.sources, self.processor = cfg, sources, processor
        self.sampler = MixtureSampler([len(s) for s in sources], weights, seed=cfg.seed, rank=rank,
                                      world_size=world_size)
        self.rank = rank
        self.records = 0
        self.skipped: Counter[str] = Counter()
        tok = getattr(processor, "tokenizer", processor)
        self.pad_id = int(getattr(tok, "pad_token_id", 0) or 0)
        extra = int(getattr(processor, "num_image_tokens", 1)) - 1
        self.pack_length = cfg.data.pack_length or cfg.max_length + extra

    # -------------------------------------------------------------- samples
    def next_encoded(self, order: str) -> Encoded:
        """The next usable sample; bad ones are skipped and counted (the skip rate is checked)."""
        while True:
            draw = self.sampler.draws
            s, i = next(self.sampler)
            self.records += 1
            try:
                sample = self.sources[s][i]
                if self.cfg.data.augment and sample.images:
                    rng = random.Random(f"{self.cfg.seed}:aug:{self.rank}:{draw}")
                    sample.images = [augment(img, self.cfg.stage, rng, sample.source) for img in sample.images]
                return encode_sample(self.processor, sample, order=order, max_length=self.cfg.max_length,
                                     loss_on=self.cfg.loss_on, caption_segment=self.cfg.caption_segment)
            except BadRecord as err:
                self.skipped[err.reason] += 1
                self.check_skip_rate(last=f"{self.sources[s].name}[{i}]: {err}")

    def micro_batch(self, size: int, order: str) -> dict:
        items = [self.next_encoded(order) for _ in range(size)]
        if self.cfg.data.packing:
            return pack(items, self.pack_length, self.pad_id)
        return collate(items, self.pad_id)

    # -------------------------------------------------------------- accounting
    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def check_skip_rate(self, records: int | None = None, skipped: int | None = None, last: str = "") -> None:
        records = self.records if records is None else records
        skipped = self.n_skipped if skipped is None else skipped
        if records >= self.cfg.min_records_for_skip_rate and skipped / records > self.cfg.max_skip_rate:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            raise SkipRateError(
                f"{skipped} of {records} records ({skipped / records:.1%}) were unusable, above "
                f"max_skip_rate={self.cfg.max_skip_rate:.1%} ({reasons}). Last one: {last or 'n/a'}. "
                "Fix the data (or raise max_skip_rate) and run again."
            )

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "records": self.records, "skipped": dict(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.records = int(state["records"])
        self.skipped = Counter({k: int(v) for k, v in state["skipped"].items()})
