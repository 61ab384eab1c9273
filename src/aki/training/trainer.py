"""The training loop of one stage (PT or SFT), from a config to ``output_dir/final``.

Loss normalisation: every optimizer step covers ``batch_size`` samples across ranks and
micro-batches; each micro-batch contributes its *summed* token cross-entropy divided by the
step's global count of trained tokens. So the step's gradient is the token mean over the whole
global batch, whatever the number of processes, micro-batches or packing (FSDP averages
gradients over ranks, hence the ``world_size`` factor).

Data comes from DataLoader workers (aki.data.loader), one whole optimizer step per item; the
time the loop waits for it is logged as ``data_wait_fraction``. Precision: fp32 master weights
unless ``precision: bf16-pure``; bf16 compute through autocast (and, under FSDP2, bf16 parameters
with fp32 gradient reduction). Under torchrun the model is built on the meta device and each
rank receives only its shards of the weights (rank 0 reads them once).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from aki.data.batching import count_trained, non_pad_fraction
from aki.data.loader import (
    DataCounters,
    SkipRateError,
    StepStream,
    check_skip_rate,
    make_loader,
    to_device,
)
from aki.masks import LeakageError
from aki.training import checkpoint as ckpt
from aki.training.config import ConfigError, TrainConfig, to_dict
from aki.training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_object,
    setup,
    sharded_from_full,
    teardown,
)
from aki.training.feedback import Feedback
from aki.training.guard import check_batches
from aki.training.optim import build_optimizer, build_scheduler
from aki.training.pipeline import build_sources, build_stream, ensure_synth, num_workers
from aki.training.resume import ResumePlan, plan_resume

MODEL_KEYS = ("input_ids", "attention_mask", "pixel_values", "segments", "document_ids")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one rank's optimizer step: RNG state is a pure function of where the
    run is, so a checkpoint needs none and resumes exactly on any world size."""
    digest = hashlib.blake2b(f"{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def build_model(cfg: TrainConfig) -> tuple[torch.nn.Module, Any]:
    """Model + processor from ``init`` (tiny preset, a previous stage's output, or components),
    configured with this stage's attention rule and vision freezing."""
    init = cfg.init
    if init.tiny:
        from aki.model.presets import tiny_model

        model, processor = tiny_model(init.tiny, rule=cfg.rule, seed=init.seed)
    elif init.from_dir:
        from aki.model import AkiForConditionalGeneration
        from aki.pretrained import check_model_folder
        from aki.processing import AkiProcessor

        d = check_model_folder(init.from_dir, key="init.from_dir")  # a run's output_dir means its final/
        model = AkiForConditionalGeneration.from_pretrained(d, dtype=getattr(torch, cfg.weights_dtype))
        processor = AkiProcessor.from_pretrained(d)
    else:
        model, processor = _from_components(cfg)
    model.config.set_rule(cfg.rule, cfg.rule_options)
    model.config.freeze_vision = cfg.freeze_vision
    model.vision_tower.requires_grad_(not cfg.freeze_vision)
    return model, processor


def component_sources(cfg: TrainConfig) -> tuple[str, str]:
    """``init.vision`` and ``init.llm`` as local folders (or hub ids the hub will serve), checked
    first: a missing folder or an uncached hub id while offline fails at once, naming the key."""
    from aki.pretrained import resolve_pretrained

    return (resolve_pretrained(cfg.init.vision, "vision tower", key="init.vision"),
            resolve_pretrained(cfg.init.llm, "language model", key="init.llm"))


def _from_components(cfg: TrainConfig) -> tuple[torch.nn.Module, Any]:
    """A fresh AKI model from a vision tower and an LLM (ids or folders): the LLM's tokenizer
    gains ``<image>``/``<|endofchunk|>`` (and ``<pad>``), the embeddings grow to match, and the
    resampler starts from scratch (the paper's 144 latents)."""
    from aki.model import AkiForConditionalGeneration

    dtype = getattr(torch, cfg.weights_dtype)
    vision, llm = component_sources(cfg)
    return AkiForConditionalGeneration.from_components(
        vision, llm, attention_rule=cfg.rule, rule_options=cfg.rule_options, dtype=dtype,
    )


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the device supports it (CUDA with bf16) unless fp32 is asked for;
    on CPU only when ``precision: bf16`` (or ``bf16-pure``) explicitly."""
    if cfg.precision == "fp32":
        return None
    if cfg.precision in ("bf16", "bf16-pure"):
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def summed_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype | None,
                device: torch.device, num_items_in_batch: float = 1.0) -> torch.Tensor:
    """The model's loss on one micro-batch: its summed next-token cross-entropy (fp32, trained
    positions only) divided by ``num_items_in_batch`` (1: the sum itself)."""
    inputs = {k: batch[k].to(device) for k in MODEL_KEYS if k in batch}
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ctx:
        return model(**inputs, labels=batch["labels"].to(device), num_items_in_batch=num_items_in_batch,
                     return_dict=True).loss


def cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Floating-point parameters to ``dtype``; buffers (rotary frequencies) keep theirs."""
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)
    return model


