"""Progress bars of the libraries aki drives (transformers, huggingface_hub, datasets), switched
off together: ``progress: false`` and ``--no-progress`` mean no bar at all, not just aki's own."""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def library_progress_bars(enabled: bool) -> Iterator[None]:
    """Within the block, the libraries' bars are off unless ``enabled``; restored afterwards."""
    if enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' and huggingface_hub's
    datasets = None
    if importlib.util.find_spec("datasets") is not None:
        import datasets

        datasets_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        with warnings.catch_warnings():  # HF_HUB_DISABLE_PROGRESS_BARS=1 keeps them off, as it should
            warnings.simplefilter("ignore")
            if was_on:
                hf_logging.enable_progress_bar()
            if datasets is not None and datasets_on:
                datasets.enable_progress_bars()


__all__ = ["library_progress_bars"]
