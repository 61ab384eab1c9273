"""AKI: multimodal LLMs with modality-mutual attention.

``import aki`` registers the ``aki`` model type with transformers' ``AutoConfig``,
``AutoModelForImageTextToText`` and ``AutoProcessor`` (so it imports torch and transformers): a
saved aki folder then loads through the Auto classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aki.model import AkiConfig, AkiForConditionalGeneration
    from aki.processing import AkiProcessor

_LAZY = {
    "AkiConfig": "aki.model",
    "AkiForConditionalGeneration": "aki.model",
    "AkiProcessor": "aki.processing",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aki' has no attribute {name!r}")


def _register_auto_classes() -> None:
    """``import aki`` is enough for transformers' Auto classes to load an aki folder: importing
    the packages registers ``AutoConfig``, ``AutoModelForImageTextToText`` and ``AutoProcessor``."""
    import aki.model
    import aki.processing  # noqa: F401


_register_auto_classes()

__all__ = ["AkiConfig", "AkiForConditionalGeneration", "AkiProcessor"]