def prepare_model(cfg: TrainConfig, info: DistInfo, compute: torch.dtype | None) -> tuple[torch.nn.Module, Any]:
    """The model on its device in the weights' dtype, sharded under torchrun, and its processor.

    One process: :func:`build_model` (loads the weights once). Under torchrun, rank 0 builds it
    and every rank materialises only its shards from rank 0's weights (:func:`sharded_from_full`),
    with bf16 parameters and fp32 gradient reduction when the compute is bf16."""
    weights = getattr(torch, cfg.weights_dtype)
    if not info.distributed:
        model, processor = build_model(cfg)
        return cast_parameters(model, weights).to(info.device), processor
    full = state = config = processor = None
    if info.is_main:
        full, processor = build_model(cfg)
        config, state = full.config, full.state_dict()
    config, processor = broadcast_object((config, processor), info)
    mp = compute if compute is not None and compute != weights else None
    model = sharded_from_full(config, state, info, weights, mp_dtype=mp,
                              attn_implementation=getattr(config, "_attn_implementation", None))
    del full, state
    return model, processor


def check_output(cfg: TrainConfig, resume: bool, overwrite: bool, start_if_missing: bool = False) -> ResumePlan | None:
    """What happens to ``output_dir``, decided before anything is written: a resume plan (the
    settings compared with the saved run's, :mod:`aki.training.resume`), or None for a new run
    (refused where a run already is, unless ``overwrite``)."""
    if sum((resume, overwrite)) > 1:
        raise ConfigError("--resume (or --resume-or-start) and --overwrite contradict each other; pass one.")
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir {str(out)!r} is a file; set output_dir to a folder.")
    if resume:
        return plan_resume(cfg, start_if_missing)
    has_run = bool(ckpt.list_checkpoints(out)) or (out / "metrics.jsonl").exists()
    if has_run and not overwrite:
        raise ConfigError(f"{str(out)!r} already holds a run (checkpoints or metrics.jsonl); pass --resume to "
                          "continue it, --overwrite to start over, or choose another output_dir.")
    return None


def write_output(cfg: TrainConfig, plan: ResumePlan | None, overwrite: bool, info: DistInfo) -> None:
    """Prepare ``output_dir`` once every check has passed: remove the old run (``overwrite``),
    drop metrics rows past the resumed step, write ``config.yaml`` (the settings in effect)."""
    out = Path(cfg.output_dir)
    if info.is_main:
        if overwrite:
            for name in ("checkpoints", "metrics.jsonl", "tensorboard", "final"):
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        out.mkdir(parents=True, exist_ok=True)
        if plan is not None:
            _truncate_metrics(out / "metrics.jsonl", plan.step)
        tmp = out / ".config.yaml.tmp"
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
        os.replace(tmp, out / "config.yaml")
    barrier(info)


def run_guard(cfg: TrainConfig, stream: StepStream, mask_options: dict) -> int:
    """Check ``guard_batches`` real micro-batches per input order the stage uses (made in this
    process from the first steps); refuse a leaking run."""
    orders = ["T&I", "I&T"] if cfg.order == "dot" else [cfg.order]
    n = 0
    for order in orders:
        batches: list[dict] = []
        step = 0
        while len(batches) < cfg.guard_batches and step < cfg.max_steps:
            unit = stream.make_step(step, order=order)
            if unit["error"]:
                raise SkipRateError(unit["error"])
            batches += unit["batches"]
            step += 1
        try:
            n += check_batches(batches[:cfg.guard_batches], cfg.rule, mask_options)
        except LeakageError as err:
            raise LeakageError(
                f"refusing to train: stage={cfg.stage!r}, attention_rule={cfg.rule!r}, order={order!r}, "
                f"loss_on={cfg.loss_on!r}, caption_segment={cfg.caption_segment!r} is unsafe on this data. {err}"
            ) from err
    return n


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False,
          start_if_missing: bool = False) -> dict[str, Any]:
    """Run one stage; returns a summary (final loss, steps, seconds, paths, records read and
    skipped by reason). ``resume`` continues the run in ``output_dir`` (its settings must match,
    see :mod:`aki.training.resume`); with ``start_if_missing`` a resume without a checkpoint
    starts a new run instead of failing. ``overwrite`` starts over where a run is."""
    plan = check_output(cfg, resume, overwrite, start_if_missing)  # before any process group or file
    from aki.progress import library_progress_bars

    info = setup()
    try:
        with library_progress_bars(cfg.progress):  # progress: false silences transformers' bars too
            return _train(cfg, info, plan, overwrite)
    finally:
        teardown()


