"""A saved aki model and its processor, loaded for use (chat, eval, analysis), or one clear error.

The folder is checked first (:func:`aki.pretrained.check_model_folder`: missing, a data folder,
an unfinished run, damaged weights, a hub id while offline), the device and dtype are checked
before any weight is read, and a failure inside transformers is reported with the folder named.
"""

from __future__ import annotations

import os
from typing import Any

import torch

DTYPES = ("float32", "bfloat16", "float16")


def parse_dtype(name: str | None, option: str = "--dtype") -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16`` (None stays None: the saved dtype)."""
    if name is None:
        return None
    if name not in DTYPES:
        raise ValueError(f"{option} {name!r} is not a dtype aki loads models in; use one of {', '.join(DTYPES)}.")
    return getattr(torch, name)


def parse_device(name: str, option: str = "--device") -> torch.device:
    """A torch device that exists here, or an error naming the option and what does exist."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{option} {name!r} is not a torch device ({err}); use cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"{option} {name!r}: no CUDA device is visible here; use --device cpu.")
        if device.index is not None and device.index >= n:
            raise ValueError(f"{option} {name!r}: only {n} CUDA device(s) are visible (cuda:0..cuda:{n - 1}).")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {name!r}: MPS is not available here; use --device cpu.")
    return device


def load_pretrained(folder: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: str | None = None,
                    key: str | None = None, processor: bool = True) -> tuple[Any, Any]:
    """``(model.eval() on device, processor)`` from a saved aki folder (or a training run's
    output_dir, which stands for its ``final/``). ``key`` names the option or config key that
    holds ``folder`` in the error messages."""
    from aki.model.modeling import AkiForConditionalGeneration
    from aki.pretrained import check_model_folder
    from aki.progress import library_progress_bars

    torch_dtype = parse_dtype(dtype)
    torch_device = device if isinstance(device, torch.device) else parse_device(device)
    source = check_model_folder(folder, key=key)
    kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
    try:
        with library_progress_bars(False):  # a bar for reading a few files is noise
            model = AkiForConditionalGeneration.from_pretrained(source, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise RuntimeError(f"could not load the model in {source!r}: {type(err).__name__}: {err}; the folder "
                           "may come from another aki version: export or convert it again.") from err
    model = model.to(torch_device).eval()
    proc = None
    if processor:
        from aki.processing import AkiProcessor

        proc = AkiProcessor.from_pretrained(source)
    return model, proc


__all__ = ["DTYPES", "load_pretrained", "parse_device", "parse_dtype"]
