"""From a config's data section to this rank's stream of training steps (aki.data.loader): the
sources, the worker count, the packing length. The stream's only state is the next step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aki.data import FORMATS, RecordSource, pt_jsonl, pt_shards, sft_llava
from aki.data.loader import SkipRateError, StepStream, StreamOptions
from aki.training.config import PACK_SAMPLES, ConfigError, DataSource, TrainConfig

__all__ = ["SkipRateError", "build_sources", "build_stream", "ensure_synth", "num_workers", "pack_length"]

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


def num_workers(cfg: TrainConfig, world_size: int = 1) -> int:
    """``data.num_workers``, or one worker per CPU core left over by this node's training
    processes (at most 4, at least 1)."""
    if cfg.data.num_workers is not None:
        return cfg.data.num_workers
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // max(local, 1) - 1))


def pack_length(cfg: TrainConfig, processor: Any) -> int | None:
    """Row length for packing (None without packing): ``data.pack_length``, else room for
    ``PACK_SAMPLES`` samples of ``max_length`` text tokens with one image each."""
    if not cfg.data.packing:
        return None
    if cfg.data.pack_length:
        return cfg.data.pack_length
    extra = int(getattr(processor, "num_image_tokens", 1)) - 1
    return PACK_SAMPLES * (cfg.max_length + extra)


def stream_options(cfg: TrainConfig, processor: Any, rank: int, world_size: int) -> StreamOptions:
    accum = cfg.accumulation(world_size)[1]
    return StreamOptions(
        seed=cfg.seed, stage=cfg.stage, order=cfg.order, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
        accum=accum, world_size=world_size, rank=rank, max_length=cfg.max_length,
        pack_length=pack_length(cfg, processor), loss_on=cfg.loss_on, caption_segment=cfg.caption_segment,
        augment=cfg.data.augment,
    )


def build_stream(cfg: TrainConfig, sources: list[RecordSource], weights: list[float], processor: Any,
                 rank: int = 0, world_size: int = 1, start_step: int = 0) -> StepStream:
    """This rank's stream of optimizer steps, from ``start_step`` on."""
    return StepStream(sources, weights, processor, stream_options(cfg, processor, rank, world_size), start_step)