def _global_counts(counters: DataCounters, info: DistInfo) -> tuple[int, dict[str, int]]:
    from aki.training.distributed import all_gather_objects

    reasons: set[str] = set()
    for part in all_gather_objects(sorted(counters.skipped), info):
        reasons.update(part)
    records = int(all_reduce_sum(counters.records, info))
    return records, {r: int(all_reduce_sum(counters.skipped.get(r, 0), info)) for r in sorted(reasons)}


def _train(cfg: TrainConfig, info: DistInfo, plan: ResumePlan | None, overwrite: bool) -> dict[str, Any]:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    if info.is_main:
        ensure_synth(cfg)
    barrier(info)

    compute = autocast_dtype(cfg, info.device)
    if cfg.precision == "bf16-pure" and info.is_main:
        warnings.warn("precision: bf16-pure trains bfloat16 weights: AdamW updates smaller than bf16's resolution "
                      "(about 0.4 % of a weight) are lost, so many weights stop changing at small learning rates. "
                      "Use precision: bf16 for fp32 master weights with bf16 compute.", stacklevel=2)
    model, processor = prepare_model(cfg, info, compute)
    micro, accum = cfg.accumulation(info.world_size)
    sources, weights = build_sources(cfg)
    guarded = run_guard(cfg, build_stream(cfg, sources, weights, processor, info.rank, info.world_size),
                        model.config.rule_options)
    if plan is not None and plan.checkpoint is not None:
        ckpt.check_same_data(plan.checkpoint, build_stream(cfg, sources, weights, processor).sampler)

    model.train()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    scheduler = build_scheduler(optimizer, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)

    step, tokens_seen = 0, 0
    counters = DataCounters()
    latest = plan.checkpoint if plan is not None else None
    stream = build_stream(cfg, sources, weights, processor, info.rank, info.world_size)
    resumed_note = ""
    if latest is not None:
        state = ckpt.load_checkpoint(latest, model, optimizer, scheduler, info)
        step, tokens_seen = int(state["step"]), int(state["tokens_seen"])
        if info.is_main:  # global totals so far; the other ranks count from zero
            counters.load_state_dict(state["data"]["counts"])
        resumed_note = f"; resumed from {latest.name}"
        if state["saved_world_size"] != info.world_size:
            resumed_note += f" (written by {state['saved_world_size']} processes)"
    elif plan is not None:
        resumed_note = f"; --resume-or-start: no checkpoint in {cfg.output_dir}, starting a new run"
    write_output(cfg, plan, overwrite, info)  # checks passed, checkpoint read: only now is output_dir changed
    if plan is not None and plan.changes:
        resumed_note += "; settings changed on resume: " + "; ".join(plan.changes)
    stream.start_step = step
    workers = num_workers(cfg, info.world_size)
    loader = make_loader(stream, workers, pin_memory=info.device.type == "cuda",
                         prefetch_factor=cfg.data.prefetch_factor)

    fb = Feedback(cfg.output_dir, cfg.max_steps, step, enabled=info.is_main, progress=cfg.progress,
                  tensorboard=cfg.tensorboard, wandb=cfg.wandb, wandb_project=cfg.wandb_project,
                  config=to_dict(cfg), desc=f"{cfg.stage} {cfg.rule}")
    fb.message(f"aki train: stage={cfg.stage} rule={cfg.rule} order={cfg.order} world={info.world_size} "
               f"micro_batch={micro} accum={accum} packing={cfg.data.packing} workers={workers} "
               f"weights={cfg.weights_dtype} compute={str(compute or torch.float32).removeprefix('torch.')} "
               f"guard checked {guarded} batches" + resumed_note)
    fb.message("data: " + ", ".join(f"{src.name} {len(src)} records (weight {w:g})"
                                    for src, w in zip(sources, weights, strict=True)))
    params = [p for p in model.parameters() if p.requires_grad]
    window: dict[str, float] = dict.fromkeys(("loss", "steps", "tokens", "time", "wait", "non_pad", "n_mb"), 0.0)
    losses: list[float] = []
    t_start = time.perf_counter()
    batches_in = iter(loader)
    final = None
    try:
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            unit = next(batches_in)
            wait = time.perf_counter() - t0
            if unit["error"]:
                raise SkipRateError(unit["error"])
            if unit["step"] != step:
                raise RuntimeError(f"data stream out of order: expected step {step}, got {unit['step']}")
            counters.add(unit)
            check_skip_rate(counters.records, counters.skipped, cfg.max_skip_rate, cfg.min_records_for_skip_rate,
                            counters.last_bad)
            torch.manual_seed(step_seed(cfg.seed, step, info.rank))
            batches = [to_device(b, info.device) for b in unit["batches"]]
            n_global = all_reduce_sum(sum(count_trained(b) for b in batches), info)
            if n_global == 0:
                raise RuntimeError(f"step {step}: the global batch has no trained tokens")
            local_loss = 0.0
            for k, batch in enumerate(batches):
                if info.distributed and hasattr(model, "set_requires_gradient_sync"):
                    model.set_requires_gradient_sync(k == len(batches) - 1)
                # sum / (n_global / world): FSDP averages gradients over ranks
                share = n_global / info.world_size
                loss_part = summed_loss(model, batch, compute, info.device, share)
                loss_part.backward()
                local_loss += float(loss_part.detach()) * share
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            loss = all_reduce_sum(local_loss, info) / n_global
            tokens = all_reduce_sum(sum(int(b["attention_mask"].sum()) for b in batches), info)
            tokens_seen += int(tokens)
            losses.append(loss)
            dt = time.perf_counter() - t0
            window["loss"] += loss
            window["steps"] += 1
            window["tokens"] += tokens
            window["time"] += dt
            window["wait"] += wait
            window["non_pad"] += sum(non_pad_fraction(b) for b in batches)
            window["n_mb"] += len(batches)
            fb.advance(1, loss=loss, lr=lr, tok_s=tokens / max(dt, 1e-9))

            if step % cfg.log_every == 0 or step == cfg.max_steps:
                records, skipped = _global_counts(counters, info)
                n_skipped = sum(skipped.values())
                check_skip_rate(records, skipped, cfg.max_skip_rate, cfg.min_records_for_skip_rate, counters.last_bad)
                fb.log({
                    "step": step, "loss": window["loss"] / window["steps"], "lr": lr,
                    "tokens_per_s": window["tokens"] / max(window["time"], 1e-9),
                    "non_pad_fraction": window["non_pad"] / max(window["n_mb"], 1),
                    "data_wait_fraction": window["wait"] / max(window["time"], 1e-9),
                    "step_time_s": window["time"] / window["steps"],
                    "grad_norm": float(grad_norm), "order": unit["order"], "records": records,
                    "skipped": n_skipped, "skip_rate": n_skipped / max(records, 1),
                    **{f"skipped_{r}": v for r, v in skipped.items()},
                    "tokens_seen": tokens_seen, "elapsed_s": time.perf_counter() - t_start,
                    "packing": cfg.data.packing,
                })
                window = dict.fromkeys(window, 0.0)
            if step % cfg.save_every == 0 or step == cfg.max_steps:
                records, skipped = _global_counts(counters, info)
                data_state = {"next_step": step, "mixture": stream.sampler.fingerprint(),
                              "counts": {"records": records, "skipped": skipped}}
                ckpt.save_checkpoint(cfg.output_dir, step, model, optimizer, scheduler,
                                     {"step": step, "tokens_seen": tokens_seen, "data": data_state},
                                     info, keep_last_k=cfg.keep_last_k)
        records, skipped = _global_counts(counters, info)
        final = ckpt.export_final(cfg.output_dir, model, processor, info)
    finally:
        del batches_in
        fb.close()
    return {"steps": step, "losses": losses, "final_loss": losses[-1] if losses else None,
            "seconds": time.perf_counter() - t_start, "final_dir": str(final),
            "records": records, "skipped": skipped}


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint we resume from (they are about to be redone)."""
    import json

    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)
