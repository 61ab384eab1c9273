"""Sharded checkpoints that survive crashes and resume exactly, on any world size.

A checkpoint is a folder ``checkpoints/step-NNNNNNNN``:

- ``state/``: the model and optimizer state written by ``torch.distributed.checkpoint`` (DCP):
  every rank writes its own shards in parallel (no gather to rank 0), and DCP reshards on load,
  so a run saved by N processes resumes on M;
- ``trainer.json``: the step, tokens seen, the data stream's position (the next step; the data is
  a pure function of it) and its global record/skip counts; ``scheduler.pt``; ``meta.json``.

No RNG state is stored: the training loop re-seeds torch at every step from ``(seed, step, rank)``
and the data stream seeds everything from sample slots, so there is nothing else to restore.

It is written under a temporary name and renamed into place only when complete (rename is
atomic), so a crash mid-save leaves the previous checkpoint as the latest one; stale temporary
folders are removed on the next save. Older ones beyond ``keep_last_k`` are deleted after the
new one exists. ``export_final`` writes ``final/`` in the ``save_pretrained`` format.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from aki.training.distributed import DistInfo, barrier

STEP_DIR = re.compile(r"^step-(\d{8})$")
TMP_PREFIX = ".tmp-"
FORMAT = "aki-dcp-1"


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


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns that it assumes one process when no process group exists: that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.distributed is disabled, unavailable or uninitialized")
        yield


def _states(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """This rank's shards of the model and optimizer state, keyed by parameter names."""
    return {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}


def save_checkpoint(output_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict, info: DistInfo, keep_last_k: int = 3) -> Path:
    """Write ``step-NNNNNNNN`` atomically (a collective: all ranks call it); returns its path.
    ``trainer_state`` must be the same on every rank (rank 0 writes it)."""
    root = checkpoints_dir(output_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f"{TMP_PREFIX}step-{step:08d}"
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    barrier(info)
    with _quiet_single_process():
        dcp.save(_states(model, optimizer), checkpoint_id=tmp / "state")
    if info.is_main:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "trainer.json").write_text(json.dumps(trainer_state, indent=1, sort_keys=True) + "\n")
        (tmp / "meta.json").write_text(json.dumps({"format": FORMAT, "step": step, "world_size": info.world_size})
                                       + "\n")
    barrier(info)
    if info.is_main:
        _fsync_tree(tmp)
        if final.exists():  # re-saving the same step (e.g. the final step after a periodic save)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        for old in list_checkpoints(output_dir)[:-keep_last_k]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def _fsync_tree(path: Path) -> None:
    """Flush the files written here to disk (DCP already syncs its own shard files)."""
    for p in path.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path / "state")
    _fsync_dir(path)


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


