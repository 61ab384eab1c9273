"""Loading a saved model for ``aki serve`` and ``aki demo``, with errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA must be visible."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N.") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r} is not supported; use cpu, cuda or cuda:N.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {device} was asked for, but torch sees no CUDA device "
                               f"(torch {torch.__version__}); use --device cpu, or install a CUDA build of torch.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | str:
    """A dtype name to torch's; ``auto`` keeps the dtype the model was saved in."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    if dtype == "auto":
        return "auto"
    if dtype == "float16" and device.type == "cpu":
        raise ValueError("--dtype float16 on the CPU is slow and loses accuracy; use float32 or bfloat16 there.")
    return getattr(torch, dtype)


def load_model(model_dir: str | Path, *, device: str = "cpu", dtype: str = "auto",
               attn_implementation: str | None = None):
    """``(model, processor)`` from a folder written by ``save_pretrained``, on ``device``, in eval mode."""
    from aki.model import AkiForConditionalGeneration
    from aki.processing import AkiProcessor

    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {str(path)!r} does not exist; pass a folder written by "
                                "save_pretrained (`aki quickstart`, `aki train` or `aki convert-official` make one).")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} holds no saved model (no config.json); pass the folder that "
                                "save_pretrained wrote the model and processor to.")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    kwargs = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        processor = AkiProcessor.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"could not load the processor from {str(path)!r} ({err}); the folder needs the "
                         "processor files written by processor.save_pretrained.") from None
    try:
        model = AkiForConditionalGeneration.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(f"could not load the model from {str(path)!r} ({type(err).__name__}: {err}); check that "
                         "the folder holds an aki model (model_type 'aki' in config.json) and its weights.") from None
    return model.to(dev).eval(), processor


__all__ = ["DTYPES", "load_model", "resolve_device", "resolve_dtype"]
