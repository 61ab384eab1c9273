"""The AKI model: vision tower, Perceiver resampler, causal LLM read under an attention rule."""

from aki.model.configuration import AkiConfig, AkiResamplerConfig
from aki.model.modeling import AkiForConditionalGeneration, AkiPreTrainedModel
from aki.model.resampler import PerceiverResampler


def _register_auto_model() -> None:
    from transformers import AutoModelForImageTextToText

    try:
        AutoModelForImageTextToText.register(AkiConfig, AkiForConditionalGeneration)
    except ValueError:  # already registered
        pass


_register_auto_model()

__all__ = [
    "AkiConfig",
    "AkiForConditionalGeneration",
    "AkiPreTrainedModel",
    "AkiResamplerConfig",
    "PerceiverResampler",
]
