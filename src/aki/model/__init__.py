"""The AKI model: vision tower, Perceiver resampler, causal LLM read under an attention rule.

``import aki.model`` (or ``import aki``) registers the ``aki`` model type with ``AutoConfig`` and
``AutoModelForImageTextToText``, so a saved folder loads through the Auto classes.
"""

import contextlib

from transformers import AutoModelForImageTextToText

from aki.model.configuration import AkiConfig, AkiResamplerConfig
from aki.model.generation import generation_config_for
from aki.model.loss import next_token_loss
from aki.model.modeling import AkiForConditionalGeneration, AkiPreTrainedModel
from aki.model.resampler import PerceiverResampler

with contextlib.suppress(ValueError):  # already registered (module reloaded)
    AutoModelForImageTextToText.register(AkiConfig, AkiForConditionalGeneration)

__all__ = [
    "AkiConfig",
    "AkiForConditionalGeneration",
    "AkiPreTrainedModel",
    "AkiResamplerConfig",
    "PerceiverResampler",
    "generation_config_for",
    "next_token_loss",
]
