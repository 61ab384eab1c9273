"""From a config's data section to this rank's stream of training steps (aki.data.loader): the
sources, the worker count, the packing length. The stream's only state is the next step."""

from __future__ import annotations

import inspect
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
    """One configured source -> its reader (its ``options`` checked against the reader's own)."""
    opts: dict[str, Any] = dict(src.options)
    if src.name:
        opts.setdefault("name", src.name)
    readers = {**GENERIC, **FORMATS}
    if src.format not in readers:
        raise ConfigError(f"unknown data format {src.format!r}; choose one of {sorted(readers)}")
    reader = readers[src.format]
    if src.format in ("sft_llava", "llava150k"):
        opts.setdefault("turns", cfg.data.turns)
    if src.format == "aokvqa":
        opts.setdefault("seed", seed)
    known = [p for p in inspect.signature(reader).parameters if p not in ("path", "root", "shards")]
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise ConfigError(f"data source {src.name or src.path!r}: option {unknown[0]!r} is not known to the "
                          f"{src.format} reader; its options are {known} (see docs/data.md)")
    try:
        return reader(src.path, **opts)
    except FileNotFoundError as err:
        raise ConfigError(f"data source {src.name or src.format!r} ({src.format}, path {src.path!r}): {err}; "
                          "lay the files out as docs/data.md shows, or fix the path (aki data check CONFIG "
                          "reports every source)") from err


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


def load_processor(cfg: TrainConfig) -> tuple[Any | None, str]:
    """The processor this config's model will use, without loading any weights; (None, why)
    when it cannot be had yet (e.g. SFT from a PT run that has not finished)."""
    init = cfg.init
    try:
        if init.tiny:
            from aki.testing import tiny_processor

            return tiny_processor(init.tiny), ""
        from aki.processing import AkiProcessor

        if init.from_dir:
            d = Path(init.from_dir)
            d = d / "final" if (d / "final").is_dir() else d
            if not (d / "config.json").is_file():
                return None, f"init.from_dir {init.from_dir} holds no saved model yet (run its stage first)"
            return AkiProcessor.from_pretrained(d), ""
        from transformers import AutoConfig, AutoTokenizer

        from aki.pretrained import resolve_pretrained
        from aki.processing import add_aki_tokens, siglip_image_processor

        tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(init.llm, "language model", key="init.llm"))
        add_aki_tokens(tokenizer)
        vision = AutoConfig.from_pretrained(resolve_pretrained(init.vision, "vision tower", key="init.vision"))
        vision = getattr(vision, "vision_config", None) or vision
        from aki.model import AkiResamplerConfig

        return AkiProcessor(image_processor=siglip_image_processor(int(getattr(vision, "image_size", 384))),
                            tokenizer=tokenizer, num_image_tokens=AkiResamplerConfig().num_latents), ""
    except (OSError, ValueError, FileNotFoundError) as err:
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def renderer(cfg: TrainConfig, processor: Any | None, why: str = ""):
    """``render(sample) -> (text, note)``: the sample as the model reads it (encoded with the
    run's processor, max_length and first input order, then decoded: each image shows as one
    ``<image>``), or, without a processor, in the paper's phi3 template."""
    from aki.data.batching import encode_sample
    from aki.data.order import order_at, reorder_messages
    from aki.processing.chat_templates import CHAT_TEMPLATES, caption_text, render_chat

    order = order_at(cfg.order, 0, cfg.max_steps)

    def render(sample) -> tuple[str, str]:
        if processor is not None:
            enc = encode_sample(processor, sample, order=order, max_length=cfg.max_length, loss_on=cfg.loss_on,
                                caption_segment=cfg.caption_segment)
            return processor.decode(enc.input_ids), (f" ({len(enc)} tokens, {enc.n_trained} trained, order "
                                                     f"{order}, as the model reads it)")
        note = " (in the paper's phi3 template: the model's processor is not available)"
        if sample.caption is not None:
            return caption_text(sample.caption, order, "<s>", "</s>"), note
        return render_chat(reorder_messages(sample.messages, order), CHAT_TEMPLATES["phi3"],
                           special_tokens={"bos_token": "<s>"}), note

    return render


def check_data(cfg: TrainConfig, sample: int | None = 200) -> tuple[list, str]:
    """``aki data check``: one :class:`aki.data.check.SourceReport` per configured source, and why
    the model's processor could not be loaded ("" when it was)."""
    from aki.data.check import SourceReport, check_source

    processor, why = load_processor(cfg)
    render = renderer(cfg, processor, why)
    reports = []
    for src in cfg.data.sources:
        report = SourceReport(name=src.name or src.format, format=src.format, path=src.path, weight=src.weight)
        try:
            source = build_source(src, cfg, cfg.seed)
        except (ConfigError, OSError, ValueError) as err:
            report.error = str(err)
        else:
            report.name = source.name
            check_source(source, report, sample=sample, seed=cfg.seed, render=render)
        reports.append(report)
    return reports, why
