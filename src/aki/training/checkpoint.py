"""Checkpoints that survive crashes and resume exactly.

A checkpoint is a folder ``checkpoints/step-NNNNNNNN`` holding the model and optimizer state
(full, unsharded: rank 0 writes them), the scheduler, the step, per-rank RNG states and data
sampler positions, and the run's counters. It is written under a temporary name and renamed into
place only when complete (rename is atomic), so a crash mid-save leaves the previous checkpoint as
the latest one; stale temporary folders are removed on the next save. Older ones beyond
``keep_last_k`` are deleted after the new one exists.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aki.training.distributed import DistInfo, barrier

STEP_DIR = re.compile(r"^step-(\d{8})$")
TMP_PREFIX = ".tmp-"


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders are never listed)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _state_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def model_state(model: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state on CPU; a collective under FSDP (rank 0 gets it)."""
    if info.distributed:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=_state_options())
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo) -> dict:
    if info.distributed:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=_state_options())
    return optimizer.state_dict()


def save_checkpoint(output_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict, info: DistInfo, keep_last_k: int = 3) -> Path:
    """Write ``step-NNNNNNNN`` atomically (all ranks call this); returns its path."""
    root = checkpoints_dir(output_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f"{TMP_PREFIX}step-{step:08d}"
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    barrier(info)
    # per-rank: RNG and data position
    torch.save({"rng": rng_state(), "trainer": trainer_state}, tmp / f"rank-{info.rank:05d}.pt")
    model_sd = model_state(model, info)
    optim_sd = optimizer_state(model, optimizer, info)
    if info.is_main:
        torch.save(model_sd, tmp / "model.pt")
        torch.save(optim_sd, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, "world_size": info.world_size}) + "\n")
    barrier(info)
    if info.is_main:
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (e.g. the final step after a periodic save)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        for old in list_checkpoints(output_dir)[:-keep_last_k]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    info: DistInfo) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG; return this rank's trainer state."""
    meta = json.loads((path / "meta.json").read_text())
    if meta["world_size"] != info.world_size:
        raise RuntimeError(f"checkpoint {path} was written by {meta['world_size']} processes; resuming it "
                           f"with {info.world_size} would change the data each rank reads. Use the same count.")
    model_sd = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
    optim_sd = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    if info.distributed:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, model_sd, options=opts)
        set_optimizer_state_dict(model, optimizer, optim_sd, options=opts)
    else:
        model.load_state_dict(model_sd)
        optimizer.load_state_dict(optim_sd)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    mine = torch.load(path / f"rank-{info.rank:05d}.pt", weights_only=False)
    set_rng_state(mine["rng"])
    return mine["trainer"]


def export_final(output_dir: str | Path, model: nn.Module, processor: Any, info: DistInfo) -> Path | None:
    """``output_dir/final`` in the save_pretrained format (model + processor), written atomically."""
    sd = model_state(model, info)
    out = Path(output_dir) / "final"
    if info.is_main:
        tmp = Path(output_dir) / f"{TMP_PREFIX}final"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, state_dict=sd)
        processor.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
    barrier(info)
    return out
