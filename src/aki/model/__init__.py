"""The AKI model: vision tower, Perceiver resampler, causal LLM read under an attention rule."""

from aki.model.configuration import AkiConfig, AkiResamplerConfig
from aki.model.modeling import AkiForConditionalGeneration, AkiPreTrainedModel
from aki.model.resampler import PerceiverResampler


def _register_auto_model() -> None:
    import contextlib

    from transformers import AutoModelForImageTextToText

    with contextlib.suppress(ValueError):  # already registered
        AutoModelForImageTextToText.register(AkiConfig, AkiForConditionalGeneration)


_register_auto_model()

__all__ = [
    "AkiConfig",
    "AkiForConditionalGeneration",
    "AkiPreTrainedModel",
    "AkiResamplerConfig",
    "PerceiverResampler",
]