def read_meta(path: Path) -> dict:
    """A checkpoint's ``meta.json``, checked: present, readable, in this version's format."""
    file = path / "meta.json"
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
        int(meta["step"]), int(meta["world_size"])
    except FileNotFoundError:
        raise RuntimeError(f"checkpoint {str(path)!r} has no meta.json (it is not a complete aki checkpoint); "
                           "delete that folder to resume from the one before, or start over with --overwrite.") \
            from None
    except (ValueError, KeyError, TypeError) as err:
        raise RuntimeError(f"{str(file)!r} is damaged ({type(err).__name__}: {err}); delete {str(path)!r} to resume "
                           "from the checkpoint before it, or start over with --overwrite.") from None
    if meta.get("format") != FORMAT:
        raise RuntimeError(
            f"checkpoint {str(path)!r} is in an older format ({meta.get('format', 'full torch.save files')}); this "
            "version resumes only sharded (DCP) checkpoints. Start a new run, or use the aki version that wrote it."
        )
    return meta


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was written after."""
    return int(read_meta(path)["step"])


def check_same_data(path: Path, sampler: Any) -> None:
    """Refuse (``ConfigError``) to resume from ``path`` when the data behind the config changed
    (other sizes or mixture: the same step would read other records). Reads ``trainer.json`` only."""
    from aki.training.config import ConfigError

    file = path / "trainer.json"
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))["data"]["mixture"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RuntimeError(f"{str(file)!r} is missing or damaged ({type(err).__name__}: {err}); delete "
                           f"{str(path)!r} to resume from the checkpoint before it, or start over with --overwrite.") \
            from None
    try:
        sampler.check_fingerprint(saved)
    except ValueError as err:
        raise ConfigError(f"--resume from {str(path)!r}: {err}") from None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    info: DistInfo) -> dict:
    """Restore model, optimizer and scheduler (resharded to this world size); return the trainer
    state (``meta["world_size"]`` tells the world size that wrote it)."""
    from torch.distributed.checkpoint.api import CheckpointException

    meta = read_meta(path)
    states = _states(model, optimizer)
    try:
        partial = _drop_unsaved_optimizer_state(states["optimizer"], path)
        with _quiet_single_process():
            dcp.load(states, checkpoint_id=path / "state")
        set_model_state_dict(model, states["model"])
        set_optimizer_state_dict(model, optimizer, states["optimizer"],
                                 options=StateDictOptions(strict=not partial))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        state = json.loads((path / "trainer.json").read_text())
    except (CheckpointException, Exception) as err:  # DCP's error is a BaseException
        raise RuntimeError(
            f"checkpoint {str(path)!r} cannot be read ({_first_cause(err)}): a file in it is damaged or does not fit "
            f"this model; delete {str(path)!r} to resume from the checkpoint before it, or start over with --overwrite."
        ) from err
    state["saved_world_size"] = int(meta["world_size"])
    return state


def _drop_unsaved_optimizer_state(optim_state: dict, path: Path) -> bool:
    """Leave out of the load the optimizer state of parameters the checkpoint has none for.

    AdamW creates a parameter's state at its first gradient, so a checkpoint written before some
    trainable parameters got one (the vision side in a text-only stretch of data) has no state for
    them, while a fresh optimizer asked for its state dict initialises every parameter. Loading those
    parameters without state restores exactly the optimizer that was saved; a warning names them."""
    saved = set(dcp.FileSystemReader(str(path / "state")).read_metadata().state_dict_metadata)
    per_param = optim_state.get("state", {})
    unsaved = sorted(fqn for fqn, entry in per_param.items()
                     if not any(f"optimizer.state.{fqn}.{name}" in saved for name in entry))
    if not unsaved:
        return False
    for fqn in unsaved:
        del per_param[fqn]
    shown = ", ".join(unsaved[:3]) + (f" and {len(unsaved) - 3} more" if len(unsaved) > 3 else "")
    warnings.warn(f"checkpoint {str(path)!r} has no optimizer state for {len(unsaved)} parameter(s) ({shown}): they "
                  "had not received a gradient before it was saved; they resume without state, as they were.",
                  stacklevel=3)
    return True


def _first_cause(err: BaseException) -> str:
    """The innermost useful description of a DCP failure (it wraps each rank's exception)."""
    failures = getattr(err, "failures", None)
    if isinstance(failures, dict) and failures:
        inner = next(iter(failures.values()))
        err = inner[0] if isinstance(inner, tuple) else inner
    text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def full_model_state(model: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state on CPU; a collective under FSDP (rank 0 gets it)."""
    if info.distributed:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def export_final(output_dir: str | Path, model: nn.Module, processor: Any, info: DistInfo) -> Path:
    """``output_dir/final`` in the save_pretrained format (model + processor), written atomically.
    The config's ``dtype`` is the weights' real dtype."""
    sd = full_model_state(model, info)
    out = Path(output_dir) / "final"
    if info.is_main:
        tmp = Path(output_dir) / f"{TMP_PREFIX}final"
        shutil.rmtree(tmp, ignore_errors=True)
        dtypes = {v.dtype for v in sd.values() if v.is_floating_point()}
        if len(dtypes) == 1:
            real = str(dtypes.pop()).removeprefix("torch.")
            model.config.dtype = real
            for key in getattr(model.config, "sub_configs", {}):
                sub = getattr(model.config, key, None)
                if sub is not None:
                    sub.dtype = real
        model.save_pretrained(tmp, state_dict=sd)
        processor.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
    barrier(info)
    return out
