"""AKI: multimodal LLMs with modality-mutual attention."""

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
    # Lazy: `import aki` stays cheap (no torch/transformers) until a model class is asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aki' has no attribute {name!r}")


__all__ = ["AkiConfig", "AkiForConditionalGeneration", "AkiProcessor"]
