"""The AKI model: vision tower, Perceiver resampler, causal LLM read under an attention rule."""

from aki.model.configuration import AkiConfig, AkiResamplerConfig
from aki.model.modeling import AkiForConditionalGeneration, AkiPreTrainedModel
from aki.model.resampler import PerceiverResampler

__all__ = [
    "AkiConfig",
    "AkiForConditionalGeneration",
    "AkiPreTrainedModel",
    "AkiResamplerConfig",
    "PerceiverResampler",
]
